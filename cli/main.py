"""The ``lcf`` command: a Typer app with one module per command under ``lcf_cli.commands``."""

from __future__ import annotations

import gc
import inspect
import os
import sys
from typing import Annotated

import typer

from lcf import __version__
from lcf_cli.commands.batch import batch
from lcf_cli.commands.bench import bench
from lcf_cli.commands.decode import decode
from lcf_cli.commands.encode import encode
from lcf_cli.commands.info import info
from lcf_cli.commands.validate import validate
from lcf_cli.common import EXIT_INTERRUPTED, err_console

HELP = """lcf: a learned image codec and its .lcf file format.

[bold]Quick start[/]
  lcf encode photo.png -o photo.lcf -q 4    image -> .lcf, quality 1..7
  lcf decode photo.lcf -o photo.png         .lcf -> image
  lcf info photo.lcf                        header and chunk table
  lcf validate archive/ --recursive         check many files
  lcf batch photos/ encoded/ -q 5           a whole folder tree

Run [bold]lcf COMMAND --help[/] for each command's options and examples.
"""

EPILOG = (
    "[bold]Exit codes[/]: 0 ok, 1 other lcf error, 2 usage, 3 not an lcf file or bad structure, 4 corrupt data, "
    "5 size limit exceeded, 6 model mismatch, 7 unsupported input image, 8 file-system error, 9 rate-control "
    "target unreachable, 130 interrupted."
)

app = typer.Typer(
    name="lcf",
    help=HELP,
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"lcf {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """lcf: a learned image codec and its .lcf file format."""


def reflow(doc: str) -> str:
    """Join the lines of prose paragraphs (Typer's rich mode keeps single line breaks); indented lines stay."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if any(line.startswith(" ") for line in p.splitlines()) else " ".join(p.split("\n")) for p in paragraphs
    )


for command in (encode, decode, info, validate, batch, bench):
    app.command(help=reflow(command.__doc__ or ""))(command)


def run() -> None:
    """Console-script entry point."""
    # Before PyTorch loads (MKL reads it then; nothing has imported torch yet): MKL's own memory manager off. It keeps
    # the buffers of the entropy networks' float64 matrix products (~60 MB after a decode) for the life of the
    # process, on top of a large decode's peak (issue 20; docs/BENCHMARKS.md, "Decoding in bounded memory"). A value
    # the user set wins. Library users decide for their own process.
    os.environ.setdefault("MKL_DISABLE_FAST_MM", "1")
    try:
        app()
    except KeyboardInterrupt:  # outside a command (they handle it themselves)
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    finally:
        # the command is done (its files written and closed): let the interpreter's exit skip the garbage collector's
        # passes over every object PyTorch made (about 0.2 s of each lcf encode/decode; issue 21). atexit handlers,
        # flushing and closing still run.
        gc.freeze()


if __name__ == "__main__":
    run()
