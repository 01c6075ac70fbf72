"""Parameter estimation networks PEN1 (anchors, GLLMM) and PEN2 (non-anchors, GMM); paper Sec. III-C, Fig. 4.

    PEN1 (pen_anchor):    T1 (2M)            → 1x1 3M · LReLU · 1x1 3M · LReLU · 1x1 30M   → GLLMM, K = 9
    PEN2 (pen_nonanchor): [T1, ctx(ŷ₁)] (4M) → 1x1 3M · LReLU · 1x1 3M · LReLU · 1x1 9M    → GMM,   K = 3

PEN1 in the paper reads [T1, T2] with T2 a zero tensor during both passes. A 1x1 convolution of a zero input
contributes exactly nothing (its weights multiply zeros; the bias is the layer's own), so PEN1 reads T1 alone.

Raw output layout: channel c·P + p holds slot p of latent channel c (P = 30 or 9). Slots, per latent channel:

    GLLMM: 0..8 component logits, 9..17 means, 18..26 scales, 27..29 family logits (G, L, S)
    GMM:   0..2 component logits, 3..5 means, 6..8 scales

Weights: GMM softmax over the 3 logits; GLLMM softmax over the 3 families × softmax within each family, so the 9
joint weights sum to 1. Scales: softplus, clamped to [SCALE_MIN, SCALE_MAX]. Means: clamped to
[−MEAN_LIMIT, MEAN_LIMIT] (both ranges: lcf.constants).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcf.constants import ANCHOR_FAMILIES, MEAN_LIMIT, NONANCHOR_FAMILIES, SCALE_MAX, SCALE_MIN

from .likelihood import bounded


@dataclass(frozen=True)
class MixtureTensors:
    """Per-element mixture parameters, each of shape (B, M, K, h, w): the component axis is 2.

    ``families[k]`` names component k's family: "G" Gaussian, "L" Laplacian, "S" logistic (see likelihood.py).
    Weights sum to 1 over K; scales lie in [SCALE_MIN, SCALE_MAX]; means in [−MEAN_LIMIT, MEAN_LIMIT].
    """

    weights: Tensor
    means: Tensor
    scales: Tensor
    families: tuple[str, ...]


def _scales(raw: Tensor) -> Tensor:
    return bounded(F.softplus(raw), SCALE_MIN, SCALE_MAX)


def _means(raw: Tensor) -> Tensor:
    return bounded(raw, -float(MEAN_LIMIT), float(MEAN_LIMIT))


def _pen_stack(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 1), nn.LeakyReLU(inplace=True),
        nn.Conv2d(hidden, cout, 1),
    )  # fmt: skip


class AnchorPEN(nn.Module):
    """PEN1: T1 → GLLMM parameters of every position (used at anchors)."""

    families = ANCHOR_FAMILIES
    slots = 30

    def __init__(self, M: int) -> None:
        super().__init__()
        self.M = M
        self.net = _pen_stack(2 * M, 3 * M, self.slots * M)

    def forward(self, t1: Tensor) -> MixtureTensors:
        b, _, h, w = t1.shape
        raw = self.net(t1).view(b, self.M, self.slots, h, w)
        logits, means, scales, fam = raw[:, :, 0:9], raw[:, :, 9:18], raw[:, :, 18:27], raw[:, :, 27:30]
        within = torch.softmax(logits.unflatten(2, (3, 3)), dim=3)  # (b, M, family, component, h, w)
        family = torch.softmax(fam, dim=2).unsqueeze(3)
        weights = (family * within).flatten(2, 3)
        return MixtureTensors(weights, _means(means), _scales(scales), self.families)


class NonAnchorPEN(nn.Module):
    """PEN2: [T1, ctx(ŷ anchors)] → GMM parameters of every position (used at non-anchors)."""

    families = NONANCHOR_FAMILIES
    slots = 9

    def __init__(self, M: int) -> None:
        super().__init__()
        self.M = M
        self.net = _pen_stack(4 * M, 3 * M, self.slots * M)

    def forward(self, t1: Tensor, context: Tensor) -> MixtureTensors:
        b, _, h, w = t1.shape
        raw = self.net(torch.cat((t1, context), dim=1)).view(b, self.M, self.slots, h, w)
        weights = torch.softmax(raw[:, :, 0:3], dim=2)
        return MixtureTensors(weights, _means(raw[:, :, 3:6]), _scales(raw[:, :, 6:9]), self.families)
