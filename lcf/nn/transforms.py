"""Core transforms g_a (encoder) and g_s (teacher decoder), after Cheng et al. 2020 with the paper's DRMs (Fig. 3).

g_a, x (3, H, W) → y (M, H/16, W/16):

    DRM(3→N, /2) · RB(N) · DRM(N→N, /2) · Attn(N) · RB(N) · DRM(N→N, /2) · RB(N) · conv3x3(N→M, /2) · Attn(M)

g_s, ŷ (M, H/16, W/16) → x̂ (3, H, W), the mirror with sub-pixel up-sampling and IGDN:

    Attn(M) · RB(M→N) · RBUp(N, ×2) · RB(N) · RBUp(N, ×2) · Attn(N) · RB(N) · RBUp(N, ×2) · RB(N) · subpel(N→3, ×2)
"""

from __future__ import annotations

from torch import nn

from .deform import DeformableResidualModule
from .layers import ResidualBlock, ResidualBlockUpsample, SimplifiedAttention, conv3x3, subpel_conv3x3


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """g_a: four stride-2 stages, three of them deformable residual modules, two simplified attention modules."""
    return nn.Sequential(
        DeformableResidualModule(3, N, stride=2),
        ResidualBlock(N, N),
        DeformableResidualModule(N, N, stride=2),
        SimplifiedAttention(N),
        ResidualBlock(N, N),
        DeformableResidualModule(N, N, stride=2),
        ResidualBlock(N, N),
        conv3x3(N, M, stride=2),
        SimplifiedAttention(M),
    )


def synthesis_transform(N: int, M: int) -> nn.Sequential:
    """g_s (teacher): mirror of g_a with up-sampling residual blocks (sub-pixel convolution) and IGDN."""
    return nn.Sequential(
        SimplifiedAttention(M),
        ResidualBlock(M, N),
        ResidualBlockUpsample(N, N, 2),
        ResidualBlock(N, N),
        ResidualBlockUpsample(N, N, 2),
        SimplifiedAttention(N),
        ResidualBlock(N, N),
        ResidualBlockUpsample(N, N, 2),
        ResidualBlock(N, N),
        subpel_conv3x3(N, 3, 2),
    )
