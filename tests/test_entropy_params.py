"""lcf.entropy.params: the float -> integer grids (spec/entropy.md, section 2)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lcf.entropy.params import (
    ANCHOR_FAMILIES,
    MEAN_MAX,
    MEAN_MIN,
    NONANCHOR_FAMILIES,
    SCALE_LEVELS,
    SCALE_MAX,
    SCALE_MIN,
    SCALE_THRESHOLDS,
    WEIGHT_TOTAL,
    IntParams,
    MixtureParams,
    quantize,
    quantize_scales,
    scale_level,
)


def random_mixture(seed: int, n: int, families) -> MixtureParams:
    rng = np.random.default_rng(seed)
    k = len(families)
    w = np.exp(rng.normal(0, 3, (n, k)))
    w[rng.random((n, k)) < 0.2] = 0.0
    w[np.arange(n), rng.integers(0, k, n)] += 1e-3  # never an all-zero row
    w /= w.sum(axis=1, keepdims=True)
    means = rng.normal(0, 1, (n, k)) * np.exp(rng.uniform(-3, 6, (n, 1)))
    scales = np.exp(rng.uniform(np.log(0.05), np.log(100), (n, k)))
    return MixtureParams(w, means, scales, families)


@given(st.integers(0, 2**32 - 1), st.integers(0, 300), st.sampled_from([ANCHOR_FAMILIES, NONANCHOR_FAMILIES]))
def test_quantize_grids_and_determinism(seed, n, families):
    mp = random_mixture(seed, n, families)
    p = quantize(mp)
    again = quantize(MixtureParams(mp.weights.copy(), mp.means.copy(), mp.scales.copy(), families))
    for a, b in ((p.weights, again.weights), (p.means, again.means), (p.scale_idx, again.scale_idx)):
        assert a.dtype == np.int32 and a.shape == (n, len(families))
        assert np.array_equal(a, b)
    if n:
        assert np.all(p.weights.sum(axis=1) == WEIGHT_TOTAL)
        assert p.weights.min() >= 0
        assert MEAN_MIN <= p.means.min() and p.means.max() <= MEAN_MAX
        assert 0 <= p.scale_idx.min() and p.scale_idx.max() < SCALE_LEVELS
        # largest remainder: every integer weight is floor or ceil of its exact share
        x = mp.weights / mp.weights.sum(axis=1, keepdims=True) * WEIGHT_TOTAL
        assert np.all(np.abs(p.weights - x) < 1.0 + 1e-9)


def test_weight_ties_go_to_the_lower_index():
    p = quantize(MixtureParams(np.full((1, 3), 1 / 3), np.zeros((1, 3)), np.ones((1, 3)), NONANCHOR_FAMILIES))
    assert p.weights.tolist() == [[5462, 5461, 5461]]
    w = np.array([[0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0, 0]])
    p = quantize(MixtureParams(w, np.zeros((1, 9)), np.ones((1, 9)), ANCHOR_FAMILIES))
    assert p.weights.tolist() == [[4096, 4096, 4096, 4096, 0, 0, 0, 0, 0]]


def test_unnormalised_weights_are_normalised():
    p = quantize(MixtureParams(np.array([[2.0, 6.0, 0.0]]), np.zeros((1, 3)), np.ones((1, 3)), NONANCHOR_FAMILIES))
    assert p.weights.tolist() == [[4096, 12288, 0]]


def test_means_grid():
    mu = np.array([[0.0, 1 / 32, 3 / 32, -0.49, 1e9, -1e9, 2.5, -2.53125, 0.03]])
    p = quantize(MixtureParams(np.full((1, 9), 1 / 9), mu, np.ones((1, 9)), ANCHOR_FAMILIES))
    # round half to even on the 1/16 grid, clamped
    assert p.means.tolist() == [[0, 0, 2, -8, MEAN_MAX, MEAN_MIN, 40, -40, 0]]


def test_scale_thresholds_are_the_geometric_midpoints():
    ratio = math.log(SCALE_MAX / SCALE_MIN)
    for i, t in enumerate(SCALE_THRESHOLDS):
        expect = SCALE_MIN * math.exp(ratio * (2 * i + 1) / (2 * (SCALE_LEVELS - 1)))
        assert t == pytest.approx(expect, rel=1e-14)
        assert scale_level(i) < t < scale_level(i + 1)
    assert scale_level(0) == SCALE_MIN and scale_level(SCALE_LEVELS - 1) == SCALE_MAX


@given(st.lists(st.floats(1e-6, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_scale_index_is_the_number_of_thresholds_below(values):
    sc = np.array(values)
    assert np.array_equal(quantize_scales(sc), np.searchsorted(SCALE_THRESHOLDS, sc, side="right"))


def test_scale_index_at_the_thresholds():
    t = SCALE_THRESHOLDS
    sc = np.concatenate([t, np.nextafter(t, 0), np.nextafter(t, np.inf), [SCALE_MIN, SCALE_MAX, 0.0, 1e300]])
    got = quantize_scales(sc)
    assert np.array_equal(got, np.searchsorted(t, sc, side="right"))
    assert got[: len(t)].tolist() == list(range(1, SCALE_LEVELS))


@pytest.mark.parametrize(
    "change",
    [
        lambda w, m, s: (w * np.nan, m, s),
        lambda w, m, s: (w, m + np.inf, s),
        lambda w, m, s: (-w, m, s),
        lambda w, m, s: (w * 0, m, s),
        lambda w, m, s: (w[:, :2], m, s),
    ],
)
def test_quantize_rejects_bad_input(change):
    w, m, s = np.full((2, 3), 1 / 3), np.zeros((2, 3)), np.ones((2, 3))
    with pytest.raises(ValueError):
        quantize(MixtureParams(*change(w, m, s), NONANCHOR_FAMILIES))


def test_quantize_rejects_unknown_family():
    with pytest.raises(ValueError):
        quantize(MixtureParams(np.ones((1, 1)), np.zeros((1, 1)), np.ones((1, 1)), ("X",)))


def test_intparams_validates():
    ok = {
        "weights": np.array([[WEIGHT_TOTAL, 0, 0]]),
        "means": np.zeros((1, 3), int),
        "scale_idx": np.zeros((1, 3), int),
        "families": NONANCHOR_FAMILIES,
    }
    IntParams(**ok)
    for key, bad in (
        ("weights", np.array([[WEIGHT_TOTAL, 1, 0]])),
        ("weights", np.array([[WEIGHT_TOTAL + 1, -1, 0]])),
        ("means", np.array([[MEAN_MAX + 1, 0, 0]])),
        ("scale_idx", np.array([[SCALE_LEVELS, 0, 0]])),
        ("scale_idx", np.zeros((1, 2), int)),
        ("means", np.zeros((1, 3))),  # float
        ("families", ("G", "G")),
    ):
        with pytest.raises(ValueError):
            IntParams(**{**ok, key: bad})
    empty = IntParams(np.zeros((0, 9), int), np.zeros((0, 9), int), np.zeros((0, 9), int), ANCHOR_FAMILIES)
    assert empty.n == 0 and empty.k == 9
