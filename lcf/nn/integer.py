"""Integer entropy-parameter networks: h_s, ctx, PEN1 and PEN2 in integer arithmetic (spec/lcf.md, "The integer
entropy-model networks"; Ballé et al. 2019, "Integer networks for data compression with latent-variable models").

Encoder and decoder must derive the very same integer tables from ẑ and the decoded anchors. Float networks cannot
promise that across machines (a last-bit difference can cross a grid boundary), so the path

    ẑ → h_s → T1 → PEN1 → R1                  (anchors)
    [T1, ctx(ŷ anchors)] → PEN2 → R2           (non-anchors)

is carried out on integers. Every activation is an integer a standing for a / 2^FRAC_BITS, clipped to
[-ACT_MAX, ACT_MAX]; every layer has integer weights W, an integer bias B and a shift s (its weights stand for
W / 2^s), and computes

    acc = B + Σ W · a                    (exact)
    out = clip((acc + 2^(s-1)) >> s, -ACT_MAX, ACT_MAX),  then LReLU: out < 0 → (out · 655) >> 16

The weights are exported so that Σ|W| · ACT_MAX + |B| + 2^s < 2^52 for every output channel: every partial sum is then
an integer below 2^53 in magnitude, which float64 holds exactly, so this module evaluates the network with ordinary
float64 convolutions (BLAS, any thread count, any summation order) and gets exactly the integers an int64
implementation gets. Algorithms that transform the data (FFT, Winograd) would not be exact: oneDNN is switched off,
and the network runs on the CPU.

The R1/R2 outputs are integers too; lcf.entropy.params turns them into integer mixture parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .context import checkerboard_kernel_mask, split

FRAC_BITS = 12  # activations are integers a standing for a / 2**12
ACT_MAX = 1 << 28  # every activation (and input) is clipped to [-ACT_MAX, ACT_MAX]
INPUT_MAX = ACT_MAX >> FRAC_BITS  # ẑ and ŷ are clipped to [-2**16, 2**16] before they enter
WEIGHT_MAX = (1 << 15) - 1  # |W| ≤ WEIGHT_MAX: weights fit int16
SHIFT_MIN, SHIFT_MAX = 1, 40
EXACT_LIMIT = 1 << 52  # Σ|W|·ACT_MAX + |B| + 2**s must stay below this for float64 to be exact
LRELU_MUL, LRELU_SHIFT = 655, 16  # LReLU slope 655 / 2**16 ≈ 0.01 on negative values
BAND_ELEMENTS = 1 << 22  # a k x k layer runs on bands of rows beyond this many unfolded inputs (32 MiB)


@dataclass(frozen=True)
class LayerSpec:
    """One convolution of the entropy-model networks: its key in the weights, kernel size, whether a pixel shuffle ×2
    follows it and whether LReLU does."""

    key: str
    kernel: int
    shuffle: bool = False
    lrelu: bool = True


H_S = (
    LayerSpec("h_s.0", 3),
    LayerSpec("h_s.2.0", 3, shuffle=True),
    LayerSpec("h_s.4", 3),
    LayerSpec("h_s.6.0", 3, shuffle=True),
    LayerSpec("h_s.8", 3, lrelu=False),
)
CTX = (LayerSpec("ctx.conv", 5, lrelu=False),)
PEN1 = (
    LayerSpec("pen_anchor.net.0", 1),
    LayerSpec("pen_anchor.net.2", 1),
    LayerSpec("pen_anchor.net.4", 1, lrelu=False),
)
PEN2 = (
    LayerSpec("pen_nonanchor.net.0", 1),
    LayerSpec("pen_nonanchor.net.2", 1),
    LayerSpec("pen_nonanchor.net.4", 1, lrelu=False),
)
LAYERS = H_S + CTX + PEN1 + PEN2
INTEGER_PREFIXES = ("h_s.", "ctx.", "pen_anchor.", "pen_nonanchor.")


@contextmanager
def exact_mode() -> Iterator[None]:
    """oneDNN off (its convolutions may transform the data, e.g. Winograd, and round); restored afterwards.

    PyTorch's own CPU convolution (im2col and a matrix product) then carries the sums exactly, in whatever order and
    on however many threads it adds them (spec: every partial sum is an integer below 2^53). Deterministic algorithms
    are not needed for that, and switching them on costs ~2 s on the first call (it imports torch._dynamo). This is
    a process-wide torch setting: do not run other torch work concurrently in other Python threads.
    """
    mkldnn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = mkldnn


# -- export: float modules -> integer layers ----------------------------------------------------------------------


def quantize_layer(weight: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    """Float weight (Cout, Cin, k, k) and bias (Cout,) -> {"weight": int16, "bias": int64, "shift": int32 (1,)}: the
    largest shift that keeps |W| ≤ WEIGHT_MAX and the exactness bound, round-half-even to the integers."""
    weight = np.asarray(weight, np.float64)
    bias = np.asarray(bias, np.float64)
    largest = float(np.abs(weight).max()) if weight.size else 0.0
    shift = SHIFT_MAX if largest == 0.0 else min(SHIFT_MAX, math.floor(math.log2(WEIGHT_MAX / largest)))
    while shift >= SHIFT_MIN:
        w = np.rint(weight * 2.0**shift)
        b = np.rint(bias * 2.0 ** (shift + FRAC_BITS))
        if np.abs(w).max(initial=0) <= WEIGHT_MAX and exactness_margin(w, b, shift) > 0:
            return {"weight": w.astype(np.int16), "bias": b.astype(np.int64), "shift": np.array([shift], np.int32)}
        shift -= 1
    raise ValueError(f"weights of largest magnitude {largest:.4g} cannot be made integer within the exactness bound")


def exactness_margin(weight: np.ndarray, bias: np.ndarray, shift: int) -> float:
    """EXACT_LIMIT minus the largest Σ|W|·ACT_MAX + |B| + 2**shift of any output channel (> 0: float64 is exact)."""
    rows = np.abs(np.asarray(weight, np.float64)).reshape(weight.shape[0], -1).sum(axis=1)
    worst = rows * ACT_MAX + np.abs(np.asarray(bias, np.float64)) + 2.0**shift
    return float(EXACT_LIMIT - worst.max(initial=0.0))


def masked_ctx_weight(weight: Tensor) -> Tensor:
    """The context kernel with the taps that never see an anchor set to zero (lcf.nn.context)."""
    return weight * checkerboard_kernel_mask(weight.shape[-1]).to(weight.device, weight.dtype)


def integer_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The integer layers of ``model``'s h_s, ctx, PEN1 and PEN2, keyed as in the weights (``<key>.weight`` int16,
    ``<key>.bias`` int64, ``<key>.shift`` int32)."""
    state = {k: v.detach().to("cpu", torch.float64) for k, v in model.state_dict().items()}
    state["ctx.conv.weight"] = masked_ctx_weight(state["ctx.conv.weight"])
    out: dict[str, np.ndarray] = {}
    for layer in LAYERS:
        q = quantize_layer(state[f"{layer.key}.weight"].numpy(), state[f"{layer.key}.bias"].numpy())
        out.update({f"{layer.key}.{name}": value for name, value in q.items()})
    return out


