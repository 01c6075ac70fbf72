"""Discretized mixture likelihoods for training (paper Sec. III-C, Eq. 1; GLLMM after Fu et al. [5]).

The probability of an integer symbol ŷ under a mixture of K components is

    P(ŷ) = Σ_k w_k [F_k(ŷ + 0.5) − F_k(ŷ − 0.5)],     clamped below at LIKELIHOOD_MIN,

with the component CDFs (μ = mean, s = scale, t = x − μ):

    "G" Gaussian  F(x) = Φ(t / s)                           s = standard deviation
    "L" Laplacian F(x) = ½ exp(t / s)        (t < 0)         s = diversity b (variance 2 s²)
                        1 − ½ exp(−t / s)    (t ≥ 0)
    "S" logistic  F(x) = sigmoid(t / s)                      s = logistic scale (variance π² s² / 3)

The entropy layer builds its integer tables from exactly these definitions and from the scale range
[SCALE_MIN, SCALE_MAX] (log-spaced grid); both numbers live in lcf.constants, which both layers read.

Each bin is evaluated on the side of the mean where it lies (the "symmetric trick": v = |ŷ − μ| and both bin edges
are mapped to the left tail), so that tail probabilities are differences of small, accurately computed numbers instead
of differences of numbers close to one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lcf.constants import SCALE_MAX, SCALE_MIN

LIKELIHOOD_MIN = 1e-9

_SQRT_HALF = math.sqrt(0.5)


def gaussian_cdf(t: Tensor) -> Tensor:
    """Φ(t), accurate in the left tail (erfc)."""
    return 0.5 * torch.erfc(-_SQRT_HALF * t)


def laplacian_cdf(t: Tensor) -> Tensor:
    """CDF of the unit Laplacian, accurate in both tails."""
    left = 0.5 * torch.exp(torch.clamp(t, max=0.0))
    right = 1.0 - 0.5 * torch.exp(-torch.clamp(t, min=0.0))
    return torch.where(t < 0, left, right)


def logistic_cdf(t: Tensor) -> Tensor:
    return torch.sigmoid(t)


_CDF = {"G": gaussian_cdf, "L": laplacian_cdf, "S": logistic_cdf}


def family_cdf(family: str, x: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """F(x) of one family with the given mean and scale (float; for tests and table building)."""
    return _CDF[family]((x - mean) / scale)


def component_bin_mass(family: str, y: Tensor, mean: Tensor, scale: Tensor) -> Tensor:
    """F(y + ½) − F(y − ½) for one family, evaluated in the left tail (all three are symmetric about the mean)."""
    v = torch.abs(y - mean)
    cdf = _CDF[family]
    upper = cdf((0.5 - v) / scale)
    lower = cdf((-0.5 - v) / scale)
    return upper - lower


def mixture_likelihood(y: Tensor, weights: Tensor, means: Tensor, scales: Tensor, families: tuple[str, ...]) -> Tensor:
    """P(y) of a K-component mixture.

    y: (B, M, h, w); weights, means, scales: (B, M, K, h, w) with the component axis 2 (see ``MixtureTensors``).
    Returns (B, M, h, w), clamped below at LIKELIHOOD_MIN.
    """
    y = y.unsqueeze(2)
    total = torch.zeros_like(y.squeeze(2))
    for family in dict.fromkeys(families):  # one call per family, over all its components at once
        idx = [k for k, f in enumerate(families) if f == family]
        sl = slice(idx[0], idx[-1] + 1) if idx == list(range(idx[0], idx[-1] + 1)) else idx
        mass = component_bin_mass(family, y, means[:, :, sl], scales[:, :, sl])
        total = total + (weights[:, :, sl] * mass).sum(dim=2)
    return torch.clamp(total, min=LIKELIHOOD_MIN)


class _BoundedIdentity(torch.autograd.Function):
    """Clamp to [lo, hi] whose gradient still flows where it points back into the range (CompressAI's LowerBound)."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: float, hi: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return torch.clamp(x, lo, hi)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        pass_through = ((x >= ctx.lo) | (grad < 0)) & ((x <= ctx.hi) | (grad > 0))
        return grad * pass_through.to(grad.dtype), None, None


def bounded(x: Tensor, lo: float, hi: float) -> Tensor:
    """torch.clamp(x, lo, hi) in value; a gradient that would move x back into [lo, hi] is kept."""
    if not torch.is_grad_enabled() or not x.requires_grad:
        return torch.clamp(x, lo, hi)
    return _BoundedIdentity.apply(x, lo, hi)
