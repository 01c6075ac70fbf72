"""Decoders: the teacher synthesis transform g_s and its distilled students (paper Sec. III-D; Sec. IV, Cfg. 1–4).

**One entropy model, many synthesis transforms.** g_a, h_a, h_s, ctx, PEN1 and PEN2 are shared by every decoder;
a student replaces g_s only. So every file decodes with every shipped decoder, and the bits never depend on the
choice (the paper also distils θ1 and θ2 into a student entropy model; lcf keeps one entropy model, so its
distillation transfers the reconstruction and the intermediate features of g_s instead, see ``lcf.train.distill``).

A decoder is described by a :class:`lcf.manifest.DecoderArch`, stored in the weights manifest
(``decoders.<name>.arch``, parsed and bounded by ``lcf.manifest``)::

    {"kind": "cfg3", "N": 48, "M": 96, "attention": true, "residual": true}

``kind`` is a label (which recipe made it); N, M, attention and residual fix the network. The teacher layout
(paper Fig. 3 / Fig. 8); a student without attention drops the modules marked A, one without residual blocks those
marked R (its first up-sampling block then reads the M latent channels itself, RBUp(M→N)):

    Attn(M) · RB(M→N) · RBUp×2 · RB(N) ┆ RBUp×2 · Attn(N) · RB(N) ┆ RBUp×2 · RB(N) ┆ subpel(N→3)×2
       A         R                R    f1          A         R   f2            R   f3

f1, f2, f3 (at H/8, H/4, H/2: what enters the 2nd and 3rd up-sampling blocks and the last sub-pixel convolution) are
the intermediate features distillation matches.

Recipes (:func:`student_arch`, from the teacher's N and M; M, the latent width, is the model's and never changes):

    teacher  the teacher's g_s                         cfg1  same architecture, distilled (the paper's Step 2)
    cfg2     attention and residual modules removed     cfg3  every filter count N × 0.75     cfg4  N × 0.5

All-zero latent channels (bit 0 in the channel bitmap CMAP) can be skipped by the first layer of any of them:
:func:`synthesise_coded`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lcf.errors import UsageError
from lcf.manifest import DECODER_NAME, DecoderArch

from .layers import ResidualBlock, ResidualBlockUpsample, SimplifiedAttention
from .transforms import synthesis_roles, synthesis_transform

KINDS = ("teacher", "cfg1", "cfg2", "cfg3", "cfg4")
_WIDTH = {"teacher": 1.0, "cfg1": 1.0, "cfg2": 1.0, "cfg3": 0.75, "cfg4": 0.5}


def check_decoder_name(name: str) -> str:
    """A decoder name as the header stores it: 1..16 ASCII letters, digits, '-' or '_'."""
    if not isinstance(name, str) or DECODER_NAME.fullmatch(name) is None:
        raise UsageError(f"a decoder name is 1..16 ASCII letters, digits, '-' or '_', got {name!r}")
    return name


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def student_arch(kind: str, N: int, M: int) -> DecoderArch:
    """The arch of recipe ``kind`` (one of KINDS) for a teacher of widths N (g_s) and M (latent)."""
    if kind not in KINDS:
        raise UsageError(f"unknown decoder recipe {kind!r}; choose one of {', '.join(KINDS)}")
    full = kind != "cfg2"
    return DecoderArch(kind=kind, N=_even(N * _WIDTH[kind]), M=M, attention=full, residual=full)


def teacher_arch(N: int, M: int) -> DecoderArch:
    return student_arch("teacher", N, M)


def _typed(arch: DecoderArch) -> DecoderArch:
    if not isinstance(arch, DecoderArch):
        raise TypeError(f"a decoder is built from an lcf.manifest.DecoderArch, got {type(arch).__name__}")
    return arch


def build_decoder(arch: DecoderArch) -> nn.Sequential:
    """The synthesis transform g_s of ``arch``: ŷ·inv_gain (B, M, h, w) -> x̂ (B, 3, 16h, 16w), built by
    :func:`lcf.nn.transforms.synthesis_transform` (the one definition of g_s, teacher and students alike)."""
    return synthesis_transform(_typed(arch).N, arch.M, attention=arch.attention, residual=arch.residual)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- intermediate features (distillation) --------------------------------------------------------------------------


def is_upsampling(module: nn.Module) -> bool:
    if isinstance(module, ResidualBlockUpsample):
        return True
    return isinstance(module, nn.Sequential) and any(isinstance(m, nn.PixelShuffle) for m in module)


def synthesis_features(g_s: nn.Sequential, y: Tensor) -> tuple[Tensor, list[Tensor]]:
    """(x̂ unclamped, [f1, f2, f3]): the output and the features entering every up-sampling module but the first."""
    feats: list[Tensor] = []
    seen_up = False
    out = y
    for module in g_s:
        if is_upsampling(module):
            if seen_up:
                feats.append(out)
            seen_up = True
        out = module(out)
    return out, feats


def feature_channels(g_s: nn.Sequential, M: int) -> list[int]:
    """Channel counts of f1, f2, f3 (from a tiny forward pass, so it holds for any layout)."""
    param = next(g_s.parameters())
    with torch.no_grad():
        _, feats = synthesis_features(g_s, torch.zeros(1, M, 1, 1, dtype=param.dtype, device=param.device))
    return [f.shape[1] for f in feats]


# -- skipping the all-zero latent channels ----------------------------------------------------------------------------


def _layout(x: Tensor) -> torch.memory_format:
    """The memory format of ``x``: channels_last or the default. The coded channels keep y's: oneDNN's
    convolutions in the default layout over a channel count such as 83 sum in an order that depends on the number of
    threads (pixels differed by ±1 between 1 and 2 threads), in channels_last they do not
    (``benchmarks/thread_determinism.py``)."""
    return (
        torch.channels_last
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        else torch.contiguous_format
    )


def _coded_conv(conv: nn.Conv2d, y_c: Tensor, idx: Tensor, like: Tensor | None = None) -> Tensor:
    """conv(y) computed from the coded channels y_c = y[:, idx] only: the weight's input channels sliced to idx.

    Equal to conv(y) up to float rounding because the other input channels of y are zero. With no channel coded,
    the bias alone, in the layout of ``like`` (y; default y_c).
    """
    if conv.groups != 1 or conv.stride != (1, 1):
        raise ValueError("only stride-1, ungrouped convolutions read the latent")
    if idx.numel() == 0:  # nothing coded: only the bias is left
        b, _, h, w = y_c.shape
        bias = conv.bias if conv.bias is not None else y_c.new_zeros(conv.out_channels)
        layout = _layout(y_c if like is None else like)
        return bias.view(1, -1, 1, 1).expand(b, -1, h, w).contiguous(memory_format=layout)
    weight = conv.weight.index_select(1, idx)
    return F.conv2d(y_c, weight, conv.bias, 1, conv.padding, conv.dilation)


def _coded_residual_unit(unit: nn.Module, y: Tensor, y_c: Tensor, idx: Tensor) -> Tensor:
    head, rest = unit.conv[0], unit.conv[1:]
    return F.relu(rest(_coded_conv(head, y_c, idx, y)) + y)


def _coded_first_layer(module: nn.Module, y: Tensor, y_c: Tensor, idx: Tensor) -> Tensor | None:
    """The first module of g_s applied to y, its convolutions that read y reading only y_c; None if not handled."""
    if isinstance(module, SimplifiedAttention):
        trunk = _coded_residual_unit(module.trunk[0], y, y_c, idx)
        mask = _coded_residual_unit(module.mask[0], y, y_c, idx)
        return y + module.trunk[1:](trunk) * torch.sigmoid(module.mask[1:](mask))
    if isinstance(module, ResidualBlock):
        out = F.leaky_relu(_coded_conv(module.conv1, y_c, idx, y), 0.01)
        out = F.leaky_relu(module.conv2(out), 0.01)
        return out + (_coded_conv(module.skip, y_c, idx, y) if module.skip is not None else y)
    if isinstance(module, ResidualBlockUpsample):
        out = F.leaky_relu(module.subpel[1](_coded_conv(module.subpel[0], y_c, idx, y)), 0.01)
        return module.igdn(module.conv(out)) + module.upsample[1](_coded_conv(module.upsample[0], y_c, idx, y))
    return None


def latent_reading_convs(g_s: nn.Sequential) -> list[nn.Conv2d]:
    """The convolutions of g_s that read ŷ directly: those :func:`synthesise_coded` slices to the coded channels."""
    first = g_s[0]
    if isinstance(first, SimplifiedAttention):
        return [first.trunk[0].conv[0], first.mask[0].conv[0]]
    if isinstance(first, ResidualBlock):
        return [first.conv1] + ([first.skip] if first.skip is not None else [])
    if isinstance(first, ResidualBlockUpsample):
        return [first.subpel[0], first.upsample[0]]
    return []


def synthesise_coded(g_s: nn.Sequential, y: Tensor, coded: Tensor | Iterable[bool]) -> Tensor:
    """g_s(y) when only the channels marked in ``coded`` (M,) can be non-zero (the channel bitmap, CMAP).

    The first layer of g_s reads only the coded channels: its convolutions that read y get their weight's input
    channels sliced to the coded ones (paper Sec. III-E / Table II: skip the all-zero channels). The result equals
    g_s(y) up to float rounding; every later layer is unchanged.
    """
    coded = torch.as_tensor(coded, dtype=torch.bool, device=y.device).reshape(-1)
    if coded.numel() != y.shape[1]:
        raise ValueError(f"the channel bitmap has {coded.numel()} entries, y has {y.shape[1]} channels")
    if bool(coded.all()):
        return g_s(y)
    idx = torch.nonzero(coded).reshape(-1)
    y_c = y.index_select(1, idx).contiguous(memory_format=_layout(y))  # index_select drops channels_last
    out = _coded_first_layer(g_s[0], y, y_c, idx)
    if out is None:
        return g_s(y)
    for module in g_s[1:]:
        out = module(out)
    return out


# -- initialising a student from the teacher --------------------------------------------------------------------------


def _roles(arch: DecoderArch) -> list[str]:
    """The teacher layout position of each module of ``arch``'s g_s (see the module docstring)."""
    return synthesis_roles(_typed(arch).attention, arch.residual)


def init_from_teacher(
    student: nn.Sequential, student_arch_: DecoderArch, teacher: nn.Sequential, teacher_arch_: DecoderArch
) -> tuple[int, int]:
    """Copy the teacher's weights into the student, module by module (same layout position).

    A tensor of the same shape is copied; a smaller one gets the teacher's leading slice in every dimension (a
    channel-sliced teacher: sub-pixel channel groups stay whole because channel c occupies rows c·r²..c·r²+r²−1);
    a larger one keeps its random initialisation. Returns (tensors copied or sliced, tensors left random).
    """
    by_role = dict(zip(_roles(teacher_arch_), teacher, strict=True))
    copied = left = 0
    with torch.no_grad():
        for role, module in zip(_roles(student_arch_), student, strict=True):
            source = dict(by_role[role].named_parameters())
            for name, param in module.named_parameters():
                src = source.get(name)
                if (
                    src is None
                    or src.dim() != param.dim()
                    or any(s > t for s, t in zip(param.shape, src.shape, strict=True))
                ):
                    left += 1
                    continue
                param.copy_(src[tuple(slice(0, s) for s in param.shape)])
                copied += 1
    return copied, left
