"""Where ``lcf encode`` and ``lcf decode`` read and write: one file, several files into a folder, or a pipe.

    lcf encode a.png -o a.lcf              one input, one output (-o an existing folder: FOLDER/a.lcf)
    lcf encode a.png b.jpg -d out/         several inputs: out/a.lcf, out/b.lcf (checked by lcf.batchplan.plan_files)
    lcf encode - -o - < a.png > a.lcf      "-": standard input or output

Every check here comes before any work (before the weights are loaded). Pipes: standard input is read whole, up to
a limit, and never from a terminal; standard output gets the bytes only once the whole encode or decode has
succeeded (an error leaves it empty), never a terminal, and never a file that is the input (``>> SRC``).
"""

from __future__ import annotations

import io
import os
import stat
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import click
import typer
from rich.markup import escape

from lcf.api import io_error
from lcf.errors import LcfError, LcfIOError, LimitError, UnreachableTargetError, UsageError
from lcf_cli.common import err_console, error_dict, print_json

STDIO = "-"
MAX_STDIN_IMAGE = 1 << 30
"""Bytes of an image lcf encode reads from standard input (1 GiB: any uncompressed image within the default pixel
limit, 8 bytes a pixel for 16-bit RGBA, fits; a larger one is encoded from a file)."""


def is_stdio(path: Path | str | None) -> bool:
    return path is not None and str(path) == STDIO


def label(path: Path | str, stream: str) -> str:
    """How messages name a file: its path, or ``stream`` ("standard input", "standard output") for "-"."""
    return stream if is_stdio(path) else str(path)


