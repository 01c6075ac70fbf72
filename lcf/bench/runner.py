"""Run a rate-distortion benchmark over a folder of images: classical codecs, and lcf through a hook.

    run_benchmark(image_dir, codecs=[...], lcf_encode_decode=hook, out_dir=...)

For every image (sorted by file name), every codec and every setting of its sweep, the codec's ``EncodeDecode`` hook
is called once and a ``Measurement`` (bytes, bpp, PSNR, MS-SSIM, encode/decode seconds) is recorded. lcf is not
imported here: whoever integrates lcf passes

    lcf_encode_decode(rgb: np.ndarray uint8 (H, W, 3), quality: float)
        -> (bytes_len, recon uint8 (H, W, 3), enc_s, dec_s)

and it is swept over ``lcf_qualities`` (the levels 1..7 by default). With an ``out_dir``, per-image rows are appended
to ``<name>_per_image.csv`` as they are measured (``resume=True`` skips rows already there), and at the end the
averaged curves, BD-rates, an R-D plot and a markdown fragment are written beside it. The plot needs matplotlib (the
``bench`` extra): without it everything else is still written, and a warning says so before anything is measured.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lcf.bench import report
from lcf.bench.classical import CODECS
from lcf.bench.metrics import ms_ssim, psnr
from lcf.bench.published import read_published
from lcf.bench.results import EncodeDecode, Measurement, RDCurve, aggregate

LCF = "lcf"
LCF_LEVELS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
LCF_QUICK_LEVELS: tuple[float, ...] = (1.0, 4.0, 7.0)
CLASSICAL = tuple(CODECS)
DEFAULT_REFERENCES = ("webp", "jpeg2000", "published:vtm")
DEFAULT_PUBLISHED = ("vtm", "bpg_444_x265_ycbcr", "av1", "webp", "jpeg2000", "jpeg")
QUICK_IMAGES = 4
MS_SSIM_MIN_SIDE = 160  # 5 scales of an 11x11 window: smaller images get NaN for MS-SSIM, PSNR still counts
IMAGE_SUFFIXES = (".png", ".ppm", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class BenchmarkResult:
    measurements: tuple[Measurement, ...]
    curves: tuple[RDCurve, ...]  # measured, then published
    bd_anchor: tuple[report.BDResult, ...]  # anchor (lcf) vs every other curve
    bd_references: tuple[report.BDResult, ...]  # every measured curve vs each reference curve
    files: dict[str, Path] = field(default_factory=dict)
    elapsed_s: float = 0.0  # wall time of the measurements made in this call


def list_images(image_dir: str | Path) -> list[Path]:
    """Lossless image files directly in ``image_dir``, sorted by name."""
    d = Path(image_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"image folder {d} does not exist or is not a folder")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {d}")
    return files


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def measure(image: str, rgb: np.ndarray, codec: str, param: float, hook: EncodeDecode) -> Measurement:
    """Call ``hook`` once and score its reconstruction."""
    n_bytes, recon, enc_s, dec_s = hook(rgb, param)
    recon = np.asarray(recon)
    if recon.shape != rgb.shape or recon.dtype != np.uint8:
        raise ValueError(
            f"{codec} at {param} on {image}: the hook returned a {recon.dtype} array of shape {recon.shape}; "
            f"expected uint8 {rgb.shape}"
        )
    if int(n_bytes) <= 0:
        raise ValueError(f"{codec} at {param} on {image}: the hook returned bytes_len {n_bytes}; expected > 0")
    h, w = rgb.shape[:2]
    return Measurement(
        image=image,
        codec=codec,
        param=float(param),
        width=w,
        height=h,
        n_bytes=int(n_bytes),
        psnr=psnr(rgb, recon),
        ms_ssim=ms_ssim(rgb, recon) if min(h, w) > MS_SSIM_MIN_SIDE else float("nan"),
        enc_s=float(enc_s),
        dec_s=float(dec_s),
    )


def lcf_variant(effort: int) -> str:
    """Curve id of lcf measured at encoder ``effort``: "lcf" at 0 (the default encoder), "lcf-e<effort>" above."""
    return LCF if effort == 0 else f"{LCF}-e{effort}"


def _plan(
    codecs: Sequence[str], lcf_hooks: dict[str, EncodeDecode], lcf_qualities: Sequence[float], quick: bool
) -> list[tuple[str, tuple[float, ...], EncodeDecode]]:
    names = [n for n in codecs if n != LCF]
    if LCF in codecs and not lcf_hooks:
        raise ValueError("codec 'lcf' was asked for but no lcf_encode_decode hook was given")
    levels = LCF_QUICK_LEVELS if quick else tuple(float(q) for q in lcf_qualities)
    plan = [(variant, levels, hook) for variant, hook in lcf_hooks.items()]
    for name in names:
        if name not in CODECS:
            raise ValueError(f"unknown codec {name!r}; choose from {', '.join((LCF, *CODECS))}")
        c = CODECS[name]
        if not c.available():
            raise ValueError(f"codec {name!r} needs Pillow feature {c.feature!r}, which this Pillow lacks")
        plan.append((name, c.quick_sweep if quick else c.sweep, c.encode_decode))
    return plan


def run_benchmark(
    image_dir: str | Path,
    codecs: Sequence[str] = CLASSICAL,
    lcf_encode_decode: EncodeDecode | dict[str, EncodeDecode] | None = None,
    out_dir: str | Path | None = None,
    *,
    lcf_qualities: Sequence[float] = LCF_LEVELS,
    quick: bool = False,
    max_images: int | None = None,
    published_csv: str | Path | None = None,
    published_codecs: Sequence[str] | None = DEFAULT_PUBLISHED,
    anchor: str | None = None,
    references: Sequence[str] = DEFAULT_REFERENCES,
    resume: bool = False,
    name: str = "kodak",
    log: Callable[[str], None] | None = None,
    lcf_identity: dict | None = None,
    plot: bool | None = None,
) -> BenchmarkResult:
    """Measure ``codecs`` (ids of ``lcf.bench.classical.CODECS``, plus "lcf" when a hook is given) on the images.

    ``quick``: 3 settings per codec and the first 4 images (unless ``max_images`` says otherwise).
    ``published_csv``: optional published curves to plot and compare with (``published_codecs`` of them; None = all).
    BD-rates: ``anchor`` (if measured) against every other curve, and every measured curve against ``references``
    (curve ids, e.g. "webp", "published:vtm"; those not present are skipped).
    ``lcf_identity`` (e.g. the model id and decoder) is stored beside the CSV as ``<name>_lcf.json``; on resume, lcf
    rows measured with another identity (or none recorded) are measured again, so new weights never reuse old rows.

    Several lcf encoders in one run (e.g. efforts 0 and 2): ``lcf_encode_decode`` a dict {curve id: hook} (ids from
    :func:`lcf_variant`) and ``lcf_identity`` a dict {curve id: identity}, stamped in ``<name>_<curve id>.json``.
    ``anchor`` defaults to the first lcf curve.

    ``plot``: draw the R-D PNG (True), or not (False); None (default): draw it when matplotlib is installed, else log
    one warning before measuring. True without matplotlib is a ValueError, raised before anything is measured.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if plot is None:
        plot = report.plotting_available()
        if not plot and out_dir is not None:
            log(no_plot_warning())
    elif plot and not report.plotting_available():
        raise ValueError(f"plot=True needs matplotlib, which is not installed: {report.PLOT_EXTRA}")
    if lcf_encode_decode is None or isinstance(lcf_encode_decode, dict):
        hooks = dict(lcf_encode_decode or {})
        identities = dict(lcf_identity or {})
    else:
        hooks = {LCF: lcf_encode_decode}
        identities = {} if lcf_identity is None else {LCF: lcf_identity}
    anchor = anchor or next(iter(hooks), LCF)
    plan = _plan(codecs, hooks, lcf_qualities, quick)
    images = list_images(image_dir)
    if max_images is not None or quick:
        images = images[: max_images if max_images is not None else QUICK_IMAGES]
    out = Path(out_dir) if out_dir is not None else None
    per_image_csv = None
    done: dict[tuple[str, str, float], Measurement] = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        per_image_csv = out / f"{name}_per_image.csv"
        if resume and per_image_csv.exists():
            done = {(m.image, m.codec, m.param): m for m in report.read_measurements_csv(per_image_csv)}
            log(f"resuming: {len(done)} rows already in {per_image_csv}")
        for variant, identity in identities.items():
            if variant in hooks:
                done = _drop_stale_lcf_rows(done, out / f"{name}_{variant}.json", variant, identity, log)
        report.write_measurements_csv(done.values(), per_image_csv)

    measurements: list[Measurement] = []
    t_start = time.perf_counter()
    for i, path in enumerate(images, start=1):
        rgb = load_rgb(path)
        for codec, params, hook in plan:
            t0 = time.perf_counter()
            new = 0
            for param in params:
                key = (path.stem, codec, float(param))
                m = done.get(key)
                if m is None:
                    m = measure(path.stem, rgb, codec, param, hook)
                    new += 1
                    if per_image_csv is not None:
                        _append_row(per_image_csv, m)
                measurements.append(m)
            if new:
                log(f"[{i}/{len(images)}] {path.stem} {codec}: {new} settings in {time.perf_counter() - t0:.1f} s")
    elapsed = time.perf_counter() - t_start

    curves = aggregate(measurements)
    if published_csv is not None:
        wanted = set(published_codecs) if published_codecs is not None else None
        if wanted is not None:
            wanted |= {r.split(":", 1)[1] for r in references if r.startswith("published:")}
        curves += [c for c in read_published(published_csv) if wanted is None or c.codec in wanted]
    ids = {c.id for c in curves}
    measured = [c.id for c in curves if c.source == "measured"]
    bd_anchor = report.bd_table(curves, [anchor], [i for i in ids if i != anchor]) if anchor in measured else []
    bd_anchor.sort(key=lambda r: r.reference)
    refs = [r for r in references if r in ids]
    bd_refs = report.bd_table(curves, [m for m in measured if m != anchor], refs)

    result = BenchmarkResult(tuple(measurements), tuple(curves), tuple(bd_anchor), tuple(bd_refs), elapsed_s=elapsed)
    if out is not None:
        result.files.update(
            write_outputs(
                result, out, name, images_desc=f"{len(images)} images from {Path(image_dir).name}/", plot=plot, log=log
            )
        )
    return result


