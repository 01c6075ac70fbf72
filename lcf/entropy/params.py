"""Float entropy parameters -> integer parameters: the exactness boundary (spec/entropy.md, section 2).

``quantize`` is the only function of lcf's entropy layer that looks at floats. It maps each element's K-component
mixture (weights, means, scales) onto fixed integer grids; every later step (tables, mixtures, windows, coding) is
integer arithmetic that the decoder repeats bit for bit.

    MixtureParams (float64)  --quantize-->  IntParams (int32)  --tables/mixture-->  integer PMFs  --coder-->  bytes

Grids (all fixed by the spec):

* weights: non-negative integers summing to exactly ``2**WEIGHT_BITS`` (largest-remainder rounding);
* means: integers ``m`` on the grid ``m / MEAN_SCALE`` (round half to even), clamped to ``[MEAN_MIN, MEAN_MAX]``;
* scales: an index ``s`` into ``SCALE_LEVELS`` log-spaced levels over ``[SCALE_MIN, SCALE_MAX]``, chosen by comparing
  the scale with the ``SCALE_THRESHOLDS`` (geometric midpoints between levels). Comparisons only: no ``log``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_BITS = 14
WEIGHT_TOTAL = 1 << WEIGHT_BITS
MEAN_FRAC_BITS = 4
MEAN_SCALE = 1 << MEAN_FRAC_BITS  # F: means live on the grid m / 16
MEAN_MIN = -(1 << 15) * MEAN_SCALE  # -32768
MEAN_MAX = (1 << 15) * MEAN_SCALE - 1  # 32767.9375
SCALE_MIN = 0.11
SCALE_MAX = 64.0
SCALE_LEVELS = 64

FAMILIES = ("G", "L", "S")  # Gaussian (sigma), Laplacian (b), logistic (s); the index is the family code
ANCHOR_FAMILIES = ("G", "G", "G", "L", "L", "L", "S", "S", "S")  # GLLMM, K = 9
NONANCHOR_FAMILIES = ("G", "G", "G")  # GMM, K = 3

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
class MixtureParams:
    """Float entropy parameters of n elements, each a K-component mixture (DESIGN.md, 'Float entropy parameters').

    ``weights`` (n, K) sum to 1 per element; ``means`` (n, K); ``scales`` (n, K) in [0.11, 64] (sigma for G, b for L,
    s for S); ``families`` has K letters.
    """

    weights: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    families: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class IntParams:
    """Integer entropy parameters on the spec's grids; int32 arrays of shape (n, K).

    ``weights`` >= 0 summing to ``WEIGHT_TOTAL`` per element; ``means`` in [MEAN_MIN, MEAN_MAX] (units of 1/16);
    ``scale_idx`` in [0, SCALE_LEVELS); ``families`` has K letters from ``FAMILIES``.
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
            _check_range("means", self.means, MEAN_MIN, MEAN_MAX)
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

    def take(self, index: np.ndarray) -> IntParams:
        """The parameters of the elements ``index`` (in that order)."""
        return IntParams(self.weights[index], self.means[index], self.scale_idx[index], self.families)


def _check_range(name: str, a: np.ndarray, lo: int, hi: int) -> None:
    amin, amax = int(a.min()), int(a.max())
    if amin < lo or amax > hi:
        raise ValueError(f"IntParams.{name} must lie in [{lo}, {hi}], got [{amin}, {amax}]")


