"""Hyper networks h_a, h_s (Cheng et al. 2020) and the factorized density of ẑ (Ballé et al. 2018, App. 6.1).

h_a, y (M, h, w) → z (Mz, h/4, w/4): conv3x3 · LReLU · conv3x3 · LReLU · conv3x3/2 · LReLU · conv3x3 · LReLU · conv3x3/2
h_s, ẑ → T1 (2M, h, w):               conv3x3 · LReLU · subpel×2 · LReLU · conv3x3 · LReLU · subpel×2 · LReLU · conv3x3

ẑ is coded directly as round(z) (no median shift); its probability is the factorized density below.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import conv3x3, subpel_conv3x3
from .likelihood import LIKELIHOOD_MIN


def hyper_analysis(M: int, N: int, Mz: int) -> nn.Sequential:
    return nn.Sequential(
        conv3x3(M, N), nn.LeakyReLU(inplace=True),
        conv3x3(N, N), nn.LeakyReLU(inplace=True),
        conv3x3(N, N, stride=2), nn.LeakyReLU(inplace=True),
        conv3x3(N, N), nn.LeakyReLU(inplace=True),
        conv3x3(N, Mz, stride=2),
    )  # fmt: skip


def hyper_synthesis(M: int, N: int, Mz: int) -> nn.Sequential:
    """h_s; its output T1 has 2M channels and the resolution of y."""
    w = N * 3 // 2
    return nn.Sequential(
        conv3x3(Mz, N), nn.LeakyReLU(inplace=True),
        subpel_conv3x3(N, N, 2), nn.LeakyReLU(inplace=True),
        conv3x3(N, w), nn.LeakyReLU(inplace=True),
        subpel_conv3x3(w, w, 2), nn.LeakyReLU(inplace=True),
        conv3x3(w, 2 * M),
    )  # fmt: skip


class FactorizedDensity(nn.Module):
    """Non-parametric, per-channel density of z (CompressAI's EntropyBottleneck, without medians).

    Per channel, a small monotone network maps x to the logit of a CDF:
        logits = x;  for each layer: logits = softplus(H) · logits + b,  then logits += tanh(a) ⊙ tanh(logits)
    (the last layer has no tanh term). softplus keeps every matrix positive, so the CDF is increasing.
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        self.channels = channels
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cdf(self, values: Tensor) -> Tensor:
        """values: (C, 1, n) → logits of the CDF at values, (C, 1, n). Runs in values' dtype and device."""
        like = {"dtype": values.dtype, "device": values.device}
        logits = values
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            logits = torch.matmul(F.softplus(matrix.to(**like)), logits) + bias.to(**like)
            if i < len(self.factors):
                logits = logits + torch.tanh(self.factors[i].to(**like)) * torch.tanh(logits)
        return logits

    def _per_channel(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        b, c, h, w = x.shape
        return x.permute(1, 0, 2, 3).reshape(c, 1, b * h * w), (c, b, h, w)

    @staticmethod
    def _back(v: Tensor, shape: tuple[int, ...]) -> Tensor:
        return v.reshape(shape).permute(1, 0, 2, 3)

    def cdf(self, x: Tensor) -> Tensor:
        """P(Z ≤ x) per element, x: (B, Mz, h, w)."""
        v, shape = self._per_channel(x)
        return self._back(torch.sigmoid(self._logits_cdf(v)), shape)

    def likelihood(self, z: Tensor) -> Tensor:
        """P(z − ½ < Z ≤ z + ½) per element, clamped below at LIKELIHOOD_MIN; z noisy (training) or rounded."""
        v, shape = self._per_channel(z)
        lower = self._logits_cdf(v - 0.5)
        upper = self._logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail where sigmoid is accurate
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return torch.clamp(self._back(lik, shape), min=LIKELIHOOD_MIN)

    @torch.no_grad()
    def pmf(self, bound: int) -> Tensor:
        """Float64 probability mass of each integer z in [−bound, bound] per channel: (Mz, 2·bound + 1).

        Computed in float64 on the CPU; the mass outside the range (the escape/tail mass) is 1 − row sum.
        Entropy tables are built from this at export time.
        """
        values = torch.arange(-bound, bound + 1, dtype=torch.float64).view(1, 1, -1).expand(self.channels, 1, -1)
        lower = self._logits_cdf(values - 0.5)
        upper = self._logits_cdf(values + 0.5)
        sign = -torch.sign(lower + upper)
        return torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).squeeze(1)
