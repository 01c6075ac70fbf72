"""Exact side coding of escaped values (spec/entropy.md, section 6). Integer only.

A value y escapes a window [c - H, c + H] when |y - c| > H. It is sent as u = |y - c| - H >= 1 and the sign:

    k = bit_length(u) - 1 (0..31)       head symbol 2k + sign (sign 1 = below the window), fixed PMF HEAD_PMF
    v = u - 2**k (k bits)               mantissa: bytes from the least significant end; the last may be shorter

The head PMF halves per k (an Elias-gamma-like code: about 2k + 2 bits in all). Mantissa chunks of b bits use the
uniform PMF 2**(24 - b). Stream order: all heads (escapes in element order), then the chunks of width 1, 2, ..., 8,
each group in (escape, chunk) order.
"""

from __future__ import annotations

import numpy as np

from .tables import CODER_BITS, CODER_TOTAL

MAX_CLASS = 31  # u < 2**32
CHUNK_BITS = 8


def _head_pmf() -> np.ndarray:
    f = np.ones(2 * (MAX_CLASS + 1), dtype=np.int64)
    for k in range(1, MAX_CLASS + 1):
        f[2 * k : 2 * k + 2] = 1 << max(22 - k, 0)
    f[0:2] = (CODER_TOTAL - f[2:].sum()) // 2
    return f


HEAD_PMF = _head_pmf()  # k = 0: 2**22 - 8 each sign; k = 1..22: 2**(22 - k); k >= 23: 1


def uniform_pmf(bits: int) -> np.ndarray:
    return np.full(1 << bits, 1 << (CODER_BITS - bits), dtype=np.int64)


def chunk_widths(k: np.ndarray) -> np.ndarray:
    """(n_escapes, 4) bit widths of the mantissa chunks (0 = absent)."""
    j = np.arange(4)[None, :] * CHUNK_BITS
    return np.clip(k[:, None] - j, 0, CHUNK_BITS)


def split(excess: np.ndarray, below: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Escaped values -> head symbols and the chunk symbols of width 1..8 (index b - 1), in stream order."""
    u = excess.astype(np.int64)
    k = np.zeros(u.shape, dtype=np.int64)
    for bit in (16, 8, 4, 2, 1):  # bit_length(u) - 1 by binary search
        step = (u >> (k + bit)) > 0
        k += np.where(step, bit, 0)
    head = 2 * k + below.astype(np.int64)
    v = u - (np.int64(1) << k)
    widths = chunk_widths(k)
    chunks = (v[:, None] >> (np.arange(4)[None, :] * CHUNK_BITS)) & 0xFF
    groups = [chunks[widths == b] for b in range(1, CHUNK_BITS + 1)]  # row-major mask: (escape, chunk) order
    return head, groups


def join(head: np.ndarray, groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``split``: (u, below). ``groups`` must hold as many chunks as ``chunk_widths`` asks for."""
    k = head >> 1
    below = (head & 1).astype(bool)
    widths = chunk_widths(k)
    chunks = np.zeros(widths.shape, dtype=np.int64)
    for b in range(1, CHUNK_BITS + 1):
        chunks[widths == b] = groups[b - 1]
    v = (chunks << (np.arange(4)[None, :] * CHUNK_BITS)).sum(axis=1)
    return (np.int64(1) << k) + v, below


def group_sizes(head: np.ndarray) -> list[int]:
    widths = chunk_widths(head >> 1)
    return [int((widths == b).sum()) for b in range(1, CHUNK_BITS + 1)]


__all__ = ["HEAD_PMF", "MAX_CLASS", "group_sizes", "join", "split", "uniform_pmf"]
