"""lcf.entropy.params: raw integer slots -> integer parameters (spec/entropy.md, section 2)."""

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lcf.entropy.params import (
    ANCHOR_FAMILIES,
    ANCHOR_SLOTS,
    EXP_TABLE,
    MEAN_GRID_MAX,
    MEAN_GRID_MIN,
    NONANCHOR_FAMILIES,
    NONANCHOR_SLOTS,
    RAW_SCALE_THRESHOLDS,
    SCALE_LEVELS,
    SCALE_MAX,
    SCALE_MIN,
    SCALE_THRESHOLDS,
    WEIGHT_TOTAL,
    IntParams,
    int_params,
    scale_level,
)

EXP_DIGEST = "48479d7fcc763482dfe87d7c0071ca265db2bb93d62b389569ddad191943e9a3"
ACT = 1 << 28  # the integer networks' activation limit: raw slots lie in [-ACT, ACT]


def random_raw(seed: int, n: int, slots: int, spread: float = 3.0) -> np.ndarray:
    """Raw slots as the integer PEN outputs give them (units of 2**-12), including extremes."""
    rng = np.random.default_rng(seed)
    raw = np.rint(rng.normal(0, spread, (n, slots)) * 4096 * np.exp(rng.uniform(-2, 3, (n, 1))))
    raw[rng.random((n, slots)) < 0.02] = ACT
    raw[rng.random((n, slots)) < 0.02] = -ACT
    return np.clip(raw, -ACT, ACT).astype(np.int64)


def float_mixture(raw: np.ndarray):
    """What the float PEN would output for these raw slots (lcf.nn.pen): weights, means, scales."""
    r = raw.astype(np.float64) / 4096

    def softmax(v):
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    if raw.shape[1] == ANCHOR_SLOTS:
        k = 9
        w = (softmax(r[:, 27:30])[:, :, None] * softmax(r[:, 0:9].reshape(-1, 3, 3))).reshape(-1, 9)
    else:
        k, w = 3, softmax(r[:, 0:3])
    scales = np.clip(np.logaddexp(0, r[:, 2 * k : 3 * k]), SCALE_MIN, SCALE_MAX)
    return w, np.clip(r[:, k : 2 * k], -1024, 1024), scales


@given(st.integers(0, 2**32 - 1), st.integers(0, 300), st.sampled_from([ANCHOR_SLOTS, NONANCHOR_SLOTS]))
def test_int_params_grids_determinism_and_closeness_to_the_float_mixture(seed, n, slots):
    raw = random_raw(seed, n, slots)
    p, again = int_params(raw), int_params(raw.copy())
    k = 9 if slots == ANCHOR_SLOTS else 3
    assert p.families == (ANCHOR_FAMILIES if k == 9 else NONANCHOR_FAMILIES)
    for a, b in ((p.weights, again.weights), (p.means, again.means), (p.scale_idx, again.scale_idx)):
        assert a.dtype == np.int32 and a.shape == (n, k)
        assert np.array_equal(a, b)
    if n:
        assert np.all(p.weights.sum(axis=1) == WEIGHT_TOTAL) and p.weights.min() >= 0
        assert MEAN_GRID_MIN <= p.means.min() and p.means.max() <= MEAN_GRID_MAX
        w, mu, sc = float_mixture(raw)
        # the table softmax is within 0.4 % (1/256 in the exponent) plus the 2**-14 grid of the float softmax
        assert np.all(np.abs(p.weights - w * WEIGHT_TOTAL) <= 0.005 * w * WEIGHT_TOTAL + 2.0)
        assert np.all(np.abs(p.means / 16 - mu) <= 1 / 32)
        # the scale index is the float scale's level: the number of thresholds it reaches
        assert np.array_equal(p.scale_idx, np.searchsorted(SCALE_THRESHOLDS, sc, side="right"))


def test_weight_ties_go_to_the_lower_index():
    p = int_params(np.zeros((1, NONANCHOR_SLOTS), np.int64))  # three equal logits
    assert p.weights.tolist() == [[5462, 5461, 5461]]
    raw = np.zeros((1, ANCHOR_SLOTS), np.int64)
    raw[0, 27:30] = [0, -ACT, -ACT]  # one family holds all the weight: three equal members
    assert int_params(raw).weights.tolist() == [[5462, 5461, 5461, 0, 0, 0, 0, 0, 0]]


