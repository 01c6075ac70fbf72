"""An int64 numpy reference of the integer entropy-model networks h_s, ctx, PEN1 and PEN2, written from the definition
(spec/lcf.md, "The integer entropy-model networks"), for tests/test_spec_decoder.py and
tests/test_nn_integer_reference.py.

It deliberately shares nothing with lcf.nn.integer (which carries the integers in float64 torch convolutions): no
torch, no float, no lcf import. Every value is an np.int64 and every operation is integer arithmetic:

* an activation is an integer a standing for a / 2**12, clipped to [-2**28, 2**28];
* inputs (ẑ, ŷ_A): clip to [-2**16, 2**16], then times 2**12;
* a layer with int16 weights W (Cout, Cin, k, k), int64 bias B (Cout,) and shift s: acc = B + Σ W · a over the k×k
  taps with zero padding (k - 1) / 2 (a cross-correlation), out = clip((acc + 2**(s-1)) >> s, -2**28, 2**28) (>> is
  an arithmetic shift: floor division by 2**s); then a pixel shuffle ×2 where the layer has one, then LReLU
  out < 0 → (out · 655) >> 16 except after the last layer of each network;
* ctx uses its stored kernel as it is; PEN2's input is T1 ⧺ ctx(ŷ_A), ŷ_A = ŷ with the non-anchors ((i + j) odd)
  zeroed.

Shapes are batched: (B, C, H, W).
"""

from __future__ import annotations

import numpy as np

FRAC_BITS = 12
ACT_MAX = 1 << 28
INPUT_MAX = 1 << 16
LRELU_MUL, LRELU_SHIFT = 655, 16

# (key, kernel size, pixel shuffle after it, LReLU after it)
H_S = (
    ("h_s.0", 3, False, True),
    ("h_s.2.0", 3, True, True),
    ("h_s.4", 3, False, True),
    ("h_s.6.0", 3, True, True),
    ("h_s.8", 3, False, False),
)
CTX = (("ctx.conv", 5, False, False),)
PEN1 = (
    ("pen_anchor.net.0", 1, False, True),
    ("pen_anchor.net.2", 1, False, True),
    ("pen_anchor.net.4", 1, False, False),
)
PEN2 = (
    ("pen_nonanchor.net.0", 1, False, True),
    ("pen_nonanchor.net.2", 1, False, True),
    ("pen_nonanchor.net.4", 1, False, False),
)
LAYERS = H_S + CTX + PEN1 + PEN2


def inputs(values) -> np.ndarray:
    """Integer symbols (any integer dtype) -> int64 activations: clip to ±2**16, then times 2**12."""
    v = np.asarray(values)
    assert np.issubdtype(v.dtype, np.integer), v.dtype
    return np.clip(v.astype(np.int64), -INPUT_MAX, INPUT_MAX) << FRAC_BITS


def conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, shift: int) -> np.ndarray:
    """One integer layer: (B, Cin, H, W) int64 -> (B, Cout, H, W) int64, rounded by the shift and clipped."""
    assert x.dtype == np.int64
    b, cin, h, w = x.shape
    cout, wcin, k, k2 = weight.shape
    assert wcin == cin and k == k2 and k % 2 == 1, (x.shape, weight.shape)
    p = (k - 1) // 2
    padded = np.zeros((b, cin, h + 2 * p, w + 2 * p), np.int64)
    padded[:, :, p : p + h, p : p + w] = x
    wt = weight.astype(np.int64)
    acc = np.empty((b, cout, h, w), np.int64)
    acc[...] = bias.astype(np.int64)[None, :, None, None]
    for u in range(k):  # tap (u, v) reads x[c, i + u - p, j + v - p]
        for v in range(k):
            tap = wt[:, :, u, v]  # (Cout, Cin)
            if not tap.any():
                continue
            window = padded[:, :, u : u + h, v : v + w]  # (B, Cin, H, W)
            acc += np.tensordot(tap, window, axes=([1], [1])).transpose(1, 0, 2, 3)  # integer dot: exact
    out = (acc + (np.int64(1) << np.int64(shift - 1))) >> np.int64(shift)
    return np.clip(out, -ACT_MAX, ACT_MAX)


def pixel_shuffle(x: np.ndarray) -> np.ndarray:
    """out[c, 2i + a, 2j + b] = in[4c + 2a + b, i, j]."""
    b, c4, h, w = x.shape
    out = np.empty((b, c4 // 4, 2 * h, 2 * w), x.dtype)
    for a in range(2):
        for bb in range(2):
            out[:, :, a::2, bb::2] = x[:, 2 * a + bb :: 4]
    return out


def lrelu(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, (x * LRELU_MUL) >> LRELU_SHIFT, x)


def zero_nonanchors(y: np.ndarray) -> np.ndarray:
    """ŷ_A: the values at the anchors ((i + j) even), zero at the non-anchors."""
    i, j = np.indices(y.shape[-2:])
    return np.where((i + j) % 2 == 0, y, np.zeros((), y.dtype))


class IntRef:
    """The four networks over a dict of integer layers (``<key>.weight`` int16, ``.bias`` int64, ``.shift`` int32)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.layers = {}
        for key, *_ in LAYERS:
            w, b, s = (np.asarray(arrays[f"{key}.{n}"]) for n in ("weight", "bias", "shift"))
            assert w.dtype == np.int16 and b.dtype == np.int64 and s.dtype == np.int32 and s.shape == (1,), key
            # int64 cannot overflow: every partial sum of acc is below Σ|W|·2**28 + |B| + 2**s in magnitude
            worst = int(np.abs(w.astype(np.int64)).reshape(w.shape[0], -1).sum(axis=1).max(initial=0)) * ACT_MAX
            assert worst + int(np.abs(b).max(initial=0)) + 2 ** int(s[0]) < 2**63, key
            self.layers[key] = (w, b, int(s[0]))

    def run(self, x: np.ndarray, layers) -> np.ndarray:
        for key, kernel, shuffle, relu in layers:
            w, b, s = self.layers[key]
            assert w.shape[-1] == kernel, key
            x = conv(x, w, b, s)
            if shuffle:
                x = pixel_shuffle(x)
            if relu:
                x = lrelu(x)
        return x

    def hyper(self, z_hat) -> np.ndarray:
        """ẑ (B, Mz, hz, wz) integers -> T1 (B, 2M, 4hz, 4wz)."""
        return self.run(inputs(z_hat), H_S)

    def ctx(self, y_hat) -> np.ndarray:
        """ŷ (B, M, h, w) integers (non-anchors are zeroed here) -> C2 (B, 2M, h, w)."""
        return self.run(zero_nonanchors(inputs(y_hat)), CTX)

    def anchor(self, t1: np.ndarray) -> np.ndarray:
        """T1 -> R1 (B, 30M, h, w)."""
        return self.run(_ints(t1), PEN1)

    def nonanchor(self, t1: np.ndarray, y_hat) -> np.ndarray:
        """(T1, ŷ) -> R2 = PEN2(T1 ⧺ ctx(ŷ_A)) (B, 9M, h, w)."""
        return self.run(np.concatenate([_ints(t1), self.ctx(y_hat)], axis=1), PEN2)


def _ints(a) -> np.ndarray:
    a = np.asarray(a)
    assert np.issubdtype(a.dtype, np.integer), a.dtype
    return a.astype(np.int64)