def plan(srcs: Sequence[Path], output: Path | None, out_dir: Path | None, suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs for ``SRC... -o DST`` or ``SRC... -d DIR``; "-" for standard input/output.

    ``-o`` takes one input; an existing folder as DST stands for FOLDER/<stem><suffix>. ``-d DIR`` gives each input
    DIR/<stem><suffix>, refused (UsageError) when two inputs share an output or an output is an input."""
    if output is not None and out_dir is not None:
        raise UsageError("give -o DST (one output file) or -d DIR (a folder for the outputs), not both")
    if output is None and out_dir is None:
        raise UsageError("where to write? give -o DST (one input) or -d DIR (any number of inputs)")
    if any(is_stdio(src) for src in srcs) and len(srcs) > 1:
        raise UsageError(f"'-' (standard input) can only be the one SRC; {len(srcs)} were given")
    if output is not None:
        if len(srcs) > 1:
            raise UsageError(
                f"-o names one output, and {len(srcs)} inputs were given: write them into a folder "
                "with -d DIR (each as DIR/<name>" + suffix + ")"
            )
        src = srcs[0]
        if not is_stdio(output) and output.is_dir():
            if is_stdio(src):
                raise UsageError(f"{output} is a folder: name the file to write (-o {output / ('NAME' + suffix)})")
            output = output / (src.stem + suffix)
        return [(src, output)]
    if out_dir is None or is_stdio(out_dir) or is_stdio(srcs[0]):
        raise UsageError(
            "-d DIR writes files named after the inputs: for standard input or output use -o "
            "(-o - writes to standard output)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise LcfIOError(f"{out_dir}: not a folder")
    from lcf.batchplan import plan_files

    return [(job.src, job.dst) for job in plan_files(srcs, out_dir, suffix)]


def plan_pages(srcs: Sequence[Path], pixels_of: Callable[[Path], int]) -> None:
    """Huge pages for this process or not (:func:`lcf.hugepages.plan_for`), before its first codec, from the largest
    of ``srcs``: ``pixels_of(path)`` reads only a header. An input from a pipe, or one whose header cannot be read
    (the coding reports why, as before), leaves lcf's default."""
    from lcf import hugepages

    if any(is_stdio(src) for src in srcs):
        return
    try:
        largest = max(pixels_of(src) for src in srcs)
    except Exception:  # noqa: BLE001 -- only a hint: the coding reports whatever is wrong with this input
        return
    hugepages.plan_for(largest)


def make_folder(out_dir: Path | None) -> None:
    """Create the folder of ``-d`` (and its parents) if needed: once the work is about to start."""
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise io_error(exc, out_dir) from None


# -- pipes -------------------------------------------------------------------------------------------------------


def check_pipes(src: Path, dst: Path, *, json: bool = False) -> None:
    """Before any work: refuse a terminal where binary data would go, ``--json`` and ``-o -`` together (both write
    to standard output), and a redirection that makes the output the input (``lcf encode - -o a.png < a.png``)."""
    if is_stdio(src) and _stream("stdin").isatty():
        raise UsageError(
            "standard input is a terminal: pipe or redirect the file in (< FILE), or give its name instead of -"
        )
    if is_stdio(dst):
        if _stream("stdout").isatty():
            raise UsageError(
                "standard output is a terminal, and the output is binary: redirect it to a file "
                "(> FILE), pipe it into a program, or write a file with -o FILE"
            )
        if json:
            raise UsageError("--json and -o - both write to standard output: write a file with -o, or leave out --json")
    if is_stdio(src) and not is_stdio(dst):
        _refuse_same(_stream("stdin"), dst, "standard input")
    if is_stdio(dst) and not is_stdio(src):
        _refuse_same(_stream("stdout"), src, "standard output")


def read_stdin(limit: int | None, what: str) -> bytes:
    """Standard input, whole; LimitError past ``limit`` bytes (``what`` says which limit, for the message)."""
    stream = _stream("stdin")
    try:
        data = stream.read() if limit is None else stream.read(limit + 1)
    except OSError as exc:
        raise LcfIOError(f"cannot read standard input: {exc.strerror or exc}") from None
    if limit is not None and len(data) > limit:
        raise LimitError(f"standard input holds more than {limit} bytes, the limit of {what}")
    return data


def write_stdout(data: bytes) -> None:
    """Write ``data`` to standard output (once the whole output is known: never a part of it)."""
    stream = _stream("stdout")
    try:
        stream.write(data)
        stream.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise LcfIOError("cannot write to standard output: the program reading it has closed the pipe") from None
    except OSError as exc:
        raise LcfIOError(f"cannot write to standard output: {exc.strerror or exc}") from None


def _stream(name: str) -> BinaryIO:
    return click.get_binary_stream(name)  # type: ignore[arg-type]


def _refuse_same(stream: BinaryIO, path: Path, what: str) -> None:
    try:
        held = os.fstat(stream.fileno())
        there = os.stat(path)
    except (OSError, ValueError, io.UnsupportedOperation):
        return
    if stat.S_ISREG(held.st_mode) and (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino):
        raise UsageError(
            f"{what} is the file {path}: writing the output would destroy the input; redirect to another file"
        )


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so that Python's flush at exit does not complain again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


# -- several inputs ------------------------------------------------------------------------------------------------


def failure_record(src: Path, dst: Path, error: LcfError) -> dict[str, Any]:
    """The --json record of a file lcf encode or decode could not convert: ``status`` "failed", ``error`` (type,
    message, exit code, ...) and, for a rate-control target no quality meets, ``target`` as a written file's record
    and lcf batch's carry it (``met`` false, ``nearest``: :meth:`lcf.ratecontrol.Outcome.as_dict`)."""
    record: dict[str, Any] = {"src": str(src), "dst": str(dst), "status": "failed", "error": error_dict(error)}
    if isinstance(error, UnreachableTargetError) and error.outcome is not None:
        record["target"] = error.outcome.as_dict()
    return record


def convert_each(
    pairs: Sequence[tuple[Path, Path]], convert: Callable[[Path, Path], dict[str, Any]], *, done: str, json: bool
) -> None:
    """Run ``convert(src, dst)`` on every pair, in order: a failure is reported (``FAIL  SRC: why`` on stderr) and
    the rest go on, as with lcf validate; then a count on stderr, the records with ``--json``, and the exit code of
    the first failure."""
    records: list[dict[str, Any]] = []
    first: LcfError | None = None
    for src, dst in pairs:
        try:
            record = convert(src, dst)
            records.append({"status": "ok", **record})
        except (LcfError, OSError) as exc:
            error = exc if isinstance(exc, LcfError) else io_error(exc)
            first = first or error
            err_console.print(f"FAIL  {escape(str(src))}: {escape(str(error))}")
            records.append(failure_record(src, dst, error))
    failed = sum(record["status"] == "failed" for record in records)
    err_console.print(f"{len(records) - failed} {done}, {failed} failed")
    if json:
        print_json({"ok": first is None, "files": records})
    if first is not None:
        raise typer.Exit(first.exit_code)
