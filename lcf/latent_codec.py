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
        t1 = self._hyper(s.z_hat)
        p1 = self._anchor_params(t1, s.coded, anchors)
        y_anchor = s.y_hat.reshape(m, -1).copy()
        y_anchor[:, nonanchors] = 0
        p2 = self._nonanchor_params(t1, y_anchor.reshape(m, lh, lw), s.coded, nonanchors)
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
        m, mc = coded.size, int(coded.sum())
        lh, lw = latent_height, latent_width
        z_hat = decode_z_stream(streams.hyper, (self.z_tables.channels, lh // 4, lw // 4), self.z_tables)
        anchors, nonanchors = checkerboard(lh, lw)
        t1 = self._hyper(z_hat)
        p1 = self._anchor_params(t1, coded, anchors)
        y = np.zeros((m, lh * lw), dtype=np.int32)
        y_coded = np.zeros((mc, lh * lw), dtype=np.int32)
        y_coded[:, anchors] = decode_mixture_stream(streams.anchor, p1, self.family_tables, "anchor stream").reshape(
            mc, anchors.size
        )
        y[coded] = y_coded
        p2 = self._nonanchor_params(t1, y.reshape(m, lh, lw), coded, nonanchors)
        y_coded[:, nonanchors] = decode_mixture_stream(
            streams.nonanchor, p2, self.family_tables, "non-anchor stream"
        ).reshape(mc, nonanchors.size)
        y[coded] = y_coded
        return Symbols(z_hat=z_hat, y_hat=y.reshape(m, lh, lw), coded=coded)

    # -- the exact path ------------------------------------------------------------------------------------------

    def _hyper(self, z_hat: np.ndarray) -> torch.Tensor:
        return self.net.hyper(z_hat[None])

    def _anchor_params(self, t1: torch.Tensor, coded: np.ndarray, anchors: np.ndarray) -> IntParams:
        return _stream_params(self.net.anchor, (t1,), coded, anchors)

    def _nonanchor_params(
        self, t1: torch.Tensor, y_anchor: np.ndarray, coded: np.ndarray, nonanchors: np.ndarray
    ) -> IntParams:
        ctx = self.net.context(y_anchor[None], nonanchors)
        return _stream_params(self.net.pen2, (t1, ctx), coded, nonanchors)


def _stream_params(
    pen: Callable[..., torch.Tensor], features: tuple[torch.Tensor, ...], coded: np.ndarray, positions: np.ndarray
) -> IntParams:
    """Integer parameters of one stream's elements, in stream order (coded channel, then position), from the feature
    maps (1, C, h, w) that ``pen`` (PEN1 or PEN2, pointwise) maps to raw slots (1, P·M, ·, ·). The PEN runs at
    ``positions`` (flat indices) only, PARAM_BLOCK // M of them at a time (an element's parameters depend on its own
    position's features only), so that a large image's float64 slots and int64 temporaries stay at about
    PARAM_BLOCK elements."""
    m = coded.size
    channels = np.flatnonzero(coded)
    step = max(1, PARAM_BLOCK // m)
    flat = [f.flatten(2) for f in features]  # (1, C, h·w)
    out: list[np.ndarray] = []
    families: tuple[str, ...] = ()
    for i in range(0, max(1, positions.size), step):
        block = positions[i : i + step]
        index = torch.from_numpy(block)
        raw = pen(*(f[:, :, index, None] for f in flat))  # (1, P·M, n, 1), float64 holding integers
        slots = raw.shape[1] // m
        a = raw[0, :, :, 0].numpy().reshape(m, slots, block.size)[channels].astype(np.int64)  # (mc, P, n)
        p = int_params(a.transpose(0, 2, 1).reshape(-1, slots))
        if not out:
            families = p.families
            out = [np.empty((channels.size, positions.size, p.k), np.int32) for _ in range(3)]
        for whole, part in zip(out, (p.weights, p.means, p.scale_idx), strict=True):
            whole[:, i : i + block.size] = part.reshape(channels.size, block.size, p.k)
    weights, means, scale_idx = (a.reshape(-1, len(families)) for a in out)
    return IntParams(weights, means, scale_idx, families)


__all__ = ["PARAM_BLOCK", "LatentCodec", "Streams", "Symbols", "checkerboard", "coded_channels"]