def test_exp_table_softmax():
    raw = np.zeros((1, NONANCHOR_SLOTS), np.int64)
    raw[0, 0:3] = [0, -16 * 281, -ACT]  # logit difference 281/256 (~log 3): one table step, read exactly
    share = EXP_TABLE[281] / (EXP_TABLE[0] + EXP_TABLE[281]) * WEIGHT_TOTAL
    assert int_params(raw).weights.tolist() == [[WEIGHT_TOTAL - round(share), round(share), 0]]
    raw[0, 1] = -16 * 281 - 15  # the index is floor(difference / 16): the same step
    assert int_params(raw).weights.tolist() == [[WEIGHT_TOTAL - round(share), round(share), 0]]
    assert EXP_TABLE[0] == 1 << 24 and np.all(np.diff(EXP_TABLE) <= 0)
    # pinned: spec/entropy.md gives the sum and the digest
    assert int(EXP_TABLE.sum()) == 4303361174
    assert hashlib.sha256(EXP_TABLE.astype("<i8").tobytes()).hexdigest() == EXP_DIGEST
    # every entry is far from a rounding boundary, so any accurate exp gives the same table
    exact = np.array([2.0**24 * math.exp(-i / 256) for i in range(len(EXP_TABLE))])
    assert np.min(np.abs(exact - np.floor(exact) - 0.5)) > 5e-5


def test_means_grid():
    raw = np.zeros((1, NONANCHOR_SLOTS), np.int64)
    raw[0, 3:6] = [127, 128, -129]  # 1/16 = 256 units: round half up
    assert int_params(raw).means.tolist() == [[0, 1, -1]]
    raw[0, 3:6] = [ACT, -ACT, 16 * 256 * 5]  # clamped to ±1024
    assert int_params(raw).means.tolist() == [[16384, -16384, 80]]


def test_raw_scale_thresholds_are_where_softplus_reaches_the_thresholds():
    assert RAW_SCALE_THRESHOLDS.tolist() == [math.ceil(4096 * math.log(math.expm1(t))) for t in SCALE_THRESHOLDS]
    t = RAW_SCALE_THRESHOLDS
    raw = np.zeros((3 * len(t), NONANCHOR_SLOTS), np.int64)
    raw[:, 6] = np.concatenate([t, t - 1, t + 1])
    got = int_params(raw).scale_idx[:, 0]
    assert got[: len(t)].tolist() == list(range(1, SCALE_LEVELS))
    assert got[len(t) : 2 * len(t)].tolist() == list(range(0, SCALE_LEVELS - 1))
    sc = np.logaddexp(0, raw[:, 6] / 4096)
    assert np.array_equal(got, np.searchsorted(SCALE_THRESHOLDS, sc, side="right"))


@pytest.mark.parametrize("bad", [np.zeros((2, 8), np.int64), np.zeros((2, 30)), np.zeros(9, np.int64)])
def test_int_params_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        int_params(bad)


def test_scale_thresholds_are_the_geometric_midpoints():
    ratio = math.log(SCALE_MAX / SCALE_MIN)
    for i, t in enumerate(SCALE_THRESHOLDS):
        expect = SCALE_MIN * math.exp(ratio * (2 * i + 1) / (2 * (SCALE_LEVELS - 1)))
        assert t == pytest.approx(expect, rel=1e-14)
        assert scale_level(i) < t < scale_level(i + 1)
    assert scale_level(0) == SCALE_MIN and scale_level(SCALE_LEVELS - 1) == SCALE_MAX


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
        ("means", np.array([[MEAN_GRID_MAX + 1, 0, 0]])),
        ("scale_idx", np.array([[SCALE_LEVELS, 0, 0]])),
        ("scale_idx", np.zeros((1, 2), int)),
        ("means", np.zeros((1, 3))),  # float
        ("families", ("G", "G")),
    ):
        with pytest.raises(ValueError):
            IntParams(**{**ok, key: bad})
    empty = IntParams(np.zeros((0, 9), int), np.zeros((0, 9), int), np.zeros((0, 9), int), ANCHOR_FAMILIES)
    assert empty.n == 0 and empty.k == 9
