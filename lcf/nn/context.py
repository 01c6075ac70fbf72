"""Checkerboard context model (He et al. 2021; paper Sec. III-C, Fig. 6(b) and Fig. 7).

Latent position (i, j) is an anchor iff (i + j) % 2 == 0 ("A"), otherwise a non-anchor ("n"):

    j:  0 1 2 3
    i=0 A n A n
    i=1 n A n A
    i=2 A n A n

Anchors are coded first from the hyperprior alone (PEN1); non-anchors second, from the hyperprior and the context
``ctx``: one 5x5 convolution over ŷ with its non-anchors zeroed, whose kernel is masked so that only the anchor
positions relative to a non-anchor centre contribute (the positions with odd |di| + |dj|; the centre is excluded):

    . x . x .
    x . x . x
    . x c x .
    x . x . x
    . x . x .
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def anchor_mask(h: int, w: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.bool) -> Tensor:
    """(1, 1, h, w) tensor, 1 at anchors ((i + j) even) and 0 at non-anchors."""
    i = torch.arange(h, device=device).view(h, 1)
    j = torch.arange(w, device=device).view(1, w)
    return ((i + j) % 2 == 0).view(1, 1, h, w).to(dtype)


def split(y: Tensor) -> tuple[Tensor, Tensor]:
    """y (..., h, w) → (anchors, non-anchors), each the same shape as y with the other set zeroed (paper Fig. 7)."""
    m = anchor_mask(y.shape[-2], y.shape[-1], device=y.device)
    zero = torch.zeros((), dtype=y.dtype, device=y.device)
    return torch.where(m, y, zero), torch.where(m, zero, y)


def merge(anchors: Tensor, nonanchors: Tensor) -> Tensor:
    """Inverse of ``split``: anchors where (i + j) is even, non-anchors elsewhere."""
    m = anchor_mask(anchors.shape[-2], anchors.shape[-1], device=anchors.device)
    return torch.where(m, anchors, nonanchors)


def checkerboard_kernel_mask(k: int = 5) -> Tensor:
    """(k, k) float mask: 1 where (di + dj) is odd relative to the centre (the anchors around a non-anchor)."""
    i = torch.arange(k).view(k, 1)
    j = torch.arange(k).view(1, k)
    return ((i + j) % 2 == 1).to(torch.float32)  # k is odd, so (i + j) and (di + dj) have the same parity


class CheckerboardContext(nn.Module):
    """ctx: masked 5x5 convolution M → 2M over ŷ with non-anchors zeroed; read only at non-anchor positions."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)
        mask = checkerboard_kernel_mask(kernel_size).view(1, 1, kernel_size, kernel_size)
        self.register_buffer("mask", mask, persistent=False)  # a constant, not a weight

    def forward(self, y_anchor_hat: Tensor) -> Tensor:
        weight = self.conv.weight * self.mask.to(self.conv.weight.dtype)
        return F.conv2d(y_anchor_hat, weight, self.conv.bias, padding=self.conv.padding)
