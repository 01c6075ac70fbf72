"""lcf encode: image -> .lcf."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lcf import api
from lcf_cli.common import (
    Device,
    Effort,
    Json,
    Weights,
    err_console,
    print_json,
    refuse_stdio,
    report_errors,
    working,
)


@report_errors
def encode(
    src: Annotated[Path, typer.Argument(metavar="SRC", show_default=False,
                                        help="Image to encode (PNG, JPEG, PPM, ... anything Pillow reads).")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DST", show_default=False,
                                         help="The .lcf file to write (replaced if it exists; never SRC itself).")],
    quality: Annotated[float, typer.Option("--quality", "-q", min=1.0, max=7.0,
                                           help="1 (smallest) .. 7 (best); any value in between.")] = 4.0,
    effort: Effort = 0,
    device: Device = "cpu",
    decoder: Annotated[str | None, typer.Option(
        "--decoder", metavar="NAME", help="Decoder to record as recommended in the file; default from the weights.",
    )] = None,
    weights: Weights = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print size, rate (bpp), PSNR and time.")] = False,
    json: Json = False,
) -> None:
    """Encode an image into an .lcf file.

    The output is written to a temporary file next to DST (.DST.lcf-tmp) and renamed into place when complete.
    DST may not be SRC (the same file, also through a link or another spelling of the path): that is refused
    before any work, as is "-" (pipes are not supported yet).
    Alpha, ICC profile, EXIF and XMP are kept. lcf codes 8-bit RGB: whatever it changes to get there (16 -> 8 bits,
    CMYK or palette -> RGB, an ICC profile dropped, EXIF orientation applied) is printed as a "note:" line on stderr
    and listed in --json ("notes"). --json prints the report (size, bpp, notes; PSNR with -v) on stdout.

    [bold]Examples[/]
      lcf encode photo.png -o photo.lcf
      lcf encode photo.jpg -o photo.lcf --quality 5.5 -v
      lcf encode photo.png -o photo.lcf --effort 2 -v  (slower; -v: size and PSNR)
      lcf encode scan.png -o scan.lcf --device cuda --decoder teacher
    """
    refuse_stdio(src, output)
    with _RefineBar(effort) as bar, working(f"encoding {src}") if not effort else nullcontext():
        report = api.encode_file(src, output, quality=quality, effort=effort, device=device, decoder=decoder,
                                 weights=weights, measure=verbose, progress=bar.update)
    for note in report.notes:
        err_console.print(f"note: {escape(str(report.src))}: {escape(note)}")
    if json:
        print_json(asdict(report))
    if verbose:
        psnr = f", PSNR {report.psnr:.2f} dB" if report.psnr is not None else ""
        level = f", effort {effort}" if effort else ""
        err_console.print(f"{report.dst}: {report.width}x{report.height}, {report.bytes} bytes, "
                          f"{report.bpp:.4f} bpp{psnr}{level}, {report.seconds:.2f} s")




class _RefineBar:
    """A transient progress bar on stderr over the refinement steps of --effort > 0 (nothing at effort 0)."""

    def __init__(self, effort: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn(f"refining (effort {effort})"), BarColumn(), MofNCompleteColumn(),
                                 TimeRemainingColumn(), console=err_console, transient=True) if effort else None
        self.task = None

    def __enter__(self) -> _RefineBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.stop()

    def update(self, done: int, total: int) -> None:
        if self.progress is None:
            return
        if self.task is None:
            self.task = self.progress.add_task("refine", total=total)
            self.progress.start()
        self.progress.update(self.task, completed=done)
