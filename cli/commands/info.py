"""lcf info: header fields and chunk table of an .lcf file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lcf import api
from lcf_cli.common import (
    Json,
    MaxPixels,
    error_dict,
    fail,
    limits,
    out_console,
    print_json,
    report_errors,
)


@report_errors
def info(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The .lcf file to describe.", show_default=False)],
    json: Json = False,
    max_pixels: MaxPixels = api.DEFAULT_MAX_PIXELS,
) -> None:
    """Show the header and the chunks of an .lcf file (without decoding it).

    The chunk table lists each chunk's type, offset, payload length and whether its CRC matches. A damaged file
    is listed as far as it can be, then the problem is reported and the exit code says what it is.

    [bold]Examples[/]
      lcf info photo.lcf
      lcf info photo.lcf --json | jq .header.width
    """
    result = api.inspect_file(file, limits(max_pixels))
    if json:
        print_json({
            "file": str(result.path),
            "size": result.size,
            "header": result.header.as_dict(),
            "chunks": [{"type": c.type, "offset": c.offset, "length": c.length, "crc_ok": c.crc_ok}
                       for c in result.chunks],
            "valid": result.error is None,
            "error": None if result.error is None else error_dict(result.error),
        })
    else:
        _print_table(result)
    if result.error is not None:
        fail(result.error)


def _print_table(result: api.FileInfo) -> None:
    h = result.header
    fields = [
        ("file", f"{result.path} ({result.size} bytes)"),
        ("size", f"{h.width} x {h.height}, {h.color.name}"),
        ("quality", f"{h.quality:g}"),
        ("decoder", h.decoder),
        ("model id", h.model_id.hex()),
        ("latent", f"M = {h.latent_channels}, Mz = {h.hyper_channels}, padded {h.padded_width} x {h.padded_height}"),
    ]
    for name, value in fields:
        out_console.print(f"{name:<9} {value}", markup=False)
    table = Table("type", "offset", "length", "crc ok", box=None, pad_edge=False)
    for c in result.chunks:
        table.add_row(c.type, str(c.offset), str(c.length), "yes" if c.crc_ok else "[red]NO[/]")
    out_console.print(table)
