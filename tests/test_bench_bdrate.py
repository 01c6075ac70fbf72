"""lcf.bench.bdrate on synthetic R-D curves with known answers."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lcf.bench.bdrate import bd_quality, bd_rate, monotone_points, ms_ssim_db, pchip_integral

PSNR = np.array([26.0, 28.0, 30.0, 32.5, 35.0, 37.0, 39.5, 42.0])
RATE = np.array([0.1, 0.17, 0.28, 0.45, 0.75, 1.1, 1.7, 2.6])


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_rate_times_0_8_is_minus_20_percent(method):
    assert bd_rate(RATE, PSNR, 0.8 * RATE, PSNR, method) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(0.8 * RATE, PSNR, RATE, PSNR, method) == pytest.approx(25.0, abs=1e-9)
    assert bd_rate(RATE, PSNR, RATE, PSNR, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_quality_shift_gives_bd_psnr(method):
    assert bd_quality(RATE, PSNR, RATE, PSNR + 1.0, method) == pytest.approx(1.0, abs=1e-9)


def test_different_sample_points_on_the_same_curve():
    # log rate exactly cubic in PSNR: the cubic fit is exact; pchip is close
    def log_rate(q):
        return -9.0 + 0.2 * q + 0.001 * (q - 30) ** 3 / 10

    qa = np.linspace(26, 40, 8)
    qb = np.linspace(27, 41, 11)
    ra, rb = np.exp(log_rate(qa)), 0.7 * np.exp(log_rate(qb))
    assert bd_rate(ra, qa, rb, qb, "cubic") == pytest.approx(-30.0, abs=1e-6)
    assert bd_rate(ra, qa, rb, qb, "pchip") == pytest.approx(-30.0, abs=0.5)


@given(st.floats(0.3, 3.0), st.sampled_from(["pchip", "cubic"]))
def test_any_rate_factor(factor, method):
    assert bd_rate(RATE, PSNR, factor * RATE, PSNR, method) == pytest.approx((factor - 1) * 100, abs=1e-7)


def test_no_overlap_is_nan():
    assert math.isnan(bd_rate(RATE, PSNR, RATE, PSNR + 50))
    assert math.isnan(bd_quality(RATE, PSNR, RATE * 100, PSNR))


def test_points_that_do_not_improve_quality_are_dropped():
    r, q = monotone_points([0.5, 0.1, 0.3, 0.4, 0.3], [30.0, 25.0, 29.0, 28.5, 28.0])
    assert r.tolist() == [0.1, 0.3, 0.5] and q.tolist() == [25.0, 29.0, 30.0]
    rates = np.append(RATE, 3.0)
    quality = np.append(PSNR, 41.0)  # more bits, less PSNR: ignored
    assert bd_rate(RATE, PSNR, 0.8 * rates, quality) == pytest.approx(-20.0, abs=1e-9)


def test_input_errors():
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(RATE[:3], PSNR[:3], RATE[:3], PSNR[:3], "cubic")
    with pytest.raises(ValueError, match="> 0"):
        bd_rate([0.0, 1.0], [1.0, 2.0], [0.5, 1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown BD method"):
        bd_rate(RATE, PSNR, RATE, PSNR, "linear")


def test_pchip_integral_matches_scipy():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 9):
        x = np.cumsum(rng.uniform(0.2, 2.0, n))
        y = rng.normal(size=n)
        lo, hi = x[0] + 0.3 * (x[-1] - x[0]), x[-1] - 0.1 * (x[-1] - x[0])
        ref = interpolate.PchipInterpolator(x, y).integrate(lo, hi)
        assert pchip_integral(x, y, lo, hi) == pytest.approx(ref, abs=1e-12)


def test_ms_ssim_db():
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