def quantize(p: MixtureParams) -> IntParams:
    """Map float mixture parameters onto the integer grids (spec/entropy.md, section 2). Deterministic.

    Raises ValueError for mismatched shapes, non-finite values, or weights that are negative or sum to zero.
    """
    codes = family_codes(tuple(p.families))
    k = len(codes)
    w = np.asarray(p.weights, dtype=np.float64)
    mu = np.asarray(p.means, dtype=np.float64)
    sc = np.asarray(p.scales, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != k or mu.shape != w.shape or sc.shape != w.shape:
        raise ValueError(f"MixtureParams arrays must all have shape (n, {k}); got {w.shape}, {mu.shape}, {sc.shape}")
    if not (np.isfinite(w).all() and np.isfinite(mu).all() and np.isfinite(sc).all()):
        raise ValueError("MixtureParams contain NaN or infinity")
    if np.any(w < 0):
        raise ValueError("MixtureParams.weights must be non-negative")
    return IntParams(quantize_weights(w), quantize_means(mu), quantize_scales(sc), tuple(p.families))


def quantize_weights(w: np.ndarray) -> np.ndarray:
    """Largest-remainder rounding of each row to non-negative integers summing to WEIGHT_TOTAL.

    x = w / sum(w) * 2**14; start from floor(x); the remaining units go one each to the components with the largest
    fractional parts x - floor(x), ties to the lower component index.
    """
    n, k = w.shape
    total = w.sum(axis=1, keepdims=True)
    if n and np.any(total <= 0):
        raise ValueError("MixtureParams.weights of an element sum to zero")
    x = w / total * WEIGHT_TOTAL
    base = np.floor(x)
    frac = np.ascontiguousarray((x - base).T)  # (K, n)
    base = base.astype(np.int32)
    missing = WEIGHT_TOTAL - base.sum(axis=1, dtype=np.int64)  # in [0, K] (the float sum may round down to K)
    # rank of each component in (fraction descending, index ascending) order, by pairwise comparison
    rank = np.zeros((k, n), dtype=np.int32)
    for i in range(k):
        for j in range(i + 1, k):
            i_first = frac[i] >= frac[j]
            rank[j] += i_first
            rank[i] += ~i_first
    base += (rank < missing[None, :]).T
    return base


def quantize_means(mu: np.ndarray) -> np.ndarray:
    """m = clamp(round_half_even(mu * 16), MEAN_MIN, MEAN_MAX): exact (a power-of-two product, then rint)."""
    return np.clip(np.rint(mu * MEAN_SCALE), MEAN_MIN, MEAN_MAX).astype(np.int32)


def quantize_scales(sc: np.ndarray) -> np.ndarray:
    """s = number of SCALE_THRESHOLDS <= scale (scales below 0.11 / above 64 land on the end levels).

    A logarithm gives a first guess (off by at most one level even if the platform's log is a few ulp off); the
    comparisons with the pinned thresholds that follow decide, so the result does not depend on log's rounding.
    """
    guess = np.rint((np.log(np.clip(sc, SCALE_MIN, SCALE_MAX)) - _LOG_SCALE_MIN) / _LOG_STEP).astype(np.int64)
    guess += sc >= _BOUNDS[guess + 1]
    guess -= sc < _BOUNDS[guess]
    if np.any(sc < _BOUNDS[guess]) or np.any(sc >= _BOUNDS[guess + 1]):  # cannot happen; exactness first
        return np.searchsorted(SCALE_THRESHOLDS, sc, side="right").astype(np.int32)
    return guess.astype(np.int32)


_LOG_SCALE_MIN = float(np.log(SCALE_MIN))
_LOG_STEP = float(np.log(SCALE_MAX / SCALE_MIN)) / (SCALE_LEVELS - 1)
_BOUNDS = np.concatenate([[-np.inf], SCALE_THRESHOLDS, [np.inf]])  # level s covers [_BOUNDS[s], _BOUNDS[s + 1])


__all__ = [
    "ANCHOR_FAMILIES",
    "FAMILIES",
    "MEAN_FRAC_BITS",
    "MEAN_MAX",
    "MEAN_MIN",
    "MEAN_SCALE",
    "NONANCHOR_FAMILIES",
    "SCALE_LEVELS",
    "SCALE_MAX",
    "SCALE_MIN",
    "SCALE_THRESHOLDS",
    "WEIGHT_BITS",
    "WEIGHT_TOTAL",
    "IntParams",
    "MixtureParams",
    "quantize",
    "scale_level",
]
