"""Variable rate with one set of weights: learned per-level channel gains on y (gain units, Cui et al. 2021).

Encoder: y = g_a(x) · gain(q); decoder: g_s(ŷ · inv_gain(q)). Level l = 1..7 is trained with the l-th λ of
``ModelConfig.levels``. A continuous quality q in [1, L] interpolates geometrically between neighbouring levels:

    i = min(floor(q), L − 1),  t = q − i,   gain(q) = gain_i^(1 − t) · gain_(i+1)^t

implemented as a linear interpolation of the stored log-gains, so integer q gives the level's gain exactly.
Initialisation: gain_l = 2^((l − 4) / 2) (a factor √2 per level, ×8 from level 1 to 7), inv_gain_l = 1 / gain_l.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lcf.errors import UsageError


class QualityGain(nn.Module):
    """``check_quality`` (default true) refuses qualities outside [1, L] with a UsageError; checking reads the
    qualities back to the host, so a training step that draws its levels itself on the device turns it off
    (``lcf.train.step.host_checks``) and can then run without waiting for the device (e.g. in a CUDA graph)."""

    def __init__(self, levels: int, channels: int) -> None:
        super().__init__()
        self.levels = levels
        self.check_quality = True
        init = (torch.arange(levels, dtype=torch.float32) - (levels - 1) / 2) * (0.5 * torch.log(torch.tensor(2.0)))
        self.log_gain = nn.Parameter(init.view(levels, 1).repeat(1, channels))
        self.log_inv_gain = nn.Parameter(-init.view(levels, 1).repeat(1, channels))

    def _interpolate(self, table: Tensor, quality: Tensor) -> Tensor:
        q = torch.as_tensor(quality, dtype=table.dtype, device=table.device).reshape(-1)
        if q.numel() == 0 or (self.check_quality and bool(((q < 1) | (q > self.levels) | torch.isnan(q)).any())):
            raise UsageError(f"quality must lie in [1, {self.levels}], got {q.tolist()}")
        if self.levels == 1:
            return torch.exp(table[0]).expand(q.numel(), -1).reshape(q.numel(), -1, 1, 1)
        i = torch.clamp(torch.floor(q), max=self.levels - 1).long()  # 1-based lower level
        t = (q - i.to(q.dtype)).unsqueeze(1)
        log = (1 - t) * table[i - 1] + t * table[i]
        return torch.exp(log).view(q.numel(), -1, 1, 1)

    def gain(self, quality: Tensor) -> Tensor:
        """(B, M, 1, 1) encoder gains for quality (B,) (or a scalar, giving B = 1)."""
        return self._interpolate(self.log_gain, quality)

    def inv_gain(self, quality: Tensor) -> Tensor:
        """(B, M, 1, 1) decoder gains applied to ŷ before g_s."""
        return self._interpolate(self.log_inv_gain, quality)
