"""lcf decode: .lcf -> image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lcf import api
from lcf_cli.common import (
    Decoder,
    Device,
    MaxPixels,
    Weights,
    err_console,
    limits,
    refuse_stdio,
    report_errors,
    working,
)


@report_errors
def decode(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="The .lcf file to decode.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DST",
                                         help="Image to write; its suffix picks the format (.png, .ppm, .bmp, ...). "
                                              "Replaced if it exists; never SRC itself.",
                                         show_default=False)],
    decoder: Decoder = None,
    device: Device = "cpu",
    weights: Weights = None,
    max_pixels: MaxPixels = api.DEFAULT_MAX_PIXELS,
    reencode: Annotated[bool, typer.Option(
        "--reencode", help="Allow an .lcf DST: the decoded pixels are encoded again (a second lossy step, quality 4).",
    )] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print size, decoder and time.")] = False,
) -> None:
    """Decode an .lcf file into an image.

    By default the decoder recommended in the file is used (when the weights lack it, their default, with a warning
    on stderr); --decoder picks another (any decoder of the same weights decodes any file). The output is written
    to a temporary file next to DST (.DST.lcf-tmp) and renamed into place when complete. Refused before any work:
    a DST that is SRC (also through a link or another spelling of the path), an .lcf DST unless --reencode
    (decoding to .lcf encodes the pixels again), and "-" (pipes are not supported yet).

    [bold]Examples[/]
      lcf decode photo.lcf -o photo.png
      lcf decode photo.lcf -o photo.png --decoder teacher --device cuda
      lcf decode huge.lcf -o huge.png --max-pixels 0
    """
    refuse_stdio(src, output)
    with working(f"decoding {src}"):
        report = api.decode_file(src, output, decoder=decoder, device=device, weights=weights,
                                 limits=limits(max_pixels), reencode=reencode)
    for note in report.notes:  # the file's recommended decoder is missing from the weights
        err_console.print(f"warning: {escape(str(report.src))}: {escape(note)}")
    if verbose:
        err_console.print(f"{report.dst}: {report.width}x{report.height}, decoder {report.decoder}, "
                          f"{report.seconds:.2f} s")
