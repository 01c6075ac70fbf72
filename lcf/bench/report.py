"""Reporting: rich tables, CSV files, R-D plots (PNG) and BD-rate tables, measured vs published.

Sign convention everywhere: ``bd_rate`` of a *test* curve against a *reference* curve, in percent; negative means the
test codec needs fewer bits than the reference for the same PSNR. The headline value is the piecewise-cubic (pchip)
BD-rate; the classic single-cubic (VCEG-M33) value is given beside it (see ``lcf.bench.bdrate``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from lcf.bench.bdrate import bd_quality, bd_rate, ms_ssim_db
from lcf.bench.results import Measurement, RDCurve, find_curve

# ---------------------------------------------------------------------------------------------------------------------
# BD-rate tables


@dataclass(frozen=True)
class BDResult:
    """BD figures of ``test`` against ``reference`` (curve ids). Rates in percent, PSNR in dB; NaN = no overlap."""

    test: str
    reference: str
    bd_rate: float  # pchip, PSNR: the headline number
    bd_rate_cubic: float  # single cubic (VCEG-M33), PSNR
    bd_psnr: float  # pchip, dB at equal rate
    bd_rate_ms_ssim: float  # pchip, MS-SSIM in dB
    psnr_lo: float  # the PSNR interval the BD-rate averages over
    psnr_hi: float


def _safe(fn, *args, **kwargs) -> float:
    try:
        return fn(*args, **kwargs)
    except (ValueError, IndexError):  # too few points for the method (none at all: IndexError), or a degenerate curve
        return math.nan


def compare(reference: RDCurve, test: RDCurve) -> BDResult:
    """All BD figures of ``test`` against ``reference``."""
    r_ref, q_ref, m_ref = reference.column("bpp"), reference.column("psnr"), reference.column("ms_ssim")
    r_t, q_t, m_t = test.column("bpp"), test.column("psnr"), test.column("ms_ssim")
    ok_ref, ok_t = np.isfinite(m_ref) & (m_ref < 1), np.isfinite(m_t) & (m_t < 1)
    return BDResult(
        test=test.id,
        reference=reference.id,
        bd_rate=_safe(bd_rate, r_ref, q_ref, r_t, q_t, "pchip"),
        bd_rate_cubic=_safe(bd_rate, r_ref, q_ref, r_t, q_t, "cubic"),
        bd_psnr=_safe(bd_quality, r_ref, q_ref, r_t, q_t, "pchip"),
        bd_rate_ms_ssim=_safe(
            bd_rate, r_ref[ok_ref], ms_ssim_db(m_ref[ok_ref]), r_t[ok_t], ms_ssim_db(m_t[ok_t]), "pchip"
        ),
        psnr_lo=max(float(np.min(q_ref)), float(np.min(q_t))),
        psnr_hi=min(float(np.max(q_ref)), float(np.max(q_t))),
    )


def bd_table(curves: Sequence[RDCurve], tests: Iterable[str], references: Iterable[str]) -> list[BDResult]:
    """BD figures of every test curve against every reference curve (ids; a curve is never compared with itself)."""
    refs = list(references)
    return [compare(find_curve(curves, r), find_curve(curves, t)) for t in tests for r in refs if r != t]


# ---------------------------------------------------------------------------------------------------------------------
# CSV

MEASUREMENT_COLUMNS = [f.name for f in fields(Measurement)] + ["bpp"]
CURVE_COLUMNS = ["curve", "codec", "source", "param", "bpp", "psnr", "ms_ssim", "enc_s", "dec_s", "n_images"]


def measurement_row(m: Measurement) -> dict[str, object]:
    return {**asdict(m), "bpp": m.bpp}


def write_measurements_csv(measurements: Iterable[Measurement], path: str | Path) -> Path:
    """Per-image results, one row per (image, codec, setting)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=MEASUREMENT_COLUMNS)
        w.writeheader()
        for m in measurements:
            w.writerow(measurement_row(m))
    return path


