"""What every command shares: the consoles, error -> exit code handling, and common options."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from lcf.api import Limits, io_error
from lcf.errors import LcfError, UsageError
from lcf.options import MAX_EFFORT

#: Messages, warnings and progress go to stderr; data and --json go to stdout.
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)

EXIT_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


def report_errors(command: F) -> F:
    """Run ``command``; print an LcfError (or OSError) as one line on stderr and exit with its code, no traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except LcfError as exc:
            fail(exc)
        except OSError as exc:
            fail(io_error(exc))
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def working(message: str) -> AbstractContextManager[Any]:
    """A transient spinner with ``message`` on stderr while a single long step runs (a 12-megapixel photo takes
    about half a minute on 2 CPU cores); nothing when stderr is not a terminal."""
    return err_console.status(escape(message)) if err_console.is_terminal else nullcontext()


def fail(exc: LcfError) -> None:
    """Print ``exc`` and exit with its code."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
    raise typer.Exit(exc.exit_code)


def refuse_stdio(*paths: Path) -> None:
    """ "-" as a file name means stdin/stdout to most tools; where lcf does not read or write pipes (lcf batch: folders;
    lcf encode/decode take "-", :mod:`lcf_cli.files`), it refuses "-" rather than create a file of that name. A file
    really named "-" is given by a longer path (``$PWD/-``)."""
    if any(str(path) == "-" for path in paths):
        raise UsageError(
            "'-' (standard input or output) is not supported yet: give a file name (a file named '-' as $PWD/-)"
        )


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def error_dict(exc: LcfError) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "message": exc.message,
        "chunk": exc.chunk,
        "offset": exc.offset,
        "exit_code": exc.exit_code,
    }


def limits(max_pixels: int) -> Limits:
    """Default limits with ``--max-pixels`` applied (0 = no pixel limit)."""
    return Limits(max_pixels=max_pixels or None)


MaxPixels = Annotated[
    int,
    typer.Option(
        "--max-pixels",
        min=0,
        metavar="N",
        help="Refuse images with more pixels than this (decompression-bomb guard; 0 = no limit).",
    ),
]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        metavar="cpu|cuda",
        help="Where to run the transforms: cpu, cuda or cuda:N.",
    ),
]
Decoder = Annotated[
    str | None,
    typer.Option(
        "--decoder",
        metavar="NAME",
        help="Decoder (synthesis network) to use instead of the one the file recommends.",
    ),
]
Weights = Annotated[
    Path | None,
    typer.Option(
        "--weights",
        metavar="DIR",
        help="Folder with manifest.json and safetensors files; default: $LCF_WEIGHTS, else the bundled (newest) model "
        "to encode and the installed weights of each file's model to decode (lcf info FILE names them).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Effort = Annotated[
    int,
    typer.Option(
        "--effort",
        "-e",
        min=0,
        max=MAX_EFFORT,
        help="Encoder effort 0..3 (0 = fastest): a higher effort searches longer for a better latent. At equal PSNR "
        "the file is smaller (on Kodak: 1 saves ~9 % for ~12x the encode time on a CPU, 2 ~11 % for ~25x, 3 ~12 % "
        "for ~40x); at the same --quality both size and PSNR change (-v prints both). Decoding is the same "
        "whatever the effort.",
    ),
]
