"""Integer mixtures: per-element coding windows and coder PMFs (spec/entropy.md, sections 4 and 5).

Everything here is exact integer arithmetic on IntParams and FamilyTables; encoder and decoder call the same code.

Window of element i: centre c = floor(sum_k w_k m_k / 2**18) (the weighted mean, floored), half-width H = the
smallest bucket >= max over components with reach >= 0 of (|q_k - c| + reach[f_k, s_k, bitlen(w_k)]), capped at
the largest bucket (q_k = floor(m_k / 16)). Symbols c - H .. c + H are coded as 0 .. 2H; anything else as the
escape symbol 2H + 1.

    mixture CDF at window edge y:  M(y) = sum_k w_k * cdf_k(y)            (<= 2**30, int32)
    in-window mass of symbol j:    P_j = M(c - H + j + 1) - M(c - H + j)
    coder PMF:                     f_j = 1 + floor(P_j * (2**24 - A) / 2**30),  f_esc = 2**24 - sum_j f_j
with A = 2H + 2 symbols. Every f >= 1 and the row sums to exactly 2**24.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .params import (
    MEAN_FRAC_BITS,
    MEAN_SCALE,
    SCALE_LEVELS,
    WEIGHT_BITS,
    WEIGHT_TOTAL,
    IntParams,
    family_codes,
)
from .tables import CODER_TOTAL, MAX_WINDOW, TABLE_BITS, FamilyTables

# Half-widths H of the coding windows; each bucket is coded as one array (one row width).
BUCKETS = np.array(
    [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256],
    dtype=np.int64,
)
MIX_BITS = WEIGHT_BITS + TABLE_BITS  # M(y) <= 2**30
# Rows of a chunk times symbols per row: bounds the memory of every intermediate array (and keeps them in cache).
CHUNK_ENTRIES = 1 << 17
BUILD_BLOCK = 1 << 16  # elements per block of MixturePlan.build; any value gives the same plan
_BIT_LENGTH = np.array([int(w).bit_length() for w in range(WEIGHT_TOTAL + 1)], dtype=np.int32)  # of a weight


@dataclass(frozen=True, eq=False)
class MixturePlan:
    """Everything a mixture stream needs, in stream order (spec sections 4, 5 and 8).

    ``order``: element indices in stream order (bucket ascending, then index); ``centre``, ``half``: c and H per
    element (element order); ``segments``: (start, stop, H) slices of the stream order in decode order; per stream
    position and component: ``weights`` (int32) and ``first``, the index in ``tables.cdf`` of the component's cdf
    at the element's first window edge (see ``pmf``).
    """

    order: np.ndarray
    centre: np.ndarray
    half: np.ndarray
    segments: list[tuple[int, int, int]]
    weights: np.ndarray
    first: np.ndarray
    cdf: np.ndarray

    @classmethod
    def build(cls, p: IntParams, tables: FamilyTables) -> MixturePlan:
        """The plan of ``p``'s elements, computed a block of BUILD_BLOCK elements at a time (each element's window
        depends on its own parameters only) so that the temporaries stay small: a first pass finds every window,
        a second gathers the stream order's weights and cdf indices."""
        centre = np.empty(p.n, dtype=np.int64)
        bucket = np.empty(p.n, dtype=np.int64)
        for a in range(0, p.n, BUILD_BLOCK):
            part = slice(a, a + BUILD_BLOCK)
            centre[part], bucket[part], _ = _windows(
                p.weights[part], p.means[part], p.scale_idx[part], p.families, tables
            )
        order = np.argsort(bucket, kind="stable")
        weights = np.empty(p.weights.shape, dtype=np.int32)
        first = np.empty(p.weights.shape, dtype=np.int32)
        for a in range(0, p.n, BUILD_BLOCK):
            idx = order[a : a + BUILD_BLOCK]
            weights[a : a + idx.size] = np.take(p.weights, idx, axis=0)
            _, _, first[a : a + idx.size] = _windows(
                weights[a : a + idx.size],
                np.take(p.means, idx, axis=0),
                np.take(p.scale_idx, idx, axis=0),
                p.families,
                tables,
            )
        return cls(
            order=order,
            centre=centre,
            half=BUCKETS[bucket],
            segments=list(_segments(bucket[order])),
            weights=weights,
            first=first,
            cdf=tables.cdf,
        )

    def pmf(self, start: int, stop: int, h: int) -> np.ndarray:
        """Coder PMFs (stop - start, 2h + 2) int32 of stream positions start..stop-1 (half-width h); last = escape.

        Component k's cdf at the window edges y = c - h + j (j = 0..2h+1) is cdf_k[clip(c - h - q_k + D_k + j, 0,
        2D_k + 1)]. Clamping the first index to [-(2h + 1), 2D_k + 1] and reading the padded row (PAD >= 2h + 1
        zeros before, totals after) gives the same values as one contiguous slice of ``cdf``.
        """
        width = 2 * h + 1
        rows = sliding_window_view(self.cdf, width + 1)[self.first[start:stop]]  # (n, K, width + 1) int32
        mix = np.einsum("nk,nkj->nj", self.weights[start:stop], rows)  # M at the window edges, <= 2**30
        alphabet = width + 1
        scaled = np.multiply(np.diff(mix, axis=1), CODER_TOTAL - alphabet, dtype=np.int64)
        scaled >>= MIX_BITS
        out = np.empty((stop - start, alphabet), dtype=np.int32)
        out[:, width] = CODER_TOTAL - width - scaled.sum(axis=1)
        out[:, :width] = scaled
        out[:, :width] += 1
        return out


