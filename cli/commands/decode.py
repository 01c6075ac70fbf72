"""lcf decode: .lcf -> image."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lcf import api
from lcf.errors import UsageError
from lcf.fileio import atomic_write
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
from lcf_cli.files import (
    STDIO,
    check_pipes,
    convert_each,
    is_stdio,
    label,
    make_folder,
    plan,
    plan_pages,
    read_stdin,
    write_stdout,
)


@report_errors
def decode(
    srcs: Annotated[
        list[Path],
        typer.Argument(
            metavar="SRC", show_default=False, help="The .lcf files to decode; - reads one from standard input."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DST",
            show_default=False,
            help="Image to write, for one SRC; its suffix picks the format (.png, .ppm, .bmp, ...), or --to. "
            "Replaced if it exists; never SRC itself. An existing folder means FOLDER/<name>.png (or .FORMAT of "
            "--to); - writes to standard output (needs --to).",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-d",
            metavar="DIR",
            show_default=False,
            help="Folder for the outputs, DIR/<name>.png (or .FORMAT of --to) for each SRC (created if needed).",
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="FORMAT",
            show_default=False,
            help="Image format to write: png, ppm, tiff, webp, bmp, jpeg, ... For -d and folders (default png), -o - "
            "(required) and a DST without a known suffix.",
        ),
    ] = None,
    decoder: Decoder = None,
    device: Device = "cpu",
    weights: Weights = None,
    max_pixels: MaxPixels = api.DEFAULT_MAX_PIXELS,
    reencode: Annotated[
        bool,
        typer.Option(
            "--reencode",
            help="Allow an .lcf DST: the decoded pixels are encoded again (a second lossy step, quality 4).",
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print size, decoder and time.")] = False,
) -> None:
    """Decode .lcf files into images: one with -o DST, any number into a folder with -d DIR.

    By default the decoder recommended in the file is used (when the weights lack it, their default, with a warning
    on stderr); --decoder picks another (any decoder of the same weights decodes any file). The output is written
    to a temporary file next to DST (.DST.lcf-tmp) and renamed into place when complete. The format is that of
    DST's suffix, or --to's (they must agree when both are given). Refused before any work: a DST that is SRC (also
    through a link or another spelling of the path), an .lcf DST unless --reencode (decoding to .lcf encodes the
    pixels again), a DST whose format cannot be told, and with -d two inputs with one output or an output that is
    an input.

    With several inputs the weights are loaded once; a file that fails is reported (FAIL on stderr) and the others
    are decoded, then a count is printed and the exit code is that of the first failure.

    "-" reads the .lcf file from standard input (up to the 1 GiB file limit) or writes the image to standard output
    (with --to), once the whole decode has succeeded (nothing on an error); a terminal is refused for either.

    [bold]Examples[/]
      lcf decode photo.lcf -o photo.png
      lcf decode photo.lcf -o photo.png --decoder teacher --device cuda
      lcf decode *.lcf -d decoded/ --to png
      lcf decode photo.lcf -o photo.data --to ppm
      lcf decode huge.lcf -o huge.png --max-pixels 0
      curl -s https://example.org/x.lcf | lcf decode - -o - --to png | display
    """
    folder_suffix = "." + (to or "png").lower().removeprefix(".")
    if to is not None:
        api.output_format(None, to, reencode=reencode, option="--to")  # an unknown --to, before anything else
    pairs = plan(srcs, output, out_dir, folder_suffix)
    lim = limits(max_pixels)
    formats = [_format(src, dst, to, reencode) for src, dst in pairs]
    options = {"decoder": decoder, "device": device, "weights": weights, "limits": lim, "reencode": reencode}
    plan_pages([src for src, _ in pairs], _pixels)
    if len(pairs) == 1:
        (src, dst), fmt = pairs[0], formats[0]
        check_pipes(src, dst)
        make_folder(out_dir)
        _tell(_decode_one(src, dst, fmt, options), verbose)
        return
    if weights is not None:
        api.get_codec(weights, device)  # weights that cannot be loaded are one error, not one per file
    make_folder(out_dir)
    by_pair = dict(zip(pairs, formats, strict=True))

    def convert(src: Path, dst: Path) -> dict:
        report = _decode_one(src, dst, by_pair[src, dst], options)
        _tell(report, verbose)
        return asdict(report)

    convert_each(pairs, convert, done="decoded", json=False)


def _format(src: Path, dst: Path, to: str | None, reencode: bool) -> str:
    """The format DST is written in (before any work: an .lcf DST without --reencode, no format to be told)."""
    if is_stdio(dst):
        if to is None:
            raise UsageError(
                "writing to standard output (-o -) needs the image format: add --to FORMAT "
                "(png, ppm, tiff, webp, bmp, jpeg, ...)"
            )
        return api.output_format(None, to, reencode=reencode, option="--to")
    api.check_image_output(src, dst, reencode)
    return api.output_format(dst, to, reencode=reencode, option="--to")


def _pixels(src: Path) -> int:
    """The pixel count of an .lcf file, from its HEAD chunk."""
    from lcf.container import Limits, read_header_only

    with open(src, "rb") as f:
        header = read_header_only(f, Limits(max_pixels=None))
    return header.width * header.height


def _decode_one(src: Path, dst: Path, fmt: str, options: dict) -> api.DecodeReport:
    """One .lcf file into one image, or from/to a pipe ("-": the output written only once it is complete)."""
    with working(f"decoding {label(src, 'standard input')}"):
        if not is_stdio(src) and not is_stdio(dst):
            return api.decode_file(src, dst, format=fmt, **options)
        if not is_stdio(dst):
            api.require_parent(dst)
        source = read_stdin(options["limits"].max_file_size, "an .lcf file") if is_stdio(src) else src
        data, report = api.decode_to_bytes(source, fmt, name=STDIO, **options)
        if is_stdio(dst):
            write_stdout(data)
        else:
            atomic_write(dst, data)
        return replace(report, dst=dst)


def _tell(report: api.DecodeReport, verbose: bool) -> None:
    """The notes (the file's recommended decoder missing from the weights) and, with -v, size, decoder and time."""
    src, dst = escape(label(report.src, "standard input")), escape(label(report.dst, "standard output"))
    for note in report.notes:
        err_console.print(f"warning: {src}: {escape(note)}")
    if verbose:
        err_console.print(f"{dst}: {report.width}x{report.height}, decoder {report.decoder}, {report.seconds:.2f} s")