def no_plot_warning() -> str:
    return (
        f"warning: matplotlib is not installed, so no R-D plot (PNG) will be drawn; the table, CSV files and "
        f"markdown are written as usual ({report.PLOT_EXTRA} adds the plot)"
    )


def _drop_stale_lcf_rows(done: dict, stamp: Path, variant: str, identity: dict, log: Callable[[str], None]) -> dict:
    """Keep the rows of lcf curve ``variant`` only if ``stamp`` says they were measured with ``identity``; then record
    ``identity``."""
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if recorded != identity:
        stale = [k for k in done if k[1] == variant]
        if stale:
            log(
                f"measuring {variant} again: the {len(stale)} {variant} rows on file were measured with "
                f"{recorded or 'unrecorded'} weights, not {identity}"
            )
        done = {k: m for k, m in done.items() if k[1] != variant}
    stamp.write_text(json.dumps(identity, sort_keys=True) + "\n", encoding="utf-8")
    return done


def _append_row(path: Path, m: Measurement) -> None:
    import csv

    with path.open("a", newline="", encoding="utf-8") as f:
        csv.DictWriter(f, fieldnames=report.MEASUREMENT_COLUMNS).writerow(report.measurement_row(m))


def write_outputs(
    result: BenchmarkResult,
    out: Path,
    name: str,
    images_desc: str = "",
    *,
    plot: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Curves CSV, BD CSV, R-D PNG (if ``plot``) and the markdown fragment ``<name>.md`` (the per-image CSV is written
    during the run). A plot that cannot be drawn (matplotlib missing or broken) is logged and skipped."""
    files = {
        "per_image_csv": out / f"{name}_per_image.csv",
        "curves_csv": report.write_curves_csv(result.curves, out / f"{name}_rd.csv"),
        "bd_csv": report.write_bd_csv(result.bd_anchor + result.bd_references, out / f"{name}_bd.csv"),
    }
    if plot:
        try:
            files["png"] = report.plot_rd(
                result.curves, out / f"{name}_rd.png", title=f"{name}: {images_desc}".rstrip(": ")
            )
        except ImportError as exc:
            (log or (lambda msg: print(msg, file=sys.stderr, flush=True)))(
                f"warning: no R-D plot: {exc} ({report.PLOT_EXTRA})"
            )
    md = [f"R-D points ({images_desc}, mean over images):", "", report.markdown_curves(result.curves), ""]
    if result.bd_anchor:
        md += [
            "BD-rate of the anchor against every other curve (negative = anchor saves bits):",
            "",
            report.markdown_bd(result.bd_anchor),
            "",
        ]
    if result.bd_references:
        md += [
            "BD-rate of each measured codec against reference curves (negative = test saves bits):",
            "",
            report.markdown_bd(result.bd_references),
            "",
        ]
    if "png" in files:
        md += [f"![R-D curves]({name}_rd.png)", ""]
    files["markdown"] = out / f"{name}.md"
    files["markdown"].write_text("\n".join(md), encoding="utf-8")
    return files
