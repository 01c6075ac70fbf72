"""lcf bench: rate-distortion and speed of lcf against the classical codecs, on a folder of images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from lcf_cli.common import Device, Weights, err_console, report_errors


def lcf_hook(weights: Path | None, device: str, decoder: str | None, effort: int = 0):
    """The runner's hook for lcf, (rgb, quality) -> (bytes, reconstruction, encode s, decode s), and what identifies
    the lcf being measured (model id, encoder id, decoder and, above 0, the effort: rows of other weights, or of
    another encoder of the same model, are never reused by --resume)."""
    from lcf import api

    codec = api.get_codec(weights, device)
    identity: dict[str, str | int] = {
        "model_id": codec.weights.model_id.hex(),
        "encoder_id": codec.weights.encoder_id().hex(),
        "decoder": codec.resolve_decoder(decoder),
    }
    if effort:
        identity["effort"] = effort

    def encode_decode(rgb, quality):
        t0 = time.perf_counter()
        data = codec.encode(rgb, quality, decoder, effort)
        t1 = time.perf_counter()
        rec = codec.decode(data, decoder).rgb
        return len(data), rec, t1 - t0, time.perf_counter() - t1

    return encode_decode, identity


def parse_efforts(text: str) -> list[int]:
    """ "0,2" -> [0, 2]; UsageError for anything but distinct efforts 0..MAX_EFFORT."""
    from lcf.errors import UsageError
    from lcf.options import check_effort

    try:
        efforts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--effort takes comma-separated integers such as 0,2, got {text!r}") from None
    if not efforts or len(set(efforts)) != len(efforts):
        raise UsageError(f"--effort takes distinct efforts such as 0,2, got {text!r}")
    return [check_effort(e) for e in efforts]


@report_errors
def bench(
    images: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", show_default=False, help="Folder of lossless test images (PNG/PPM/TIFF), e.g. the Kodak set."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Where CSV, PNG and markdown go.")] = Path(
        "bench-results"
    ),
    codecs: Annotated[
        str,
        typer.Option(
            "--codecs",
            help="Comma-separated codecs to measure besides lcf: jpeg420, jpeg444, webp, jpeg2000, avif; "
            "'none' for lcf alone.",
        ),
    ] = "jpeg420,jpeg444,webp,jpeg2000,avif",
    published: Annotated[
        Path | None,
        typer.Option(
            "--published",
            metavar="CSV",
            help="Published R-D points to plot and compare with (marked 'published'), "
            "e.g. ../shared/reference/kodak_published.csv.",
        ),
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="3 settings per codec on the first 4 images.")] = False,
    max_images: Annotated[int | None, typer.Option("--max-images", help="Use only the first N images.")] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Reuse rows already in the output CSV (lcf rows only if they were measured with the same weights).",
        ),
    ] = False,
    device: Device = "cpu",
    decoder: Annotated[str | None, typer.Option("--decoder", metavar="NAME", help="lcf decoder to measure.")] = None,
    effort: Annotated[
        str,
        typer.Option(
            "--effort",
            metavar="E[,E...]",
            help="lcf encoder efforts to measure, one curve each (lcf, lcf-e1, ...); BD-rates are of the first.",
        ),
    ] = "0",
    weights: Weights = None,
) -> None:
    """Measure lcf at every quality level and the classical codecs in the same run.

    Per codec and setting: mean bpp, mean PSNR (RGB, per image then averaged), mean MS-SSIM, encode and decode
    time. Prints a table, writes CSV, draws the R-D curves to a PNG and computes BD-rates of lcf against every
    other curve (published ones included when --published is given).

    The plot needs matplotlib, an optional dependency: pip install "lcf\\[bench]". Without it, a warning says so before
    anything is measured, and the table, CSV files and markdown are still written.

    [bold]Examples[/]
      lcf bench ../shared/data/kodak --out results --published ../shared/reference/kodak_published.csv
      lcf bench photos/ --codecs webp,avif --quick
      lcf bench ../shared/data/kodak --out results --effort 0,2 --resume    (adds the lcf-e2 curve)
    """
    from lcf.bench import report
    from lcf.bench.runner import lcf_variant, no_plot_warning, run_benchmark

    plot = report.plotting_available()  # before the weights are loaded or anything is measured
    if not plot:
        err_console.print(no_plot_warning(), highlight=False, markup=False)
    names = [] if codecs.strip() == "none" else [c.strip() for c in codecs.split(",") if c.strip()]
    hooks, identities = {}, {}
    for e in parse_efforts(effort):
        hooks[lcf_variant(e)], identities[lcf_variant(e)] = lcf_hook(weights, device, decoder, e)
    result = run_benchmark(
        images,
        names,
        hooks,
        out,
        quick=quick,
        max_images=max_images,
        published_csv=published,
        resume=resume,
        name=images.resolve().name or "bench",
        log=lambda msg: err_console.print(msg, highlight=False, markup=False),
        lcf_identity=identities,
        plot=plot,
    )
    report.print_curves(result.curves)
    first = next(iter(hooks))
    report.print_bd(list(result.bd_anchor), title=f"BD-rate of {first} (negative = {first} needs fewer bits)")
    if len(hooks) > 1:
        others = [r for r in result.bd_references if r.test in hooks]
        report.print_bd(others, title="BD-rate of the other lcf curves against the references")
    for kind, path in result.files.items():
        err_console.print(f"{kind}: {path}")
