"""Bjøntegaard delta rate (BD-rate) and delta PSNR between two rate-distortion curves.

BD-rate is the average relative bit-rate difference of a *test* curve against a *reference* (anchor) curve at equal
quality: log-rate is modelled as a function of quality (PSNR in dB, or any other "higher is better" quality in dB)
for each curve, both models are integrated over the quality interval where the curves overlap, and

    BD-rate = exp((integral_test - integral_reference) / (q_max - q_min)) - 1        (in percent below)

so that -20 % means the test codec needs 20 % fewer bits than the reference for the same quality.

Two interpolants are provided:

* ``"cubic"``: G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves", VCEG-M33 (2001): one
  least-squares cubic polynomial through all points of a curve (needs >= 4 points). This is what most learned-
  image-compression papers quote.
* ``"pchip"``: piecewise cubic Hermite interpolation (Fritsch-Carlson monotone slopes, the same interpolant as
  ``scipy.interpolate.PchipInterpolator``), integrated exactly. This is the piecewise-cubic variant that VCEG-AL22 /
  the JVET common-test-conditions spreadsheet adopted because a single cubic over-shoots on wide, dense curves.

lcf reports **pchip** as its headline number and the cubic value beside it (see ``docs/BENCHMARKS.md``).

Before fitting, a curve is sorted by rate and any point that does not raise quality above all lower-rate points is
dropped (an inefficient setting is not part of the codec's R-D curve; the interpolant needs strictly increasing
quality). If the two curves do not overlap in quality the result is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

Method = Literal["pchip", "cubic"]
METHODS: tuple[Method, ...] = ("pchip", "cubic")


def monotone_points(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Points sorted by rate, keeping only those whose quality exceeds every lower-rate point's quality."""
    r = np.asarray(rates, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError(f"rates and quality must be 1-D and of equal length, got shapes {r.shape} and {q.shape}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError("rates and quality must be finite")
    if np.any(r <= 0):
        raise ValueError(f"rates must be > 0 (log rate is interpolated), got minimum {r.min()}")
    order = np.lexsort((-q, r))  # by rate, best quality first among equal rates
    keep_r: list[float] = []
    keep_q: list[float] = []
    for ri, qi in zip(r[order], q[order], strict=True):
        if not keep_q or qi > keep_q[-1]:
            keep_r.append(ri)
            keep_q.append(qi)
    return np.asarray(keep_r), np.asarray(keep_q)


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives at the knots, as scipy's PchipInterpolator computes them."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = x.shape[0]
    d = np.zeros(n)
    if n == 2:
        d[:] = delta[0]
        return d
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1 = 2 * h[k] + h[k - 1]
            w2 = h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    d[0] = _pchip_end_slope(h[0], h[1], delta[0], delta[1])
    d[-1] = _pchip_end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    """One-sided three-point end slope, made shape preserving (scipy's ``_edge_case``)."""
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if np.sign(d) != np.sign(m0):
        return 0.0
    if np.sign(m0) != np.sign(m1) and abs(d) > abs(3 * m0):
        return 3 * m0
    return d


def pchip_integral(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over [lo, hi] (inside [x[0], x[-1]]) of the pchip interpolant through (x, y)."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape[0] < 2 or np.any(np.diff(xs) <= 0):
        raise ValueError("pchip needs at least 2 points with strictly increasing x")
    if not (xs[0] <= lo <= hi <= xs[-1]):
        raise ValueError(f"integration interval [{lo}, {hi}] is outside the data range [{xs[0]}, {xs[-1]}]")
    d = _pchip_slopes(xs, ys)
    total = 0.0
    for k in range(xs.shape[0] - 1):
        a, b = max(lo, xs[k]), min(hi, xs[k + 1])
        if b <= a:
            continue
        h = xs[k + 1] - xs[k]
        slope = (ys[k + 1] - ys[k]) / h
        # segment as a polynomial in t = x - x[k]: c0 + c1 t + c2 t^2 + c3 t^3
        c = (ys[k], d[k], (3 * slope - 2 * d[k] - d[k + 1]) / h, (d[k] + d[k + 1] - 2 * slope) / h**2)

        def antiderivative(t: float, c=c) -> float:
            return t * (c[0] + t * (c[1] / 2 + t * (c[2] / 3 + t * c[3] / 4)))

        total += antiderivative(b - xs[k]) - antiderivative(a - xs[k])
    return total


def _cubic_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    if x.shape[0] < 4:
        raise ValueError(f"the cubic Bjøntegaard fit needs at least 4 points on each curve, got {x.shape[0]}")
    antiderivative = np.polyint(np.polyfit(x, y, 3))
    return float(np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo))


def _integral(method: Method, x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    if method == "pchip":
        return pchip_integral(x, y, lo, hi)
    if method == "cubic":
        return _cubic_integral(x, y, lo, hi)
    raise ValueError(f"unknown BD method {method!r}; use one of {METHODS}")


def bd_rate(
    ref_rates: Sequence[float],
    ref_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    method: Method = "pchip",
) -> float:
    """BD-rate of the test curve against the reference curve, in percent (negative = test saves bits).

    Rates are in any unit proportional to bits (bpp); quality is PSNR in dB (or another quality in dB).
    Returns NaN when the curves' quality ranges do not overlap.
    """
    r_ref, q_ref = monotone_points(ref_rates, ref_quality)
    r_test, q_test = monotone_points(test_rates, test_quality)
    lo, hi = max(q_ref[0], q_test[0]), min(q_ref[-1], q_test[-1])
    if not hi > lo:
        return math.nan
    int_ref = _integral(method, q_ref, np.log(r_ref), lo, hi)
    int_test = _integral(method, q_test, np.log(r_test), lo, hi)
    return float((math.exp((int_test - int_ref) / (hi - lo)) - 1.0) * 100.0)


def bd_quality(
    ref_rates: Sequence[float],
    ref_quality: Sequence[float],
    test_rates: Sequence[float],
    test_quality: Sequence[float],
    method: Method = "pchip",
) -> float:
    """BD-PSNR: mean quality gain (dB) of the test curve over the reference on their overlapping log-rate interval.

    Positive = test has higher quality at the same rate. NaN when the rate ranges do not overlap.
    """
    r_ref, q_ref = monotone_points(ref_rates, ref_quality)
    r_test, q_test = monotone_points(test_rates, test_quality)
    l_ref, l_test = np.log(r_ref), np.log(r_test)
    lo, hi = max(l_ref[0], l_test[0]), min(l_ref[-1], l_test[-1])
    if not hi > lo:
        return math.nan
    int_ref = _integral(method, l_ref, q_ref, lo, hi)
    int_test = _integral(method, l_test, q_test, lo, hi)
    return float((int_test - int_ref) / (hi - lo))


def ms_ssim_db(ms_ssim: float | np.ndarray) -> float | np.ndarray:
    """MS-SSIM on a dB scale, -10 log10(1 - MS-SSIM), the usual axis for BD-rates in MS-SSIM."""
    return -10.0 * np.log10(1.0 - np.asarray(ms_ssim, dtype=np.float64))
