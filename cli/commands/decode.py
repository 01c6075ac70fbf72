"""lcf decode: .lcf -> image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lcf import api
from lcf_cli.common import (
    Decoder,
    Device,
    MaxPixels,
    Weights,
    err_console,
    limits,
    report_errors,
    working,
)


@report_errors
def decode(
    src: Annotated[Path, typer.Argument(metavar="SRC", help="The .lcf file to decode.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="DST",
                                         help="Image to write; its suffix picks the format (.png, .ppm, .bmp, ...).",
                                         show_default=False)],
    decoder: Decoder = None,
    device: Device = "cpu",
    weights: Weights = None,
    max_pixels: MaxPixels = api.DEFAULT_MAX_PIXELS,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print size, decoder and time.")] = False,
) -> None:
    """Decode an .lcf file into an image.

    By default the decoder recommended in the file is used; --decoder picks another (any decoder of the same
    weights decodes any file). The output is written to a temporary file next to DST and renamed into place
    when complete.

    [bold]Examples[/]
      lcf decode photo.lcf -o photo.png
      lcf decode photo.lcf -o photo.png --decoder teacher --device cuda
      lcf decode huge.lcf -o huge.png --max-pixels 0
    """
    with working(f"decoding {src}"):
        report = api.decode_file(src, output, decoder=decoder, device=device, weights=weights,
                                 limits=limits(max_pixels))
    if verbose:
        err_console.print(f"{report.dst}: {report.width}x{report.height}, decoder {report.decoder}, "
                          f"{report.seconds:.2f} s")
