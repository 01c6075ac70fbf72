"""Building blocks of g_a, g_s, h_a and h_s (Cheng et al. 2020, as used in the paper's Fig. 3).

GDN/IGDN (Ballé et al.), residual blocks with and without a stride, up-sampling residual blocks (sub-pixel
convolution) and the simplified attention module. The deformable residual module lives in ``deform.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .likelihood import bounded


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride)


def subpel_conv3x3(cin: int, cout: int, r: int = 2) -> nn.Sequential:
    """3x3 convolution to cout·r² channels, then pixel shuffle (×r up-sampling)."""
    return nn.Sequential(nn.Conv2d(cin, cout * r * r, 3, padding=1), nn.PixelShuffle(r))


class GDN(nn.Module):
    """Generalized divisive normalization: y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²); inverse: multiply instead.

    β and γ are kept non-negative by the reparametrization of Ballé et al. 2018 (stored as sqrt(value + pedestal)).
    """

    _PEDESTAL = 2.0**-36

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        self._beta_bound = (beta_min + self._PEDESTAL) ** 0.5
        self._gamma_bound = self._PEDESTAL**0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + self._PEDESTAL))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + self._PEDESTAL))

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        beta = bounded(self.beta, self._beta_bound, float("inf")) ** 2 - self._PEDESTAL
        gamma = bounded(self.gamma, self._gamma_bound, float("inf")) ** 2 - self._PEDESTAL
        norm = F.conv2d(x * x, gamma.view(c, c, 1, 1), beta)  # in place below: no backward reads it
        return x * (norm.sqrt_() if self.inverse else norm.rsqrt_())


class ResidualBlock(nn.Module):
    """conv3x3 → LReLU → conv3x3 → LReLU, plus the input (1x1 projection when the widths differ)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout)
        self.conv2 = conv3x3(cout, cout)
        self.skip = conv1x1(cin, cout) if cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.conv1(x), 0.01, inplace=True)  # in place: no backward reads a conv's output
        out = F.leaky_relu(self.conv2(out), 0.01, inplace=True)
        return out + (self.skip(x) if self.skip is not None else x)


class ResidualBlockWithStride(nn.Module):
    """Down-sampling residual block: conv3x3/s → LReLU → conv3x3 → GDN, plus a 1x1/s shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.conv2 = conv3x3(cout, cout)
        self.gdn = GDN(cout)
        self.stride = stride
        self.skip = conv1x1(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.conv1(x), 0.01, inplace=True)
        return self.gdn(self.conv2(out)).add_(self.skip(x[..., :: self.stride, :: self.stride]))  # strided 1x1 conv


class ResidualBlockUpsample(nn.Module):
    """Up-sampling residual block: subpel conv ×r → LReLU → conv3x3 → IGDN, plus a sub-pixel shortcut."""

    def __init__(self, cin: int, cout: int, r: int = 2) -> None:
        super().__init__()
        self.subpel = subpel_conv3x3(cin, cout, r)
        self.conv = conv3x3(cout, cout)
        self.igdn = GDN(cout, inverse=True)
        self.upsample = subpel_conv3x3(cin, cout, r)

    def forward(self, x: Tensor) -> Tensor:
        # in place where no backward reads the overwritten tensor: a large image's decoding holds fewer of them
        out = self.igdn(self.conv(F.leaky_relu(self.subpel(x), 0.01, inplace=True)))
        return out.add_(self.upsample(x))


class _ResidualUnit(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            conv1x1(n, n // 2),
            nn.ReLU(inplace=True),
            conv3x3(n // 2, n // 2),
            nn.ReLU(inplace=True),
            conv1x1(n // 2, n),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x).add_(x), inplace=True)  # in place: no backward reads a conv's output


class SimplifiedAttention(nn.Module):
    """Simplified attention module of Cheng et al. 2020: x + trunk(x) · sigmoid(mask(x)), no non-local block."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(_ResidualUnit(n), _ResidualUnit(n), _ResidualUnit(n))
        self.mask = nn.Sequential(_ResidualUnit(n), _ResidualUnit(n), _ResidualUnit(n), conv1x1(n, n))

    def forward(self, x: Tensor) -> Tensor:
        return (self.trunk(x) * torch.sigmoid_(self.mask(x))).add_(x)  # in place where no backward reads it
