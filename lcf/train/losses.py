"""The rate-distortion loss of the paper, Eq. (1), for variable-rate training.

    L = λ·255²·MSE(x, x̂) + bpp(ŷ) + bpp(ẑ) + λ2·‖ŷ‖₁ / pixels

λ is per sample: each sample of a batch is trained at its own quality level, so one set of weights learns every
level (gain units). The rate terms are -log2 of the training-time likelihoods, per pixel of the input image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossTerms:
    loss: torch.Tensor  # scalar to minimise
    mse: torch.Tensor  # (B,) per-sample MSE on [0, 1] pixels
    bpp_y: torch.Tensor  # (B,)
    bpp_z: torch.Tensor  # (B,)
    l1: torch.Tensor  # (B,) ‖ŷ‖₁ per pixel

    @property
    def psnr(self) -> torch.Tensor:
        return -10.0 * torch.log10(self.mse.clamp_min(1e-10))


def rate_distortion_loss(x: torch.Tensor, out: dict, lam: torch.Tensor, lam_l1: float | torch.Tensor) -> LossTerms:
    """``lam`` is the per-sample λ of Eq. (1), shape (B,); ``lam_l1`` is λ2 (a number, or a device scalar)."""
    batch = x.shape[0]
    pixels = x.shape[2] * x.shape[3]
    mse = (out["x_hat"].float() - x.float()).pow(2).flatten(1).mean(1)
    bits_y = -torch.log2(out["likelihoods"]["y"].float()).flatten(1).sum(1)
    bits_z = -torch.log2(out["likelihoods"]["z"].float()).flatten(1).sum(1)
    bpp_y = bits_y / pixels
    bpp_z = bits_z / pixels
    l1 = out["y_hat"].float().abs().flatten(1).sum(1) / pixels
    per_sample = lam * 255.0**2 * mse + bpp_y + bpp_z + lam_l1 * l1
    return LossTerms(per_sample.sum() / batch, mse.detach(), bpp_y.detach(), bpp_z.detach(), l1.detach())
