"""Deformable convolution (Dai et al. 2017) in plain PyTorch and the deformable residual module (paper Sec. III-B).

Definition (one offset group). For output position (u, v) and kernel tap (i, j), with k = i·kw + j,

    p_y = u·stride − padding + i·dilation + Δy[k, u, v]
    p_x = v·stride − padding + j·dilation + Δx[k, u, v]
    out[o, u, v] = bias[o] + Σ_c Σ_k weight[o, c, i, j] · bilinear(x[c], p_y, p_x)

where ``bilinear`` samples the input extended by zeros outside the image. The offsets tensor has shape
(B, 2·kh·kw, Ho, Wo); channel 2k holds Δy and channel 2k+1 holds Δx of tap k (torchvision's layout).

Implementation: one ``grid_sample`` call gathers all kh·kw sampled copies of the input (the "columns"), then one
matrix product with the weight. No Python loop over pixels or taps.

    x ──► offset conv (zero-initialised) ──► Δ ─┐
    └────────────────────────────────────────── grid_sample ─► columns (B, C·kh·kw, Ho·Wo) ─► weight @ columns
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import GDN, conv1x1, conv3x3


def deform_conv2d(
    x: Tensor,
    offsets: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> Tensor:
    """Deformable 2-D convolution, see the module docstring for the exact definition."""
    b, c, h, w = x.shape
    cout, cin, kh, kw = weight.shape
    if cin != c:
        raise ValueError(f"weight expects {cin} input channels, x has {c}")
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    kk = kh * kw
    if offsets.shape != (b, 2 * kk, ho, wo):
        raise ValueError(f"offsets must have shape {(b, 2 * kk, ho, wo)}, got {tuple(offsets.shape)}")

    # sampling positions and the gather stay in float32 under autocast: bf16 cannot hold a position like 100.3
    low = (torch.bfloat16, torch.float16)
    x = x.float() if x.dtype in low else x
    offsets = offsets.to(x.dtype) if offsets.dtype in low else offsets
    dt, dev = x.dtype, x.device
    tap_i = torch.arange(kh, dtype=dt, device=dev).repeat_interleave(kw) * dilation  # (kk,)
    tap_j = torch.arange(kw, dtype=dt, device=dev).repeat(kh) * dilation
    rows = torch.arange(ho, dtype=dt, device=dev) * stride - padding
    cols = torch.arange(wo, dtype=dt, device=dev) * stride - padding
    base_y = tap_i.view(kk, 1, 1) + rows.view(1, ho, 1)  # (kk, ho, 1)
    base_x = tap_j.view(kk, 1, 1) + cols.view(1, 1, wo)  # (kk, 1, wo)

    off = offsets.view(b, kk, 2, ho, wo)
    py = base_y + off[:, :, 0]  # (b, kk, ho, wo)
    px = base_x + off[:, :, 1]
    # grid_sample's normalised coordinates with align_corners=False: pixel p sits at (2p + 1) / size - 1.
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1).view(b, kk * ho, wo, 2)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    columns = sampled.reshape(b, c * kk, ho * wo)  # (c, kk) order matches weight.view(cout, c * kk)
    out = torch.matmul(weight.reshape(cout, c * kk), columns).view(b, cout, ho, wo)
    if bias is not None:
        out = out + bias.view(1, cout, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """kxk deformable convolution whose offsets are predicted from its input by a kxk convolution.

    The offset convolution is initialised to zero, so at initialisation this equals a plain convolution.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.empty(cout, cin, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default initialisation
        bound = 1 / math.sqrt(cin * kernel_size * kernel_size)
        nn.init.uniform_(self.bias, -bound, bound)
        self.offset = nn.Conv2d(cin, 2 * kernel_size * kernel_size, kernel_size, stride=stride, padding=padding)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        return deform_conv2d(x, self.offset(x), self.weight, self.bias, self.stride, self.padding)


class DeformableResidualModule(nn.Module):
    """DRM (paper Sec. III-B, Fig. 3): deformable conv3x3/s → LReLU → conv3x3 → GDN, plus a 1x1/s shortcut.

    Used in g_a where the resolution changes (the down-sampling residual blocks of Cheng et al. 2020). The shortcut
    subsamples, then applies a 1x1 convolution: the same function as a strided 1x1 convolution, cheaper, and it avoids
    a crash of torch 2.13's CPU backward of a strided 1x1 convolution of a 3-channel channels_last input.
    """

    def __init__(self, cin: int, cout: int, stride: int = 2) -> None:
        super().__init__()
        self.deform = DeformConv2d(cin, cout, 3, stride=stride, padding=1)
        self.conv = conv3x3(cout, cout)
        self.gdn = GDN(cout)
        self.stride = stride
        self.skip = conv1x1(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.deform(x), 0.01)
        return self.gdn(self.conv(out)) + self.skip(x[..., :: self.stride, :: self.stride])
