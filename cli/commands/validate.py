"""lcf validate: check .lcf files (signature, structure, CRCs, limits; --deep also decodes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lcf import api
from lcf.errors import LcfError, UsageError
from lcf.fileio import is_temp_name
from lcf_cli.common import (
    Json,
    MaxPixels,
    Weights,
    err_console,
    error_dict,
    limits,
    print_json,
    report_errors,
)


@report_errors
def validate(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files, or folders whose *.lcf files are checked.", show_default=False, metavar="FILE_OR_DIR"
        ),
    ],
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")] = False,
    deep: Annotated[bool, typer.Option("--deep", help="Also decode the streams (needs the weights).")] = False,
    weights: Weights = None,
    json: Json = False,
    max_pixels: MaxPixels = api.DEFAULT_MAX_PIXELS,
) -> None:
    """Check .lcf files: signature, chunk structure and order, CRCs, header fields and size limits.

    --deep also decodes the hyper, anchor and non-anchor streams with the weights' integer tables: the model
    identifier must match the weights, and each stream must end exactly where its chunk ends (the pixels are not
    synthesised, so it is faster than a decode).

    Prints one line per file, "ok" or "FAIL" with the reason, to stdout, and a count to stderr. The exit code is
    0 when every file is valid, else that of the first failure (3 format, 4 corrupt, 5 limit, 6 other weights,
    ...; see lcf --help).

    [bold]Examples[/]
      lcf validate photo.lcf
      lcf validate archive/ --recursive
      lcf validate a.lcf b.lcf --deep --json
      lcf validate archive/ -r --deep --weights weights/
    """
    files = _expand(paths, recursive)
    lim = limits(max_pixels)
    if deep:
        api.get_codec(weights)  # weights that cannot be loaded are one error, not one per file
    results: list[tuple[Path, LcfError | None]] = []
    for path in files:
        try:
            api.validate_file(path, limits=lim, deep=deep, weights=weights)
            error = None
        except LcfError as exc:
            error = exc
        results.append((path, error))
        if not json:
            typer.echo(f"ok    {path}" if error is None else f"FAIL  {path}: {error}")
    failures = [e for _, e in results if e is not None]
    err_console.print(
        f"{len(results) - len(failures)} valid, {len(failures)} invalid" + (" (deep: streams decoded)" if deep else "")
    )
    if json:
        print_json(
            {
                "valid": not failures,
                "files": [
                    {"path": str(p), "valid": e is None, "error": None if e is None else error_dict(e)}
                    for p, e in results
                ],
            }
        )
    if failures:
        raise typer.Exit(failures[0].exit_code)


def _expand(paths: list[Path], recursive: bool) -> list[Path]:
    """Files as given; folders replaced by their *.lcf files (sorted). A missing path stays, to be reported."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in (path.rglob("*") if recursive else path.iterdir())
                if p.is_file() and p.suffix.lower() == ".lcf" and not is_temp_name(p.name)
            )
            if not found:
                hint = "" if recursive else " (use --recursive to look in sub-folders)"
                raise UsageError(f"{path}: no .lcf files in this folder{hint}")
            files.extend(found)
        else:
            files.append(path)
    return files
