"""lcf encode: image -> .lcf."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from lcf import api
from lcf.errors import LcfError
from lcf.fileio import atomic_write
from lcf_cli.common import (
    Device,
    Effort,
    Json,
    MaxPixels,
    Weights,
    err_console,
    print_json,
    report_errors,
    working,
)
from lcf_cli.files import (
    MAX_STDIN_IMAGE,
    STDIO,
    check_pipes,
    convert_each,
    failure_record,
    is_stdio,
    label,
    make_folder,
    plan,
    plan_pages,
    read_stdin,
    write_stdout,
)
from lcf_cli.targets import KeepNearest, Quality, TargetBpp, TargetPsnr, TargetSize
from lcf_cli.targets import choose as choose_target
from lcf_cli.targets import describe as describe_target

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


@report_errors
def encode(
    srcs: Annotated[
        list[Path],
        typer.Argument(
            metavar="SRC",
            show_default=False,
            help="Images to encode (PNG, JPEG, PPM, ... anything Pillow reads); - reads one from standard input.",
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DST",
            show_default=False,
            help="The .lcf file to write, for one SRC (replaced if it exists; never SRC itself); an existing folder "
            "means FOLDER/<name>.lcf; - writes to standard output.",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-d",
            metavar="DIR",
            show_default=False,
            help="Folder for the outputs, DIR/<name>.lcf for each SRC (created if needed).",
        ),
    ] = None,
    quality: Quality = None,
    target_size: TargetSize = None,
    target_bpp: TargetBpp = None,
    target_psnr: TargetPsnr = None,
    keep_nearest: KeepNearest = False,
    effort: Effort = 0,
    device: Device = "cpu",
    decoder: Annotated[
        str | None,
        typer.Option(
            "--decoder",
            metavar="NAME",
            help="Decoder to record as recommended in the file; default from the weights.",
        ),
    ] = None,
    weights: Weights = None,
    max_pixels: MaxPixels = api.DEFAULT_MAX_PIXELS,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print size, rate (bpp), PSNR and time.")] = False,
    json: Json = False,
) -> None:
    """Encode images into .lcf files: one with -o DST, any number into a folder with -d DIR (as gzip a b c).

    The output is written to a temporary file next to DST (.DST.lcf-tmp) and renamed into place when complete.
    DST may not be SRC (the same file, also through a link or another spelling of the path), and with -d no two
    inputs may share an output (a.png and a.jpg -> a.lcf) nor an output be an input: refused before any work.

    With several inputs the weights are loaded once; a file that fails is reported (FAIL on stderr) and the others
    are encoded, then a count is printed and the exit code is that of the first failure.

    "-" reads the image from standard input (up to 1 GiB) or writes the .lcf file to standard output, once the
    whole encode has succeeded (nothing on an error); a terminal is refused for either.

    Alpha, ICC profile, EXIF and XMP are kept. lcf codes 8-bit RGB: whatever it changes to get there (16 -> 8 bits,
    CMYK or palette -> RGB, an ICC profile dropped, EXIF orientation applied) is printed as a "note:" line on stderr
    and listed in --json ("notes"). --json prints the report (size, bpp, notes; PSNR with -v) on stdout; with
    several inputs an object with "ok" and "files", one report (or "error") per file. A file that fails has the
    record {"src", "dst", "status": "failed", "error": {"message", "exit_code", ...}}, printed alone with one input.

    --max-pixels refuses larger images before decoding them (0: no limit); the memory an image needs is capped
    too (8 GiB; LCF_MAX_MEMORY=<GiB> raises it).

    Rate control: --target-size, --target-bpp or --target-psnr (one of them, instead of --quality) searches the
    quality (on its 1/256 grid): the best quality within the size, or the smallest file whose decoded image (with
    the recommended decoder) reaches the PSNR. The file is byte for byte what -q with the chosen quality writes; -v
    and --json report the target, the quality, size, bpp and PSNR. A target no quality meets (a size below quality
    1's file, a PSNR above the best) fails with exit code 9 and names the nearest reachable value (in --json, the
    failed file's "target": "met" false, "nearest", as lcf batch --json gives it); --keep-nearest writes that file
    instead, with a warning. With --effort above 0 each probe of the search is refined (slow).

    [bold]Examples[/]
      lcf encode photo.png -o photo.lcf
      lcf encode photo.jpg -o photo.lcf --quality 5.5 -v
      lcf encode a.png b.png c.jpg -d encoded/
      lcf encode photo.png -o photo.lcf --effort 2 -v  (slower; -v: size and PSNR)
      lcf encode scan.png -o scan.lcf --device cuda --decoder teacher
      convert photo.tif png:- | lcf encode - -o - > photo.lcf
      lcf encode pano.png -o pano.lcf --max-pixels 0
      lcf encode photo.png -o photo.lcf --target-size 30KB -v  (the best quality within 30,000 bytes)
      lcf encode photo.png -o photo.lcf --target-psnr 30 --json  (the smallest file at 30 dB or more)
      lcf encode a.png b.png -d small/ --target-bpp 0.5 --keep-nearest
    """
    quality, target = choose_target(quality, target_size, target_bpp, target_psnr, keep_nearest)
    pairs = plan(srcs, output, out_dir, ".lcf")
    options = {
        "quality": quality,
        "effort": effort,
        "device": device,
        "decoder": decoder,
        "weights": weights,
        "measure": verbose,
        "max_pixels": max_pixels or None,
        "target": target,
        "keep_nearest": keep_nearest,
    }
    plan_pages([src for src, _ in pairs], _pixels)
    if len(pairs) == 1:
        src, dst = pairs[0]
        check_pipes(src, dst, json=json)
        make_folder(out_dir)
        try:
            report = _encode_one(src, dst, options)
        except (LcfError, OSError) as exc:
            error = exc if isinstance(exc, LcfError) else api.io_error(exc)
            if json:  # the file's record on stdout, as with several inputs; the message and exit code as before
                print_json(failure_record(src, dst, error))
            raise error from None
        _tell(report, effort, verbose)
        if json:
            print_json(asdict(report))
        return
    api.check_quality(quality)
    api.check_effort(effort)
    api.get_codec(weights, device)  # weights that cannot be loaded are one error, not one per file
    make_folder(out_dir)

    def convert(src: Path, dst: Path) -> dict:
        report = _encode_one(src, dst, options)
        _tell(report, effort, verbose)
        return asdict(report)

    convert_each(pairs, convert, done="encoded", json=json)


def _pixels(src: Path) -> int:
    """The pixel count of an image file, from its header (Pillow decodes nothing until asked; its warning about
    large images is for lcf.image to judge, not this look)."""
    import warnings

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(src) as image:
            return image.width * image.height


def _encode_one(src: Path, dst: Path, options: dict) -> api.EncodeReport:
    """One image into one .lcf file, or from/to a pipe ("-": the output written only once it is complete)."""
    effort = options["effort"]
    spinner = working(f"encoding {label(src, 'standard input')}") if not effort else nullcontext()
    with _RefineBar(effort) as bar, spinner:
        if not is_stdio(src) and not is_stdio(dst):
            return api.encode_file(src, dst, progress=bar.update, **options)
        if not is_stdio(dst):
            api.require_parent(dst)
        source = (
            read_stdin(MAX_STDIN_IMAGE, "an image read from a pipe (a larger one: give its file)")
            if is_stdio(src)
            else src
        )
        data, report = api.encode_to_bytes(source, name=STDIO, progress=bar.update, **options)
        if is_stdio(dst):
            write_stdout(data)
        else:
            atomic_write(dst, data)
        return replace(report, dst=dst)


def _tell(report: api.EncodeReport, effort: int, verbose: bool) -> None:
    """The notes (what lcf changed in the image) and, with -v, the size, rate, PSNR and time, on stderr."""
    src, dst = escape(label(report.src, "standard input")), escape(label(report.dst, "standard output"))
    for note in report.notes:
        err_console.print(f"note: {src}: {escape(note)}")
    if report.target is not None and not report.target.met:
        err_console.print(f"warning: {escape(report.target.message or '')}; wrote the nearest file, {dst}")
    if verbose:
        psnr = f", PSNR {report.psnr:.2f} dB" if report.psnr is not None else ""
        level = f", effort {effort}" if effort else ""
        err_console.print(
            f"{dst}: {report.width}x{report.height}, {report.bytes} bytes, "
            f"{report.bpp:.4f} bpp{psnr}{level}, {report.seconds:.2f} s"
        )
        if report.target is not None:
            err_console.print(f"{dst}: {escape(describe_target(report.target, report.quality, effort))}")


class _RefineBar:
    """A transient progress bar on stderr over the refinement steps of --effort > 0 (nothing at effort 0)."""

    def __init__(self, effort: int) -> None:
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        if effort:  # rich.progress only then (issue 21: start-up)
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn(f"refining (effort {effort})"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )

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