def read_measurements_csv(path: str | Path) -> list[Measurement]:
    """Rows written by ``write_measurements_csv`` (the ``bpp`` column is derived and ignored)."""
    out = []
    with Path(path).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.append(
                Measurement(
                    image=row["image"],
                    codec=row["codec"],
                    param=float(row["param"]),
                    width=int(row["width"]),
                    height=int(row["height"]),
                    n_bytes=int(row["n_bytes"]),
                    psnr=float(row["psnr"]),
                    ms_ssim=float(row["ms_ssim"]),
                    enc_s=float(row["enc_s"]),
                    dec_s=float(row["dec_s"]),
                )
            )
    return out


def write_curves_csv(curves: Iterable[RDCurve], path: str | Path) -> Path:
    """Averaged R-D points of every curve, measured and published."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        w.writeheader()
        for c in curves:
            for p in c.points:
                w.writerow({"curve": c.id, "codec": c.codec, "source": c.source, **asdict(p)})
    return path


def write_bd_csv(results: Iterable[BDResult], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=[f.name for f in fields(BDResult)])
        w.writeheader()
        for r in results:
            w.writerow(asdict(r))
    return path


# ---------------------------------------------------------------------------------------------------------------------
# rich tables


def _console(console=None):
    """The given console, else one on stdout that is wide enough for the tables when stdout is not a terminal."""
    from rich.console import Console

    if console is not None:
        return console
    default = Console()
    return default if default.is_terminal else Console(width=140)


def _fmt(value: float, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def print_curves(curves: Sequence[RDCurve], console=None) -> None:
    """Averaged R-D points as a rich table (published curves carry no times)."""
    from rich.table import Table

    table = Table(title="R-D points (mean over images)")
    for name, justify in (
        ("curve", "left"),
        ("setting", "right"),
        ("bpp", "right"),
        ("PSNR dB", "right"),
        ("MS-SSIM", "right"),
        ("enc ms", "right"),
        ("dec ms", "right"),
    ):
        table.add_column(name, justify=justify)
    for c in curves:
        for i, p in enumerate(c.points):
            table.add_row(
                c.label if i == 0 else "",
                p.param,
                _fmt(p.bpp, ".4f"),
                _fmt(p.psnr, ".3f"),
                _fmt(p.ms_ssim, ".5f"),
                _fmt(p.enc_s * 1e3, ".1f"),
                _fmt(p.dec_s * 1e3, ".1f"),
                end_section=i == len(c.points) - 1,
            )
    _console(console).print(table)


def print_bd(results: Sequence[BDResult], title: str = "BD-rate (test vs reference)", console=None) -> None:
    from rich.table import Table

    table = Table(title=title)
    for name in (
        "test",
        "reference",
        "BD-rate % (pchip)",
        "BD-rate % (cubic)",
        "BD-PSNR dB",
        "BD-rate % MS-SSIM",
        "PSNR range dB",
    ):
        table.add_column(name, justify="left" if name in ("test", "reference") else "right")
    for r in results:
        table.add_row(
            r.test,
            r.reference,
            _fmt(r.bd_rate, "+.1f"),
            _fmt(r.bd_rate_cubic, "+.1f"),
            _fmt(r.bd_psnr, "+.2f"),
            _fmt(r.bd_rate_ms_ssim, "+.1f"),
            f"{_fmt(r.psnr_lo, '.1f')}-{_fmt(r.psnr_hi, '.1f')}",
        )
    _console(console).print(table)


# ---------------------------------------------------------------------------------------------------------------------
# plot

# one colour per codec family, shared by a measured curve and the published curve of the same family
_FAMILY = {"jpeg420": "jpeg", "jpeg": "jpeg", "avif": "av1", "av1": "av1", "bpg_444_x265_ycbcr": "hevc", "hm": "hevc"}


PLOT_EXTRA = 'pip install "lcf[bench]"'
"""What installs the optional plotting dependency (matplotlib), for messages."""


def plotting_available() -> bool:
    """Whether matplotlib, an optional dependency (the ``bench`` extra), can be imported: checked before a benchmark
    starts, so that a missing plotter is said at once instead of after minutes of measuring."""
    import importlib.util

    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        return False


def plot_rd(curves: Sequence[RDCurve], path: str | Path, title: str = "Kodak", max_bpp: float | None = 2.2) -> Path:
    """PSNR vs bpp and MS-SSIM (dB) vs bpp side by side; measured solid with markers, published dashed.

    Needs matplotlib (``pip install "lcf[bench]"``); ImportError without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = list(plt.get_cmap("tab10").colors) + list(plt.get_cmap("Dark2").colors)
    colours: dict[str, tuple] = {}

    def colour(c: RDCurve) -> tuple:
        family = _FAMILY.get(c.codec, c.codec)
        if family not in colours:
            colours[family] = palette[len(colours) % len(palette)]
        return colours[family]

    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5))
    shown: tuple[list[float], list[float]] = ([], [])  # y values inside the bpp range, per panel
    for c in sorted(curves, key=lambda c: c.source):  # measured first: they own the colours
        bpp = c.column("bpp")
        inside = bpp <= (max_bpp or np.inf)
        shown[0].extend(c.column("psnr")[inside & np.isfinite(c.column("psnr"))])
        style = (
            {"linestyle": "-", "marker": "o", "markersize": 3.5, "linewidth": 1.6}
            if c.source == "measured"
            else {"linestyle": "--", "marker": "x", "markersize": 3.5, "linewidth": 1.1, "alpha": 0.85}
        )
        if c.codec.split("-")[0] == "lcf" and c.source == "measured":  # lcf, lcf-e2, ...
            style.update(linewidth=2.6, markersize=5)
        axes[0].plot(bpp, c.column("psnr"), color=colour(c), label=c.label, **style)
        ms = c.column("ms_ssim")
        ok = np.isfinite(ms) & (ms < 1)
        axes[1].plot(bpp[ok], ms_ssim_db(ms[ok]), color=colour(c), label=c.label, **style)
        shown[1].extend(ms_ssim_db(ms[ok & inside]))
    axes[0].set_ylabel("PSNR (dB, RGB)")
    axes[1].set_ylabel("MS-SSIM (dB) = -10 log10(1 - MS-SSIM), RGB")
    for ax, ys in zip(axes, shown, strict=True):
        ax.set_xlabel("bits per pixel")
        ax.grid(True, alpha=0.3)
        if max_bpp:
            ax.set_xlim(0, max_bpp)
            if ys:
                ax.set_ylim(min(ys) - 0.5, max(ys) + 0.5)
    axes[0].legend(fontsize=8, loc="lower right", title="solid: measured here\ndashed: published", title_fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# markdown


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_curves(curves: Sequence[RDCurve]) -> str:
    rows = []
    for c in curves:
        if c.source != "measured":
            continue
        for p in c.points:
            rows.append(
                (
                    c.id,
                    p.param,
                    f"{p.bpp:.4f}",
                    f"{p.psnr:.3f}",
                    f"{p.ms_ssim:.5f}",
                    _fmt(p.enc_s * 1e3, ".1f"),
                    _fmt(p.dec_s * 1e3, ".1f"),
                )
            )
    return _md_table(("codec", "setting", "bpp", "PSNR dB", "MS-SSIM", "enc ms", "dec ms"), rows)


def markdown_bd(results: Sequence[BDResult]) -> str:
    rows = [
        (
            r.test,
            r.reference,
            _fmt(r.bd_rate, "+.1f"),
            _fmt(r.bd_rate_cubic, "+.1f"),
            _fmt(r.bd_psnr, "+.2f"),
            _fmt(r.bd_rate_ms_ssim, "+.1f"),
            f"{_fmt(r.psnr_lo, '.1f')}–{_fmt(r.psnr_hi, '.1f')}",
        )
        for r in results
    ]
    return _md_table(
        (
            "test",
            "reference",
            "BD-rate % (pchip)",
            "BD-rate % (cubic)",
            "BD-PSNR dB (pchip)",
            "BD-rate % MS-SSIM dB (pchip)",
            "PSNR range dB",
        ),
        rows,
    )
