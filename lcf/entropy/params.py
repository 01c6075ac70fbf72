"""Integer network outputs -> integer mixture parameters: the entropy layer's input (spec/entropy.md, section 2).

The entropy-parameter networks (lcf.nn.integer) are integer networks: for every latent element they output P integer
*raw slots* in units of 2**-RAW_FRAC_BITS (P = 30 for the anchors' GLLMM, 9 for the non-anchors' GMM). ``int_params``
maps them onto the integer parameters the tables are indexed by, with integer operations only:

    raw slots (int64)  --int_params-->  IntParams (int32)  --tables/mixture-->  integer PMFs  --coder-->  bytes

* weights: softmax by a pinned exponential table (EXP_TABLE), then largest-remainder rounding to non-negative
  integers summing to exactly ``2**WEIGHT_BITS``;
* means: from 1/4096 to the grid m / 16 (round half up), clamped to ±MEAN_LIMIT (1024; lcf.constants);
* scales: an index into ``SCALE_LEVELS`` log-spaced levels over ``[SCALE_MIN, SCALE_MAX]``: the number of
  RAW_SCALE_THRESHOLDS the raw value reaches (softplus(raw) compared with the level boundaries, done once, in advance).

No float value reaches this module's results, so every implementation derives the same tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lcf.constants import ANCHOR_FAMILIES, FAMILIES, MEAN_LIMIT, NONANCHOR_FAMILIES, SCALE_MAX, SCALE_MIN

WEIGHT_BITS = 14
WEIGHT_TOTAL = 1 << WEIGHT_BITS
MEAN_FRAC_BITS = 4
MEAN_SCALE = 1 << MEAN_FRAC_BITS  # F: means live on the grid m / 16
MEAN_GRID_MIN = -(1 << 15) * MEAN_SCALE  # what IntParams.means may hold: -32768 in latent units
MEAN_GRID_MAX = (1 << 15) * MEAN_SCALE - 1  # 32767.9375; int_params clamps to the narrower ±MEAN_LIMIT
SCALE_LEVELS = 64

# SCALE_THRESHOLDS[i] = SCALE_MIN * (SCALE_MAX / SCALE_MIN) ** ((2 * i + 1) / (2 * (SCALE_LEVELS - 1))), i = 0..62:
# the geometric midpoint between levels i and i + 1. Pinned as float64 literals so that no platform's log/exp can
# move a boundary; scale index = number of thresholds <= scale.
# fmt: off
SCALE_THRESHOLDS = np.array(
    [
        0.1157005547894786, 0.12800323745109557, 0.14161409016382295, 0.15667221339295687,
        0.1733314984480184, 0.19176220022424226, 0.21215267717696684, 0.23471131631115055,
        0.25966866285906076, 0.28727977641105856, 0.3178268375787111, 0.35162203182986035,
        0.38901073996792324, 0.43037506786154694, 0.4761377514978226, 0.5267664772679971,
        0.582778661638226, 0.6447467390527427, 0.7133040121108628, 0.7891511238055787,
        0.8730632179688584, 0.9658978611021151, 1.0686038065515184, 1.1822306905964581,
        1.3079397595434223, 1.44701573745427, 1.6008799557949451, 1.7711048791872712,
        1.9594301757144053, 2.1677804960155735, 2.3982851428692413, 2.6532998322843198,
        2.9354307684938328, 3.2475612788931674, 3.5928812811271658, 3.974919883474395,
        4.397581451698646, 4.865185510964412, 5.382510890606717, 5.954844562906909,
        6.588035674997938, 7.288555326095423, 8.063562700967108, 8.920978235512758,
        9.869564562193762, 10.919016062559875, 12.080057942084112, 13.364555839832487,
        14.785637093159991, 16.35782489673587, 18.09718672697956, 20.021498548778226,
        22.150426482648786, 24.505727788950622, 27.11147322317081, 29.994293034713603,
        33.183649123256615, 36.712136134063904, 40.61581456939445, 44.93457932034603,
        49.71256738546244, 54.99860894291579, 60.84672638613998,
    ],
    dtype=np.float64,
)
# fmt: on


def scale_level(index: int) -> float:
    """The scale that level ``index`` stands for (used when building tables, at export time only)."""
    if index == SCALE_LEVELS - 1:
        return SCALE_MAX
    return SCALE_MIN * (SCALE_MAX / SCALE_MIN) ** (index / (SCALE_LEVELS - 1))


def family_codes(families: tuple[str, ...]) -> np.ndarray:
    """Family letters -> codes (G = 0, L = 1, S = 2), validating each letter."""
    try:
        return np.array([FAMILIES.index(f) for f in families], dtype=np.int32)
    except ValueError:
        raise ValueError(f"families must be letters from {FAMILIES}, got {families!r}") from None


@dataclass(frozen=True, eq=False)
class IntParams:
    """Integer entropy parameters on the spec's grids; int32 arrays of shape (n, K).

    ``weights`` >= 0 summing to ``WEIGHT_TOTAL`` per element; ``means`` in [MEAN_GRID_MIN, MEAN_GRID_MAX] (units of
    1/16); ``scale_idx`` in [0, SCALE_LEVELS); ``families`` has K letters from ``FAMILIES``.
    """

    weights: np.ndarray
    means: np.ndarray
    scale_idx: np.ndarray
    families: tuple[str, ...]

    def __post_init__(self) -> None:
        families = tuple(self.families)
        object.__setattr__(self, "families", families)
        codes = family_codes(families)
        k = len(codes)
        for name in ("weights", "means", "scale_idx"):
            a = np.ascontiguousarray(getattr(self, name))
            if a.ndim != 2 or a.shape[1] != k or not np.issubdtype(a.dtype, np.integer):
                raise ValueError(
                    f"IntParams.{name} must be an integer array of shape (n, {k}), got {a.dtype} {a.shape}"
                )
            object.__setattr__(self, name, a.astype(np.int32, copy=False))
        if not self.weights.shape == self.means.shape == self.scale_idx.shape:
            raise ValueError("IntParams arrays must have the same shape")
        if self.n:
            _check_range("weights", self.weights, 0, WEIGHT_TOTAL)
            _check_range("means", self.means, MEAN_GRID_MIN, MEAN_GRID_MAX)
            _check_range("scale_idx", self.scale_idx, 0, SCALE_LEVELS - 1)
            sums = self.weights.sum(axis=1, dtype=np.int64)
            if np.any(sums != WEIGHT_TOTAL):
                bad = int(np.flatnonzero(sums != WEIGHT_TOTAL)[0])
                raise ValueError(f"IntParams.weights of element {bad} sum to {int(sums[bad])}, not {WEIGHT_TOTAL}")

    @property
    def n(self) -> int:
        return int(self.weights.shape[0])

    @property
    def k(self) -> int:
        return len(self.families)


def _check_range(name: str, a: np.ndarray, lo: int, hi: int) -> None:
    amin, amax = int(a.min()), int(a.max())
    if amin < lo or amax > hi:
        raise ValueError(f"IntParams.{name} must lie in [{lo}, {hi}], got [{amin}, {amax}]")


RAW_FRAC_BITS = 12  # raw slots are integers r standing for r / 2**12 (lcf.nn.integer.FRAC_BITS)
ANCHOR_SLOTS = 30  # GLLMM: 0..8 component logits (k = 3f + j), 9..17 means, 18..26 scales, 27..29 family logits
NONANCHOR_SLOTS = 9  # GMM: 0..2 component logits, 3..5 means, 6..8 scales
RAW_MEAN_LIMIT = MEAN_LIMIT * MEAN_SCALE  # means are clamped to ±MEAN_LIMIT

# EXP_TABLE[i] = floor(2**24 · exp(-i / 256) + 1/2) for i < EXP_LENGTH; beyond it the weight is 0. Every entry lies
# more than 5e-5 from a rounding boundary, so any exp accurate to 1e-12 gives this table (tests check its digest).
EXP_BITS = 24
EXP_INDEX_SHIFT = RAW_FRAC_BITS - 8  # a logit difference d (units of 2**-12) reads EXP_TABLE[d >> 4]
EXP_LENGTH = 17 * 256
EXP_TABLE = np.array([math.floor(2.0**EXP_BITS * math.exp(-i / 256) + 0.5) for i in range(EXP_LENGTH)], np.int64)

# RAW_SCALE_THRESHOLDS[i] = ceil(2**12 · log(expm1(SCALE_THRESHOLDS[i]))): the smallest raw value whose softplus
# reaches SCALE_THRESHOLDS[i]; scale index = number of these thresholds <= raw. Pinned, like SCALE_THRESHOLDS.
# fmt: off
RAW_SCALE_THRESHOLDS = np.array(
    [
        -8594, -8155, -7712, -7267, -6818, -6365, -5908, -5446, -4979, -4506, -4026, -3539, -3044, -2540, -2025,
        -1499, -960, -406, 164, 752, 1362, 1995, 2654, 3343, 4067, 4829, 5635, 6491, 7404, 8382, 9434, 10569, 11801,
        13140, 14603, 16204, 17962, 19897, 22028, 24381, 26979, 29852, 33028, 36540, 40426, 44725, 49480, 54742,
        60562, 67002, 74127, 82009, 90729, 100376, 111049, 122857, 135921, 150373, 166363, 184053, 203623, 225275,
        249229,
    ],
    dtype=np.int64,
)
# fmt: on


def int_params(raw: np.ndarray) -> IntParams:
    """Raw slots (n, 30) of a GLLMM or (n, 9) of a GMM, integers -> integer parameters (spec/entropy.md, section 2).

    Raises ValueError for another slot count or a non-integer dtype.
    """
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.shape[1] not in (ANCHOR_SLOTS, NONANCHOR_SLOTS) or not np.issubdtype(raw.dtype, np.integer):
        raise ValueError(
            f"raw slots must be an integer array of shape (n, {ANCHOR_SLOTS}) or (n, {NONANCHOR_SLOTS}), "
            f"got {raw.dtype} {raw.shape}"
        )
    raw = raw.astype(np.int64, copy=False)
    families: tuple[str, ...]
    if raw.shape[1] == ANCHOR_SLOTS:
        families, k = ANCHOR_FAMILIES, 9
        within = softmax_counts(raw[:, 0:9].reshape(-1, 3, 3))  # (n, family, member), each family's sum ~2**24
        weights = (within << EXP_BITS) // within.sum(axis=2, keepdims=True)
        weights = (softmax_counts(raw[:, 27:30])[:, :, None] * weights).reshape(-1, 9)
    else:
        families, k = NONANCHOR_FAMILIES, 3
        weights = softmax_counts(raw[:, 0:3])
    means = np.clip(_round_shift(raw[:, k : 2 * k], RAW_FRAC_BITS - MEAN_FRAC_BITS), -RAW_MEAN_LIMIT, RAW_MEAN_LIMIT)
    scales = np.searchsorted(RAW_SCALE_THRESHOLDS, raw[:, 2 * k : 3 * k], side="right")
    return IntParams(largest_remainder(weights), means, scales, families)


def softmax_counts(logits: np.ndarray) -> np.ndarray:
    """Unnormalized softmax of raw logits along the last axis: EXP_TABLE[(max - logit) >> 4], 0 past the table; the
    largest logit gets 2**24."""
    index = (logits.max(axis=-1, keepdims=True) - logits) >> EXP_INDEX_SHIFT
    return np.where(index < EXP_LENGTH, EXP_TABLE[np.minimum(index, EXP_LENGTH - 1)], 0)


def largest_remainder(v: np.ndarray) -> np.ndarray:
    """Non-negative integer counts (n, K), each at most 2**48, each row with a positive sum -> integers summing to
    exactly WEIGHT_TOTAL per row: floor(v · 2**14 / V) plus one unit each for the components with the largest remainders
    (ties to the lower index)."""
    n, k = v.shape
    total = v.sum(axis=1, keepdims=True)
    scaled = v << WEIGHT_BITS
    base = scaled // total
    remainder = np.ascontiguousarray((scaled - base * total).T)  # (K, n)
    missing = WEIGHT_TOTAL - base.sum(axis=1)  # in [0, K)
    rank = np.zeros((k, n), dtype=np.int64)  # rank in (remainder descending, index ascending) order
    for i in range(k):
        for j in range(i + 1, k):
            i_first = remainder[i] >= remainder[j]
            rank[j] += i_first
            rank[i] += ~i_first
    return base + (rank < missing[None, :]).T


def _round_shift(x: np.ndarray, shift: int) -> np.ndarray:
    """round(x / 2**shift), halves up: (x + 2**(shift - 1)) >> shift."""
    return (x + (1 << (shift - 1))) >> shift


__all__ = [
    "ANCHOR_FAMILIES",
    "ANCHOR_SLOTS",
    "EXP_TABLE",
    "FAMILIES",
    "MEAN_FRAC_BITS",
    "MEAN_GRID_MAX",
    "MEAN_GRID_MIN",
    "MEAN_SCALE",
    "NONANCHOR_FAMILIES",
    "NONANCHOR_SLOTS",
    "RAW_FRAC_BITS",
    "RAW_SCALE_THRESHOLDS",
    "SCALE_LEVELS",
    "SCALE_MAX",
    "SCALE_MIN",
    "SCALE_THRESHOLDS",
    "WEIGHT_BITS",
    "WEIGHT_TOTAL",
    "IntParams",
    "int_params",
    "scale_level",
]