def float_state(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """Integer layers -> the float state dict entries of h_s, ctx, PEN1, PEN2 (W / 2^s, B / 2^(s + FRAC_BITS)), for
    the float model that training and encoder refinement use.

    The weights go straight to float32: an int16 is exact in float32 and 2^-s (s ≤ SHIFT_MAX) a normal float32, so
    the product is the float64 one rounded to float32, without the float64 copy of every weight (a tenth of a second
    when a codec is made). The int64 biases go through float64 as before (one rounding, then float32)."""
    out: dict[str, Tensor] = {}
    for layer in LAYERS:
        shift = int(arrays[f"{layer.key}.shift"][0])
        out[f"{layer.key}.weight"] = torch.from_numpy(
            arrays[f"{layer.key}.weight"].astype(np.float32) * np.float32(2.0**-shift)
        )
        out[f"{layer.key}.bias"] = torch.from_numpy(
            (arrays[f"{layer.key}.bias"].astype(np.float64) * 2.0 ** -(shift + FRAC_BITS)).astype(np.float32)
        )
    return out


def check_integer_arrays(arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> None:
    """ValueError unless every layer is present with the expected shape, dtype, shift range and exactness bound.
    ``shapes`` maps each layer key to its weight shape."""
    for layer in LAYERS:
        w, b, s = (arrays.get(f"{layer.key}.{name}") for name in ("weight", "bias", "shift"))
        if w is None or b is None or s is None:
            raise ValueError(f"integer layer {layer.key} is missing (.weight, .bias and .shift are needed)")
        if w.dtype != np.int16 or b.dtype != np.int64 or s.dtype != np.int32:
            raise ValueError(
                f"{layer.key}: weight/bias/shift must be int16/int64/int32, got {w.dtype}/{b.dtype}/{s.dtype}"
            )
        if tuple(w.shape) != tuple(shapes[layer.key]) or b.shape != (w.shape[0],) or s.shape != (1,):
            raise ValueError(
                f"{layer.key}: shapes {w.shape}, {b.shape}, {s.shape} do not fit the model "
                f"(weight {tuple(shapes[layer.key])})"
            )
        shift = int(s[0])
        if not SHIFT_MIN <= shift <= SHIFT_MAX:
            raise ValueError(f"{layer.key}: shift {shift} outside [{SHIFT_MIN}, {SHIFT_MAX}]")
        if w.size and int(np.abs(w.astype(np.int32)).max()) > WEIGHT_MAX:
            raise ValueError(f"{layer.key}: a weight is -32768, outside ±{WEIGHT_MAX}")
        if exactness_margin(w, b, shift) <= 0:
            raise ValueError(f"{layer.key}: weights break the exactness bound (Σ|W|·2^28 + |B| + 2^s < 2^52)")


# -- evaluation ---------------------------------------------------------------------------------------------------


class IntegerEntropyNet:
    """h_s, ctx, PEN1 and PEN2 as integer layers, evaluated exactly on the CPU.

    Inputs and outputs are float64 CPU tensors holding integers (activations in units of 2**-FRAC_BITS).
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.layers: dict[str, tuple[Tensor, Tensor, int]] = {}
        for layer in LAYERS:
            self.layers[layer.key] = (
                torch.from_numpy(arrays[f"{layer.key}.weight"].astype(np.float64)),
                torch.from_numpy(arrays[f"{layer.key}.bias"].astype(np.float64)),
                int(arrays[f"{layer.key}.shift"][0]),
            )
        # ctx at the non-anchors (context(y, nonanchors)) reads only the taps that can reach an anchor
        (ctx,) = CTX
        w = self.layers[ctx.key][0]
        self.ctx_taps = [(di, dj) for di in range(ctx.kernel) for dj in range(ctx.kernel) if (di + dj) % 2 == 1]
        self.ctx_tap_weight = torch.stack([w[:, :, di, dj] for di, dj in self.ctx_taps], dim=2).reshape(
            w.shape[0], -1
        )  # (2M, M·T), columns in (channel, tap) order

    @staticmethod
    def inputs(values: np.ndarray | Tensor) -> Tensor:
        """Integer symbols (ẑ or ŷ, any integer dtype) -> activations: clip to ±INPUT_MAX, times 2**FRAC_BITS."""
        t = torch.as_tensor(np.asarray(values)).to(torch.float64)
        return torch.clamp(t, -INPUT_MAX, INPUT_MAX).mul_(1 << FRAC_BITS)

    def _run(self, x: Tensor, layers: tuple[LayerSpec, ...]) -> Tensor:
        for layer in layers:
            x = self._banded(x, layer)
        return x

    def _banded(self, x: Tensor, layer: LayerSpec) -> Tensor:
        """One layer, on bands of rows when a whole-image convolution would unfold more than BAND_ELEMENTS input
        values (its k x k window copies each input k² times): each band reads its k // 2 neighbouring rows, so the
        result is the whole-image one exactly (integers)."""
        r, h = layer.kernel // 2, x.shape[-2]
        rows = max(1, BAND_ELEMENTS // max(1, x.shape[0] * x.shape[1] * layer.kernel**2 * x.shape[-1]))
        if r == 0 or rows >= h:
            return self._layer(x, layer)
        up = 2 if layer.shuffle else 1
        parts = []
        for top in range(0, h, rows):
            bottom = min(h, top + rows)
            t0 = max(0, top - r)
            out = self._layer(x[..., t0 : min(h, bottom + r), :], layer)
            parts.append(out[..., (top - t0) * up : (bottom - t0) * up, :])
        return torch.cat(parts, dim=-2)

    def _layer(self, x: Tensor, layer: LayerSpec) -> Tensor:
        w, b, _ = self.layers[layer.key]
        return self._finish(F.conv2d(x, w, b, padding=layer.kernel // 2), layer)

    def _finish(self, acc: Tensor, layer: LayerSpec) -> Tensor:
        """A layer's accumulators B + Σ W·a -> its output activations (shift, clip, shuffle, LReLU), in place."""
        shift = self.layers[layer.key][2]
        x = torch.floor_(acc.add_(2.0 ** (shift - 1)).mul_(2.0**-shift)).clamp_(-ACT_MAX, ACT_MAX)
        if layer.shuffle:
            x = F.pixel_shuffle(x, 2)
        if layer.lrelu:
            x = torch.where(x < 0, torch.floor(x * (LRELU_MUL * 2.0**-LRELU_SHIFT)), x)
        return x

    @torch.no_grad()
    def hyper(self, z_hat: np.ndarray | Tensor) -> Tensor:
        """ẑ (B, Mz, hz, wz) integers -> T1 (B, 2M, 4·hz, 4·wz)."""
        with exact_mode():
            return self._run(self.inputs(z_hat), H_S)

    @torch.no_grad()
    def anchor(self, t1: Tensor) -> Tensor:
        """R1 = PEN1(T1): (B, 30M, h, w), 30 slots per latent channel (lcf.nn.pen). PEN1 is pointwise (1x1 layers):
        positions gathered into a (B, 2M, n, 1) tensor give those positions' slots, (B, 30M, n, 1)."""
        with exact_mode():
            return self._run(t1, PEN1)

    @torch.no_grad()
    def context(self, y_anchor_hat: np.ndarray | Tensor, nonanchors: np.ndarray | None = None) -> Tensor:
        """ctx(ŷ anchors): (B, 2M, h, w), the masked context convolution of the anchors; non-anchor values of
        ``y_anchor_hat`` are zeroed here. ``nonanchors``: flat indices of non-anchor positions ((i + j) odd); then
        only those are computed (zeros elsewhere), over only the taps that can reach an anchor ((di + dj) odd:
        the others read zeroed non-anchors), a block of positions at a time: the same integers as the whole
        convolution there, for about a quarter of its work."""
        with exact_mode():
            anchors, _ = split(self.inputs(y_anchor_hat))
            if nonanchors is None:
                return self._run(anchors, CTX)
            return self._context_at(anchors, np.asarray(nonanchors))

    def _context_at(self, anchors: Tensor, positions: np.ndarray) -> Tensor:
        (layer,) = CTX
        b = self.layers[layer.key][1]
        r, taps, weight = layer.kernel // 2, self.ctx_taps, self.ctx_tap_weight
        bsz, m, h, wd = anchors.shape
        padded = F.pad(anchors, (r, r, r, r))
        out = anchors.new_zeros(bsz, weight.shape[0], h * wd)
        step = max(1, BAND_ELEMENTS // max(1, bsz * m * len(taps)))
        for a in range(0, positions.size, step):
            block = torch.from_numpy(positions[a : a + step])
            i, j = block // wd, block % wd
            patches = torch.stack([padded[:, :, i + di, j + dj] for di, dj in taps], dim=2)  # (B, M, T, n)
            acc = torch.matmul(weight, patches.reshape(bsz, -1, block.numel())).add_(b[:, None])  # (B, 2M, n)
            out[:, :, block] = self._finish(acc[..., None], layer)[..., 0]
        return out.view(bsz, weight.shape[0], h, wd)

    @torch.no_grad()
    def pen2(self, t1: Tensor, ctx: Tensor) -> Tensor:
        """PEN2([T1, ctx]): (B, 9M, h, w). Pointwise, like :meth:`anchor`: gathered positions (B, ·, n, 1) work."""
        with exact_mode():
            return self._run(torch.cat((t1, ctx), dim=1), PEN2)

    def nonanchor(self, t1: Tensor, y_anchor_hat: np.ndarray | Tensor) -> Tensor:
        """R2 = PEN2([T1, ctx(ŷ anchors)]): (B, 9M, h, w), 9 slots per latent channel."""
        return self.pen2(t1, self.context(y_anchor_hat))


__all__ = [
    "ACT_MAX",
    "FRAC_BITS",
    "INPUT_MAX",
    "LAYERS",
    "IntegerEntropyNet",
    "LayerSpec",
    "check_integer_arrays",
    "exact_mode",
    "float_state",
    "integer_arrays",
    "quantize_layer",
]
