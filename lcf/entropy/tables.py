"""Integer probability tables: built once at weight-export time, loaded from the weights (spec/entropy.md, section 3).

Family tables hold, for each family (G, L, S) x scale index x mean fraction r (mean = q + r/16), the integer PMF of
one component over integer offsets d = y - q in [-D, D] (D = ``half_width[family, scale]``), each row summing to at
most ``TABLE_TOTAL`` (the rest is the row's tail mass). Z tables hold, per hyper channel, the final coder PMF over
[-Lz, Lz] plus an escape symbol, summing to ``CODER_TOTAL``.

Float math is allowed only in the ``build_*`` functions (export time). Loading validates shapes, dtypes and sums and
derives everything else with integer arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .params import FAMILIES, MEAN_SCALE, SCALE_LEVELS, WEIGHT_BITS, scale_level

TABLE_BITS = 16
TABLE_TOTAL = 1 << TABLE_BITS
CODER_BITS = 24  # precision of constriction's default ANS coder
CODER_TOTAL = 1 << CODER_BITS
# Table support half-width D = ceil(TAIL_SPAN[family] * scale) + 1: beyond it a component's mass is below 2**-17.
TAIL_SPAN = {"G": 6.0, "L": 12.5, "S": 12.5}
# Window reach (spec section 4): a component of weight w may leave about REACH_TAIL * 2**14 / w counts of its row
# outside the window (into the escape symbol).
REACH_TAIL = 128
MAX_HALF_WIDTH = 1023
MAX_WINDOW = 513  # widest coding window (2 * 256 + 1 symbols), see mixture.BUCKETS
PAD = MAX_WINDOW  # cdf rows are padded so that any window of up to PAD symbols reads a contiguous slice
FAMILY_FORMAT = 1  # bump when the meaning of the stored arrays changes

# Keys of the stored arrays (the weights file's "tables." namespace); from_arrays ignores any other keys.
KEY_PMF = "tables.family.pmf"
KEY_HALF_WIDTH = "tables.family.half_width"
KEY_FORMAT = "tables.family.format"
KEY_Z_PMF = "tables.z.pmf"


def largest_remainder(p: np.ndarray, total: int) -> np.ndarray:
    """Rows of non-negative floats -> int64 rows summing to exactly ``total`` (ties to the lower index)."""
    p = np.asarray(p, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    x = p * total
    base = np.floor(x)
    frac = x - base
    base = base.astype(np.int64)
    missing = total - base.sum(axis=-1)
    order = np.argsort(-frac, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(p.shape[-1]), p.shape).copy(), axis=-1)
    base += rank < missing[..., None]
    return base


# ---------------------------------------------------------------------------------------------------------------
# family tables


def _family_cdf(family: str, x: np.ndarray, scale: float) -> np.ndarray:
    t = x / scale
    if family == "G":
        erfc = np.frompyfunc(math.erfc, 1, 1)
        return 0.5 * np.asarray(erfc(-t / math.sqrt(2.0)), dtype=np.float64)
    if family == "L":
        return np.where(t < 0, 0.5 * np.exp(np.minimum(t, 0)), 1.0 - 0.5 * np.exp(-np.maximum(t, 0)))
    return 0.5 * (1.0 + np.tanh(0.5 * t))  # logistic


def half_width(family: str, scale_index: int) -> int:
    return min(math.ceil(TAIL_SPAN[family] * scale_level(scale_index)) + 1, MAX_HALF_WIDTH)


def build_family_tables() -> dict[str, np.ndarray]:
    """Compute the family tables (float math; export time only). Returns the arrays stored in the weights.

    Row (family f, scale s, fraction r), offsets d in [-D, D]: mass of the component with mean r/16 and scale
    ``scale_level(s)`` on [d - 1/2, d + 1/2), plus the tail mass outside [-D - 1/2, D + 1/2), rounded together by
    largest remainder to TABLE_TOTAL; the tail entry is dropped (it is TABLE_TOTAL minus the row sum).
    """
    rows = []
    hw = np.zeros((len(FAMILIES), SCALE_LEVELS), dtype=np.int32)
    for fi, fam in enumerate(FAMILIES):
        for s in range(SCALE_LEVELS):
            d_max = half_width(fam, s)
            hw[fi, s] = d_max
            scale = scale_level(s)
            d = np.arange(-d_max, d_max + 2, dtype=np.float64) - 0.5  # bin edges
            mu = np.arange(MEAN_SCALE, dtype=np.float64) / MEAN_SCALE
            cdf = _family_cdf(fam, d[None, :] - mu[:, None], scale)
            mass = np.diff(cdf, axis=1)
            tail = np.clip(1.0 - mass.sum(axis=1, keepdims=True), 0.0, None)
            counts = largest_remainder(np.concatenate([np.clip(mass, 0, None), tail], axis=1), TABLE_TOTAL)
            rows.append(counts[:, :-1].reshape(-1))
    return {
        KEY_PMF: np.concatenate(rows).astype(np.int32),
        KEY_HALF_WIDTH: hw,
        KEY_FORMAT: np.array([FAMILY_FORMAT, MEAN_SCALE, SCALE_LEVELS, TABLE_BITS], dtype=np.int32),
    }


def _require(arrays: dict, key: str, dtype: type, ndim: int) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"entropy tables: array {key!r} is missing")
    a = np.asarray(arrays[key])
    if a.dtype != np.dtype(dtype) or a.ndim != ndim:
        raise ValueError(f"entropy tables: {key!r} must be {np.dtype(dtype)} with {ndim} dims, got {a.dtype} {a.shape}")
    return a


@dataclass(frozen=True, eq=False)
class FamilyTables:
    """Loaded family tables plus what the coder derives from them (all integer; spec/entropy.md, section 3).

    ``pmf``: int32 flat rows as stored; ``half_width``: int32 (3, S), D per family and scale. Derived:
    ``cdf``: int32, one row per (family, scale, fraction) = PAD zeros, then cdf[i] = sum(pmf_row[:i]) for
    i = 0..2D+1, then PAD copies of the row total, so that a window of up to PAD + 1 edges can be read as one
    contiguous slice; ``row_start``: int32 (3, S, 16), index of cdf[0] of each row; ``reach``: int32 (3, S, 16),
    window reach by family, scale and bit length of the weight (-1: the component never widens a window).
    """

    pmf: np.ndarray
    half_width: np.ndarray
    cdf: np.ndarray
    row_start: np.ndarray
    reach: np.ndarray

    @classmethod
    def build(cls) -> FamilyTables:
        return cls.from_arrays(build_family_tables())

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> FamilyTables:
        """Validate and load the stored arrays; raises ValueError on any mismatch."""
        fmt = _require(arrays, KEY_FORMAT, np.int32, 1)
        expected = [FAMILY_FORMAT, MEAN_SCALE, SCALE_LEVELS, TABLE_BITS]
        if fmt.tolist() != expected:
            raise ValueError(f"entropy tables: {KEY_FORMAT!r} is {fmt.tolist()}, this lcf needs {expected}")
        hw = _require(arrays, KEY_HALF_WIDTH, np.int32, 2)
        if hw.shape != (len(FAMILIES), SCALE_LEVELS) or hw.min() < 1 or hw.max() > MAX_HALF_WIDTH:
            raise ValueError(f"entropy tables: {KEY_HALF_WIDTH!r} must be (3, {SCALE_LEVELS}) in [1, {MAX_HALF_WIDTH}]")
        pmf = _require(arrays, KEY_PMF, np.int32, 1)
        row_len = (2 * hw.astype(np.int64) + 1)[:, :, None].repeat(MEAN_SCALE, axis=2)  # (3, S, F)
        if pmf.size != int(row_len.sum()):
            raise ValueError(f"entropy tables: {KEY_PMF!r} has {pmf.size} entries, half widths need {row_len.sum()}")
        if pmf.min() < 0:
            raise ValueError(f"entropy tables: {KEY_PMF!r} has negative counts")
        lengths = row_len.reshape(-1)
        pmf_start = np.concatenate([[0], np.cumsum(lengths)])
        row_sums = np.add.reduceat(pmf.astype(np.int64), pmf_start[:-1])
        if np.any(row_sums > TABLE_TOTAL):
            raise ValueError(f"entropy tables: a {KEY_PMF!r} row sums to more than {TABLE_TOTAL}")
        cdf, row_start = _padded_cdf(pmf, lengths, pmf_start, row_sums)
        if cdf.size >= 1 << 31:
            raise ValueError("entropy tables: too large")
        tables = cls(pmf, hw, cdf, row_start.reshape(row_len.shape).astype(np.int32), np.zeros(0, np.int32))
        object.__setattr__(tables, "reach", tables._compute_reach())
        for a in (tables.pmf, tables.half_width, tables.cdf, tables.row_start, tables.reach):
            a.setflags(write=False)
        return tables

    def _compute_reach(self) -> np.ndarray:
        """reach[f, s, b] = smallest R >= 0 such that, for every fraction, the row's mass at |d| > R is at most
        REACH_TAIL << (15 - b); -1 if the whole row mass is within that bound (b = bit length of the weight; b = 0,
        weight 0, always -1)."""
        reach = np.full((len(FAMILIES), SCALE_LEVELS, WEIGHT_BITS + 2), -1, dtype=np.int32)
        limit = np.array([REACH_TAIL << (WEIGHT_BITS + 1 - b) for b in range(1, WEIGHT_BITS + 2)])  # b = 1, 2, ...
        for f in range(len(FAMILIES)):
            for s in range(SCALE_LEVELS):
                d = int(self.half_width[f, s])
                rows = self.cdf[self.row_start[f, s][:, None] + np.arange(2 * d + 2)[None, :]].astype(np.int64)
                radius = np.arange(0, d + 1)
                total = rows[:, -1:]
                outside = (total - rows[:, d + radius + 1] + rows[:, d - radius]).max(axis=0)  # (D + 1,)
                # per b: the first radius whose outside mass is within the bound (outside[d] = 0, so one exists);
                # -1 where the whole component is lighter than the bound: it never widens a window
                first = np.argmax(outside[None, :] <= limit[:, None], axis=1)
                reach[f, s, 1:] = np.where(int(total.max()) <= limit, -1, first)
        return reach

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            KEY_PMF: np.array(self.pmf),
            KEY_HALF_WIDTH: np.array(self.half_width),
            KEY_FORMAT: np.array([FAMILY_FORMAT, MEAN_SCALE, SCALE_LEVELS, TABLE_BITS], dtype=np.int32),
        }


def _padded_cdf(pmf: np.ndarray, lengths: np.ndarray, pmf_start: np.ndarray, row_sums: np.ndarray):
    """Rows [PAD zeros | cdf (len + 1) | PAD totals] back to back; returns (int32 array, int64 index of each cdf[0])."""
    padded_len = lengths + 1 + 2 * PAD
    padded_start = np.concatenate([[0], np.cumsum(padded_len)])
    row_start = padded_start[:-1] + PAD
    cdf = np.repeat(row_sums.astype(np.int32), padded_len)  # every entry its row's total; then each head and cdf
    for start, first, n in zip(row_start.tolist(), pmf_start[:-1].tolist(), lengths.tolist(), strict=True):
        cdf[start - PAD : start + 1] = 0
        np.cumsum(pmf[first : first + n], out=cdf[start + 1 : start + 1 + n])  # a row sums to <= TABLE_TOTAL
    return cdf, row_start


# ---------------------------------------------------------------------------------------------------------------
# z tables


def build_z_tables(pmf: np.ndarray, tail_mass: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel coder PMFs of the hyper-latent z (float math; export time only).

    ``pmf`` (C, 2 Lz + 1) float64: the probabilities of the values -Lz..Lz per channel; ``tail_mass`` (C,): the
    probability of |z| > Lz. Row c of the result = 1 + largest-remainder rounding of [pmf[c], tail_mass[c]] (normalised)
    to CODER_TOTAL - (2 Lz + 2): every symbol, escape included, gets at least one count; each row sums to CODER_TOTAL.
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    tail = np.asarray(tail_mass, dtype=np.float64)
    if pmf.ndim != 2 or pmf.shape[1] % 2 != 1 or tail.shape != (pmf.shape[0],):
        raise ValueError(f"build_z_tables: need pmf (C, 2Lz+1) and tail_mass (C,), got {pmf.shape}, {tail.shape}")
    if not (np.isfinite(pmf).all() and np.isfinite(tail).all()) or pmf.min() < 0 or tail.min() < 0:
        raise ValueError("build_z_tables: probabilities must be finite and non-negative")
    p = np.concatenate([pmf, tail[:, None]], axis=1)
    if np.any(p.sum(axis=1) <= 0):
        raise ValueError("build_z_tables: a channel has zero total probability")
    alphabet = p.shape[1]
    counts = 1 + largest_remainder(p, CODER_TOTAL - alphabet)
    return {KEY_Z_PMF: counts.astype(np.int32)}


@dataclass(frozen=True, eq=False)
class ZTables:
    """Per-channel coder PMFs of z: ``pmf`` int32 (C, 2 Lz + 2), symbol i = value i - Lz, last = escape."""

    pmf: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.pmf.shape[0])

    @property
    def lz(self) -> int:
        return (int(self.pmf.shape[1]) - 2) // 2

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ZTables:
        """Validate and load; raises ValueError on any mismatch."""
        pmf = _require(arrays, KEY_Z_PMF, np.int32, 2)
        if pmf.shape[0] < 1 or pmf.shape[1] < 2 or pmf.shape[1] % 2:
            raise ValueError(f"entropy tables: {KEY_Z_PMF!r} must be (C, 2Lz+2), got {pmf.shape}")
        if pmf.min() < 1 or np.any(pmf.sum(axis=1, dtype=np.int64) != CODER_TOTAL):
            raise ValueError(f"entropy tables: {KEY_Z_PMF!r} rows must be >= 1 and sum to {CODER_TOTAL}")
        pmf = np.array(pmf)
        pmf.setflags(write=False)
        return cls(pmf)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {KEY_Z_PMF: np.array(self.pmf)}


__all__ = [
    "CODER_BITS",
    "CODER_TOTAL",
    "TABLE_TOTAL",
    "FamilyTables",
    "ZTables",
    "build_family_tables",
    "build_z_tables",
]
