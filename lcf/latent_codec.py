"""The latent codec: quantized latents (ẑ, ŷ and the channel bitmap) <-> the three streams HYPR, ANCH, NANC
(paper Sec. III-B/C, Fig. 3 and Fig. 7; spec/lcf.md, "HYPR, ANCH, NANC" and "Decoding the streams").

It knows no image and no container: symbols in, bytes out, and back (as CompressAI's ``CheckerboardLatentCodec`` is
a unit of its own). The two-pass checkerboard procedure::

    ẑ ──────────────────────────────────── z tables ──────────────────────────── HYPR
    ẑ ─ h_s ─ T1 ─ PEN1 ─ R1 ─ int_params ─ anchors of the coded channels ──────── ANCH
          └──── PEN2 ◄─ ctx(ŷ anchors) ─ R2 ─ int_params ─ non-anchors ─────────── NANC

Anchors are the positions (i, j) with i + j even, non-anchors the others; the decoder gets the anchors first, and
from them the context of the non-anchors. Everything here is integer arithmetic: h_s, ctx, PEN1 and PEN2 are
:class:`lcf.nn.IntegerEntropyNet` (float64 tensors that hold integers exactly), and :func:`_stream_params` is the
one place where their raw outputs become the integer parameters of :func:`lcf.entropy.int_params` (the exactness
boundary), so encoder and decoder derive the same tables on every machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lcf.entropy import (
    FamilyTables,
    IntParams,
    ZTables,
    decode_mixture_stream,
    decode_z_stream,
    encode_mixture_stream,
    encode_z_stream,
    estimate_bits,
    estimate_z_bits,
    int_params,
)
from lcf.nn import IntegerEntropyNet
from lcf.nn.integer import H_S

PARAM_BLOCK = 1 << 18  # elements per block of integer parameters (_stream_params); any value gives the same result


@dataclass(frozen=True)
class Symbols:
    """Everything the entropy coder sees for one image (also what the conformance vectors pin)."""

    z_hat: np.ndarray  # (Mz, Hp/64, Wp/64) int32
    y_hat: np.ndarray  # (M, Hp/16, Wp/16) int32; skipped channels are all zero
    coded: np.ndarray  # (M,) bool: the channel bitmap


@dataclass(frozen=True)
class Streams:
    """The three entropy-coded streams of one image (the payloads of HYPR, ANCH and NANC)."""

    hyper: bytes
    anchor: bytes
    nonanchor: bytes


def checkerboard(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the anchor positions (i + j even) and of the non-anchor positions of an h x w latent."""
    i, j = np.indices((h, w))
    anchor = ((i + j) % 2 == 0).reshape(-1)
    return np.flatnonzero(anchor), np.flatnonzero(~anchor)


def coded_channels(y_hat: np.ndarray) -> np.ndarray:
    """The channel bitmap a writer sets: the channels with a non-zero element (spec/lcf.md, "CMAP")."""
    return (y_hat != 0).reshape(y_hat.shape[0], -1).any(axis=1)