def _windows(
    weights: np.ndarray, means: np.ndarray, scale_idx: np.ndarray, families: tuple[str, ...], tables: FamilyTables
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per element (rows of the (n, K) parameter arrays): the window centre c, the index of its bucket H in
    BUCKETS, and per component ``first`` (see MixturePlan.pmf)."""
    fs = family_codes(families)[None, :] * SCALE_LEVELS + scale_idx  # (family, scale) as one index
    q = means >> MEAN_FRAC_BITS
    centre = np.einsum("nk,nk->n", weights.astype(np.int64), means.astype(np.int64))
    centre = (centre >> (WEIGHT_BITS + MEAN_FRAC_BITS)).astype(np.int32)
    reach = np.take(tables.reach.reshape(-1), fs * (WEIGHT_BITS + 2) + np.take(_BIT_LENGTH, weights))
    extent = np.abs(q - centre[:, None])
    extent += reach
    np.putmask(extent, reach < 0, 0)
    bucket = np.minimum(np.searchsorted(BUCKETS, extent.max(axis=1, initial=0)), len(BUCKETS) - 1)
    h = BUCKETS[bucket].astype(np.int32)[:, None]
    d = np.take(tables.half_width.reshape(-1), fs)
    first = (centre[:, None] - h) - q  # + D, clipped to [-(2h + 1), 2D + 1]: see MixturePlan.pmf
    first += d
    np.maximum(first, -(2 * h + 1), out=first)
    np.minimum(first, 2 * d + 1, out=first)
    first += np.take(tables.row_start.reshape(-1), fs * MEAN_SCALE + (means & (MEAN_SCALE - 1)))
    return centre, bucket, first


def _segments(bucket_sorted: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(start, stop, H) runs of the stream order, split so that rows * (2H + 2) <= CHUNK_ENTRIES, in decode order."""
    if bucket_sorted.size == 0:
        return
    edges = np.flatnonzero(np.diff(bucket_sorted)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [bucket_sorted.size]])
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        h = int(BUCKETS[bucket_sorted[start]])
        rows = max(1, CHUNK_ENTRIES // (2 * h + 2))
        for a in range(start, stop, rows):
            yield a, min(a + rows, stop), h


if 2 * int(BUCKETS[-1]) + 1 > MAX_WINDOW:
    raise ImportError("lcf.entropy: the widest bucket exceeds the padding of the cdf rows")

__all__ = ["BUCKETS", "BUILD_BLOCK", "CHUNK_ENTRIES", "MixturePlan"]
