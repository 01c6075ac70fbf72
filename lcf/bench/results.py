"""Typed benchmark results: one ``Measurement`` per (image, codec, setting) and ``RDCurve``s averaged over images.

A curve's ``id`` names it everywhere (tables, CSV, BD-rate arguments): the codec name for measured curves
(``"webp"``, ``"lcf"``) and ``"published:<codec>"`` for published ones (``"published:vtm"``), so a measured and a
published curve of the same codec never collide.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Source = Literal["measured", "published"]
PUBLISHED_PREFIX = "published:"


@dataclass(frozen=True)
class Measurement:
    """One image coded by one codec at one setting. Times in seconds; ``n_bytes`` is the whole coded file."""

    image: str
    codec: str
    param: float
    width: int
    height: int
    n_bytes: int
    psnr: float
    ms_ssim: float
    enc_s: float
    dec_s: float

    @property
    def bpp(self) -> float:
        return self.n_bytes * 8.0 / (self.width * self.height)


@dataclass(frozen=True)
class RDPoint:
    """One point of an R-D curve: averages over the images of a data set (NaN where unknown)."""

    param: str
    bpp: float
    psnr: float
    ms_ssim: float
    enc_s: float = float("nan")
    dec_s: float = float("nan")
    n_images: int = 0


@dataclass(frozen=True)
class RDCurve:
    """An R-D curve of one codec, points sorted by bpp."""

    codec: str
    points: tuple[RDPoint, ...]
    source: Source = "measured"
    note: str = ""

    @property
    def id(self) -> str:
        return self.codec if self.source == "measured" else PUBLISHED_PREFIX + self.codec

    @property
    def label(self) -> str:
        return self.codec if self.source == "measured" else f"{self.codec} (published)"

    def column(self, name: str) -> np.ndarray:
        return np.array([getattr(p, name) for p in self.points], dtype=np.float64)


def format_param(value: float) -> str:
    """Setting as text: integers without a decimal point (quality 75), other values with up to 4 digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def aggregate(measurements: Iterable[Measurement]) -> list[RDCurve]:
    """Average per (codec, setting) over images, as CompressAI does: mean bpp, mean per-image PSNR and MS-SSIM.

    Times are means too. Curves come out in order of first appearance, points sorted by bpp.
    """
    groups: dict[str, dict[float, list[Measurement]]] = defaultdict(lambda: defaultdict(list))
    for m in measurements:
        groups[m.codec][m.param].append(m)
    curves = []
    for codec, by_param in groups.items():
        points = []
        for param, ms in by_param.items():
            points.append(
                RDPoint(
                    param=format_param(param),
                    bpp=float(np.mean([m.bpp for m in ms])),
                    psnr=float(np.mean([m.psnr for m in ms])),
                    ms_ssim=float(np.mean([m.ms_ssim for m in ms])),
                    enc_s=float(np.mean([m.enc_s for m in ms])),
                    dec_s=float(np.mean([m.dec_s for m in ms])),
                    n_images=len(ms),
                )
            )
        curves.append(RDCurve(codec=codec, points=tuple(sorted(points, key=lambda p: p.bpp))))
    return curves


def find_curve(curves: Sequence[RDCurve], curve_id: str) -> RDCurve:
    """The curve whose ``id`` is ``curve_id``; ``KeyError`` listing the ids present otherwise."""
    for c in curves:
        if c.id == curve_id:
            return c
    raise KeyError(f"no R-D curve {curve_id!r}; present: {', '.join(c.id for c in curves) or 'none'}")


EncodeDecode = Callable[[np.ndarray, float], tuple[int, np.ndarray, float, float]]
"""The codec hook the runner measures: ``(rgb uint8 (H, W, 3), quality) -> (bytes_len, reconstruction uint8 (H, W, 3),
encode seconds, decode seconds)``. Classical codecs are wrapped into it; lcf's integrator passes one for lcf."""
