"""Streams of symbols <-> bytes: anchors / non-anchors (mixtures) and the hyper-latent z (spec/entropy.md).

Mixture stream layout, in decode order (the encoder pushes the same segments in reverse; ANS is a stack):

    1. window symbols: buckets in ascending H; within a bucket elements in ascending index (computed and coded in
       chunks of CHUNK_ENTRIES // (2H + 2) rows, which does not change the bytes). Symbol j <= 2H is the value
       c - H + j; j = 2H + 1 is the escape.
    2. escape heads (escaped elements in ascending index), then mantissa chunks of width 1..8 (escape.py).
    3. the sentinel (coder.py).

The z stream is the same with one window per channel: c = 0, H = Lz, PMF = the channel's row of ZTables.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import CorruptDataError
from . import escape
from .coder import StreamDecoder, StreamEncoder
from .mixture import MixturePlan
from .params import IntParams
from .tables import CODER_BITS, FamilyTables, ZTables

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
Z_CHUNK_ROWS = 1 << 14


def _check_symbols(symbols: np.ndarray, n: int) -> np.ndarray:
    s = np.asarray(symbols)
    if s.shape != (n,) or not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"symbols must be an integer array of shape ({n},), got {s.dtype} {s.shape}")
    s = s.astype(np.int64)
    if n and (s.min() < INT32_MIN or s.max() > INT32_MAX):
        raise ValueError("symbols must lie in the int32 range")
    return s


def _empty(data: bytes, what: str, shape: tuple[int, ...]) -> np.ndarray:
    """A stream of zero elements is the empty byte string (spec section 8)."""
    if len(data):
        raise CorruptDataError(f"{what}: {len(data)} bytes for a stream of zero elements (must be empty)")
    return np.zeros(shape, dtype=np.int32)


# ---------------------------------------------------------------------------------------------------------------
# escapes (shared by the mixture and z streams)


def _push_escapes(enc: StreamEncoder, values: np.ndarray, centre: np.ndarray, half: np.ndarray) -> None:
    below = values < centre
    excess = np.abs(values - centre) - half
    head, groups = escape.split(excess, below)
    for b in range(escape.CHUNK_BITS, 0, -1):
        enc.push_fixed(groups[b - 1], escape.uniform_pmf(b))
    enc.push_fixed(head, escape.HEAD_PMF)


def _pull_escapes(dec: StreamDecoder, centre: np.ndarray, half: np.ndarray) -> np.ndarray:
    head = dec.pull_fixed(centre.size, escape.HEAD_PMF)
    sizes = escape.group_sizes(head)
    groups = [dec.pull_fixed(sizes[b - 1], escape.uniform_pmf(b)) for b in range(1, escape.CHUNK_BITS + 1)]
    excess, below = escape.join(head, groups)
    values = np.where(below, centre - half - excess, centre + half + excess)
    if values.size and (values.min() < INT32_MIN or values.max() > INT32_MAX):
        raise CorruptDataError(f"{dec.what}: an escaped value lies outside the int32 range")
    return values


def _escape_bits(excess: np.ndarray) -> float:
    head, groups = escape.split(excess, np.zeros(excess.shape, dtype=bool))
    bits = float(np.sum(CODER_BITS - np.log2(escape.HEAD_PMF[head].astype(np.float64))))
    return bits + sum(b * g.size for b, g in zip(range(1, escape.CHUNK_BITS + 1), groups, strict=True))


# ---------------------------------------------------------------------------------------------------------------
# mixture streams (anchors, non-anchors)


def _window_symbols(y: np.ndarray, plan: MixturePlan, escaped: np.ndarray, start: int, stop: int, h: int):
    idx = plan.order[start:stop]
    return np.where(escaped[idx], 2 * h + 1, y[idx] - plan.centre[idx] + h)


def encode_mixture_stream(symbols: np.ndarray, p: IntParams, tables: FamilyTables) -> bytes:
    """Code ``symbols`` (n,) int (int32 range) with the mixtures ``p`` (spec/entropy.md, section 8)."""
    y = _check_symbols(symbols, p.n)
    if p.n == 0:
        return b""
    plan = MixturePlan.build(p, tables)
    escaped = np.abs(y - plan.centre) > plan.half
    enc = StreamEncoder()
    esc = np.flatnonzero(escaped)
    _push_escapes(enc, y[esc], plan.centre[esc], plan.half[esc])
    for start, stop, h in reversed(plan.segments):
        enc.push(_window_symbols(y, plan, escaped, start, stop, h), plan.pmf(start, stop, h))
    return enc.finish()


def decode_mixture_stream(data: bytes, p: IntParams, tables: FamilyTables, what: str = "mixture stream") -> np.ndarray:
    """Inverse of ``encode_mixture_stream``: (n,) int32. Damaged data raises CorruptDataError."""
    if p.n == 0:
        return _empty(data, what, (0,))
    plan = MixturePlan.build(p, tables)
    dec = StreamDecoder(data, what)
    y = np.zeros(p.n, dtype=np.int64)
    for start, stop, h in plan.segments:
        y[plan.order[start:stop]] = dec.pull(plan.pmf(start, stop, h)) - h
    escaped = y == plan.half + 1
    y += plan.centre
    esc = np.flatnonzero(escaped)
    y[esc] = _pull_escapes(dec, plan.centre[esc], plan.half[esc])
    dec.finish()
    return y.astype(np.int32)


def estimate_bits(symbols: np.ndarray, p: IntParams, tables: FamilyTables) -> float:
    """Information content (bits) of ``symbols`` under the integer PMFs, escape side information included."""
    y = _check_symbols(symbols, p.n)
    plan = MixturePlan.build(p, tables)
    escaped = np.abs(y - plan.centre) > plan.half
    bits = 0.0
    for start, stop, h in plan.segments:
        sym = _window_symbols(y, plan, escaped, start, stop, h)
        f = np.take_along_axis(plan.pmf(start, stop, h), sym[:, None], axis=1)
        bits += float(np.sum(CODER_BITS - np.log2(f.astype(np.float64))))
    return bits + _escape_bits(np.abs(y - plan.centre)[escaped] - plan.half[escaped])


# ---------------------------------------------------------------------------------------------------------------
# z stream


def _z_chunks(shape: tuple[int, int, int]) -> Iterator[tuple[int, int, int]]:
    c, h, w = shape
    per = h * w
    for ch in range(c):
        for a in range(0, per, Z_CHUNK_ROWS):
            yield ch, a, min(a + Z_CHUNK_ROWS, per)


def _check_z_shape(shape: tuple[int, ...], tables: ZTables) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[0] != tables.channels or min(shape) < 0:
        raise ValueError(f"z must have shape ({tables.channels}, h, w), got {tuple(shape)}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def encode_z_stream(symbols: np.ndarray, tables: ZTables) -> bytes:
    """Code the hyper-latent ``symbols`` (C, h, w) int with the static per-channel tables (channel, row, column)."""
    z = np.asarray(symbols)
    shape = _check_z_shape(z.shape, tables)
    flat = _check_symbols(z.reshape(-1), z.size).reshape(shape[0], -1)
    lz = tables.lz
    if flat.size == 0:
        return b""
    escaped = np.abs(flat) > lz
    enc = StreamEncoder()
    esc = flat[escaped]
    _push_escapes(enc, esc, np.zeros_like(esc), np.full_like(esc, lz))
    for ch, a, b in reversed(list(_z_chunks(shape))):
        v = flat[ch, a:b]
        enc.push_fixed(np.where(escaped[ch, a:b], 2 * lz + 1, v + lz), tables.pmf[ch].astype(np.int64))
    return enc.finish()


def decode_z_stream(
    data: bytes, shape: tuple[int, int, int], tables: ZTables, what: str = "hyper stream"
) -> np.ndarray:
    """Inverse of ``encode_z_stream``: (C, h, w) int32."""
    shape = _check_z_shape(tuple(shape), tables)
    lz = tables.lz
    if shape[0] * shape[1] * shape[2] == 0:
        return _empty(data, what, shape)
    dec = StreamDecoder(data, what)
    flat = np.zeros((shape[0], shape[1] * shape[2]), dtype=np.int64)
    for ch, a, b in _z_chunks(shape):
        flat[ch, a:b] = dec.pull_fixed(b - a, tables.pmf[ch].astype(np.int64)) - lz
    escaped = flat == lz + 1
    n_esc = int(escaped.sum())
    flat[escaped] = _pull_escapes(dec, np.zeros(n_esc, np.int64), np.full(n_esc, lz, np.int64))
    dec.finish()
    return flat.reshape(shape).astype(np.int32)


def estimate_z_bits(symbols: np.ndarray, tables: ZTables) -> float:
    z = np.asarray(symbols)
    shape = _check_z_shape(z.shape, tables)
    flat = _check_symbols(z.reshape(-1), z.size).reshape(shape[0], -1)
    lz = tables.lz
    escaped = np.abs(flat) > lz
    sym = np.where(escaped, 2 * lz + 1, flat + lz)
    f = np.take_along_axis(tables.pmf.astype(np.float64), sym, axis=1)
    return float(np.sum(CODER_BITS - np.log2(f))) + _escape_bits(np.abs(flat[escaped]) - lz)


__all__ = [
    "decode_mixture_stream",
    "decode_z_stream",
    "encode_mixture_stream",
    "encode_z_stream",
    "estimate_bits",
    "estimate_z_bits",
]