class LatentCodec:
    """Symbols <-> :class:`Streams` with one entropy model: its integer networks and its tables."""

    def __init__(self, net: IntegerEntropyNet, family_tables: FamilyTables, z_tables: ZTables) -> None:
        self.net = net
        self.family_tables = family_tables
        self.z_tables = z_tables

    def encode(self, s: Symbols, estimate: bool = False) -> tuple[Streams, dict[str, float] | None]:
        """Symbols -> streams, and the bits the integer tables predict for each (None unless ``estimate``: it costs
        about a tenth of an encode)."""
        m, lh, lw = s.y_hat.shape
        anchors, nonanchors = checkerboard(lh, lw)
        flat = s.y_hat.reshape(m, -1)[s.coded]
        p1 = self._params(s.z_hat, s.coded, anchors, lh, lw)
        p2 = self._params(s.z_hat, s.coded, nonanchors, lh, lw, y_anchor=s.y_hat)
        sym1 = flat[:, anchors].reshape(-1)
        sym2 = flat[:, nonanchors].reshape(-1)
        streams = Streams(
            encode_z_stream(s.z_hat, self.z_tables),
            encode_mixture_stream(sym1, p1, self.family_tables),
            encode_mixture_stream(sym2, p2, self.family_tables),
        )
        if not estimate:
            return streams, None
        bits = {
            "hyper": estimate_z_bits(s.z_hat, self.z_tables),
            "anchor": estimate_bits(sym1, p1, self.family_tables),
            "nonanchor": estimate_bits(sym2, p2, self.family_tables),
        }
        return streams, bits

    def decode(self, streams: Streams, coded: np.ndarray, latent_height: int, latent_width: int) -> Symbols:
        """Streams -> the exact symbols the encoder coded, for an image of ``latent_height`` x ``latent_width``
        latent positions (Hp/16 x Wp/16) whose coded channels are ``coded`` (M,). A stream that does not decode
        exactly is a CorruptDataError."""
        m = coded.size
        lh, lw = latent_height, latent_width
        z_hat = decode_z_stream(streams.hyper, (self.z_tables.channels, lh // 4, lw // 4), self.z_tables)
        anchors, nonanchors = checkerboard(lh, lw)
        y = np.zeros((m, lh * lw), dtype=np.int32)
        p1 = self._params(z_hat, coded, anchors, lh, lw)
        y[coded[:, None] & _at(anchors, lh * lw)] = decode_mixture_stream(
            streams.anchor, p1, self.family_tables, "anchor stream"
        )
        del p1
        p2 = self._params(z_hat, coded, nonanchors, lh, lw, y_anchor=y.reshape(m, lh, lw))
        y[coded[:, None] & _at(nonanchors, lh * lw)] = decode_mixture_stream(
            streams.nonanchor, p2, self.family_tables, "non-anchor stream"
        )
        return Symbols(z_hat=z_hat, y_hat=y.reshape(m, lh, lw), coded=coded)

    # -- the exact path ------------------------------------------------------------------------------------------

    def _params(
        self,
        z_hat: np.ndarray,
        coded: np.ndarray,
        positions: np.ndarray,
        lh: int,
        lw: int,
        y_anchor: np.ndarray | None = None,
    ) -> IntParams:
        """Integer parameters of one stream in stream order (coded channel, then position): PEN1(T1) at the anchor
        ``positions``, or with ``y_anchor`` (M, lh, lw; only its anchors are read) PEN2([T1, ctx]) at the
        non-anchor ones. A band of latent rows at a time (:func:`band_rows`): T1 and ctx of a band are computed
        from the rows of ẑ and ŷ that reach it (:data:`HYPER_REACH`, ctx's 5x5 window), so that whatever the image
        size only one band's float64 features exist at once, and the integers are those of the whole image."""
        parts = StreamParams(int(coded.sum()), positions.size)
        if not parts.size:  # no element: no network to run (the streams must then be empty)
            return parts.result()
        hz = z_hat.shape[1]
        zrows = band_rows(lw, self.net)
        for z0 in range(0, hz, zrows):
            z1 = min(hz, z0 + zrows)
            r0, r1 = 4 * z0, min(lh, 4 * z1)
            lo, hi = np.searchsorted(positions, (r0 * lw, r1 * lw))
            if lo == hi:
                continue
            zt = max(0, z0 - HYPER_REACH)
            t1 = self.net.hyper(z_hat[None, :, zt : min(hz, z1 + HYPER_REACH)])
            t1 = t1[:, :, 4 * (z0 - zt) : 4 * (z0 - zt) + (r1 - r0)]
            local = positions[lo:hi] - r0 * lw
            if y_anchor is None:
                _stream_params(self.net.anchor, (t1,), coded, local, parts, lo)
                continue
            c0 = max(0, r0 - CTX_REACH)  # even (r0 is a multiple of 4): the checkerboard's phase is kept
            ctx = self.net.context(y_anchor[None, :, c0 : min(lh, r1 + CTX_REACH)], local + (r0 - c0) * lw)
            ctx = ctx[:, :, r0 - c0 : r1 - c0]
            _stream_params(self.net.pen2, (t1, ctx), coded, local, parts, lo)
        return parts.result()


def _stream_params(
    pen: Callable[..., torch.Tensor],
    features: tuple[torch.Tensor, ...],
    coded: np.ndarray,
    positions: np.ndarray,
    out: StreamParams,
    start: int = 0,
) -> None:
    """Integer parameters of one stream's elements at ``positions`` (flat indices into the feature maps), written
    into ``out`` from its position ``start`` on, from the feature maps (1, C, h, w) that ``pen`` (PEN1 or PEN2,
    pointwise) maps to raw slots (1, P·M, ·, ·). The PEN runs at those positions only, PARAM_BLOCK // M of them at a
    time (an element's parameters depend on its own position's features only), so that a large image's float64
    slots and int64 temporaries stay at about PARAM_BLOCK elements."""
    m = coded.size
    channels = np.flatnonzero(coded)
    step = max(1, PARAM_BLOCK // m)
    flat = [f.flatten(2) for f in features]  # (1, C, h·w)
    for i in range(0, positions.size, step):
        block = positions[i : i + step]
        index = torch.from_numpy(block)
        raw = pen(*(f[:, :, index, None] for f in flat))  # (1, P·M, n, 1), float64 holding integers
        slots = raw.shape[1] // m
        a = raw[0, :, :, 0].numpy().reshape(m, slots, block.size)[channels].astype(np.int64)  # (mc, P, n)
        out.put(start + i, int_params(a.transpose(0, 2, 1).reshape(-1, slots)))


HYPER_REACH = 4  # rows of ẑ around a band that reach its T1: traced back through h_s (3x3 at H/16; shuffle; 3x3,
# 3x3 at H/32; shuffle; 3x3, 3x3 at H/64), latent rows [4a - 1, 4b + 1) need ẑ rows [a - 4, b + 4)
CTX_REACH = 2  # rows of ŷ around a band that ctx's 5x5 window reads
BAND_BYTES = 1 << 24  # T1 (float64, 2M channels) of one band of latent rows stays near this size


def band_rows(latent_width: int, net: IntegerEntropyNet) -> int:
    """Rows of ẑ per band of :meth:`LatentCodec._params` (4 latent rows each): T1 of a band about BAND_BYTES. Any
    value gives the same integers; it bounds the memory of a large image's entropy parameters."""
    t1_channels = net.layers[H_S[-1].key][0].shape[0]
    return max(1, BAND_BYTES // (8 * t1_channels * 4 * max(1, latent_width)))


def _at(positions: np.ndarray, size: int) -> np.ndarray:
    """A (1, size) mask of ``positions``: with the (M, 1) channel bitmap it selects a stream's elements of ŷ (M, size)
    in stream order (coded channel, then position)."""
    mask = np.zeros((1, size), dtype=bool)
    mask[0, positions] = True
    return mask


class StreamParams:
    """The integer parameters of one stream in stream order: ``channels`` coded channels x ``positions`` positions
    (channel-major), filled a block of positions at a time (:meth:`put`), then one :class:`IntParams`."""

    def __init__(self, channels: int, positions: int) -> None:
        self.shape = (channels, positions)
        self.size = channels * positions
        self.arrays: list[np.ndarray] = []
        self.families: tuple[str, ...] = ()

    def put(self, start: int, p: IntParams) -> None:
        """``p``: the parameters of every coded channel at positions ``start``, ``start + 1``, ... (channel-major)."""
        mc, n = self.shape
        if not self.arrays:
            self.families = p.families
            self.arrays = [np.empty((mc, n, len(p.families)), np.int32) for _ in range(3)]
        block = p.n // mc
        for whole, part in zip(self.arrays, (p.weights, p.means, p.scale_idx), strict=True):
            whole[:, start : start + block] = part.reshape(mc, block, -1)

    def result(self) -> IntParams:
        if not self.arrays:  # no element
            empty = np.zeros((0, 0), np.int32)
            return IntParams(empty, empty, empty, ())
        weights, means, scale_idx = (a.reshape(-1, len(self.families)) for a in self.arrays)
        return IntParams(weights, means, scale_idx, self.families)


__all__ = ["PARAM_BLOCK", "LatentCodec", "Streams", "Symbols", "checkerboard", "coded_channels"]
