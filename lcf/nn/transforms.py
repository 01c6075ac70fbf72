"""Core transforms g_a (encoder) and g_s (decoders: the teacher, and students that drop some of its modules), after
Cheng et al. 2020 with the paper's DRMs (Fig. 3).

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


#: The modules of the teacher's g_s, in order (lcf.nn.students draws them): "A" attention, "R" residual modules, which
#: a student may drop; without the residual ones the first up-sampling block reads the M latent channels itself.
SYNTHESIS_ROLES = ("attn_M", "res_M", "up1", "res1", "up2", "attn_N", "res2", "up3", "res3", "out")
_ATTENTION_ROLES = frozenset({"attn_M", "attn_N"})
_RESIDUAL_ROLES = frozenset({"res_M", "res1", "res2", "res3"})


def synthesis_roles(attention: bool = True, residual: bool = True) -> list[str]:
    """The teacher layout position of each module of a g_s with (or without) attention and residual modules."""
    return [
        role
        for role in SYNTHESIS_ROLES
        if (attention or role not in _ATTENTION_ROLES) and (residual or role not in _RESIDUAL_ROLES)
    ]


def synthesis_transform(N: int, M: int, *, attention: bool = True, residual: bool = True) -> nn.Sequential:
    """g_s: mirror of g_a with up-sampling residual blocks (sub-pixel convolution) and IGDN, ŷ·inv_gain (B, M, h, w)
    -> x̂ (B, 3, 16h, 16w). The teacher has every module; a student (lcf.nn.students) may leave out the attention
    or the residual modules (``attention``, ``residual``), with filter count N of its own."""
    make = {
        "attn_M": lambda: SimplifiedAttention(M),
        "res_M": lambda: ResidualBlock(M, N),
        "up1": lambda: ResidualBlockUpsample(N if residual else M, N, 2),
        "res1": lambda: ResidualBlock(N, N),
        "up2": lambda: ResidualBlockUpsample(N, N, 2),
        "attn_N": lambda: SimplifiedAttention(N),
        "res2": lambda: ResidualBlock(N, N),
        "up3": lambda: ResidualBlockUpsample(N, N, 2),
        "res3": lambda: ResidualBlock(N, N),
        "out": lambda: subpel_conv3x3(N, 3, 2),
    }
    return nn.Sequential(*(make[role]() for role in synthesis_roles(attention, residual)))
