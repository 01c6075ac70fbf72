"""lcf batch: encode or decode a whole folder tree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lcf import api
from lcf_cli.common import (
    Device,
    Json,
    MaxPixels,
    Weights,
    err_console,
    limits,
    print_json,
    report_errors,
)


@report_errors
def batch(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="Folder to read.", show_default=False)],
    dst: Annotated[Path, typer.Argument(metavar="DST", show_default=False,
                                        help="Folder to write (created if needed); sub-folders are mirrored.")],
    quality: Annotated[float, typer.Option("--quality", "-q", min=1.0, max=7.0,
                                           help="Quality when encoding, 1..7.")] = 4.0,
    to: Annotated[str, typer.Option("--to", metavar="FORMAT",
                                    help="lcf = encode images; png, ppm, bmp, ... = decode .lcf files to that.")]
        = "lcf",
    include: Annotated[list[str] | None, typer.Option("--include", metavar="GLOB",
                                                      help="Only paths (relative to SRC) matching; repeatable.")]
        = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", metavar="GLOB",
                                                      help="Skip paths matching; repeatable.")] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, help="Files processed at once.")] = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs (default: skip).")]
        = False,
    device: Device = "cpu",
    decoder: Annotated[str | None, typer.Option(
        "--decoder", metavar="NAME",
        help="Encoding: the decoder to recommend in the files; decoding: the decoder to use instead.",
    )] = None,
    weights: Weights = None,
    json: Json = False,
    max_pixels: MaxPixels = api.DEFAULT_MAX_PIXELS,
) -> None:
    """Encode every image of a folder tree into .lcf files, or decode every .lcf file (--to png).

    A file that fails does not stop the batch; the summary lists failures and the exit code is that of the
    first one.

    [bold]Examples[/]
      lcf batch photos/ encoded/ --quality 5
      lcf batch encoded/ decoded/ --to png --workers 2
      lcf batch photos/ encoded/ --include '*.png' --exclude 'raw/*' --json
    """
    report = api.batch(src, dst, quality=quality, to=to, include=tuple(include or ()), exclude=tuple(exclude or ()),
                       workers=workers, overwrite=overwrite, device=device, decoder=decoder, weights=weights,
                       limits=limits(max_pixels))
    if json:
        print_json({
            "seconds": report.seconds,
            "files": [{"src": str(i.src), "dst": str(i.dst), "status": i.status, "error": i.error,
                       "exit_code": i.exit_code, "seconds": i.seconds} for i in report.items],
        })
    else:
        for item in report.failed:
            err_console.print(f"FAIL  {item.src}: {item.error}", markup=False)
        done = sum(i.status == "ok" for i in report.items)
        skipped = sum(i.status == "skipped" for i in report.items)
        err_console.print(f"{done} done, {skipped} skipped, {len(report.failed)} failed in {report.seconds:.1f} s")
    if report.failed:
        raise typer.Exit(report.failed[0].exit_code)
