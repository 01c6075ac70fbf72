"""LcfModel: the network of Fu et al. 2023 (Fig. 3) with variable-rate gains, as fixed in docs/DESIGN.md.

    x ─ g_a ─ ·gain(q) ─ y ─ h_a ─ z ─ round ─ ẑ ─ h_s ─ T1 ─┬─ PEN1 ─────────────── GLLMM θ1 (anchors)
                         │                                   └─ PEN2 ◄─ ctx(ŷ₁) ──── GMM θ2 (non-anchors)
                         └ round ─ ŷ ─ ·inv_gain(q) ─ g_s ─ x̂

Training (``forward``): the rate of y uses y + U(−½, ½) under (θ1, θ2); the rate of z uses z + U(−½, ½) under the
factorized density; g_s, h_s and ctx read straight-through rounded values (round(v) in value, identity in gradient),
so θ1 comes from h_s(ẑ) alone and θ2 from h_s(ẑ) and ctx over the rounded anchors, exactly as the two-pass decoder
computes them. In eval mode the rates use the rounded values.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from lcf.errors import UsageError
from lcf.manifest import DecoderArch, ModelConfig  # ModelConfig is defined there, with the bounds of a manifest

from .context import CheckerboardContext, anchor_mask, split
from .gain import QualityGain
from .hyper import FactorizedDensity, hyper_analysis, hyper_synthesis
from .likelihood import mixture_likelihood
from .pen import AnchorPEN, MixtureTensors, NonAnchorPEN
from .students import build_decoder, check_decoder_name, teacher_arch
from .tiling import analyse_tiled, synthesise_blocks, synthesise_tiled
from .transforms import analysis_transform

_INITS = (
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "zeros_",
    "ones_",
    "constant_",
)  # the nn.init functions that modules' constructors call
_INIT_LOCK = threading.Lock()
_SKIPPING = threading.local()


def _nan_unless_skipping(init: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def wrapper(tensor: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if not getattr(_SKIPPING, "on", False):
            return init(tensor, *args, **kwargs)
        if tensor.device.type == "cpu":  # through NumPy: one thread (PyTorch's fill_ is parallel, which costs here)
            tensor.detach().numpy().fill(float("nan"))
        else:
            with torch.no_grad():
                tensor.fill_(float("nan"))
        return tensor

    return wrapper


@contextlib.contextmanager
def weights_to_load() -> Iterator[None]:
    """Modules built in this thread inside the block get NaN where ``torch.nn.init`` would draw their random
    initial parameters (Conv2d, ConvTranspose2d, the deformable convolutions...): for networks whose every parameter
    is then loaded from a weights folder, it saves PyTorch's random number generation (about 30 ms of a codec's
    start-up, issue 21), and a parameter that was not loaded makes NaN rather than a plausible output. Values that
    constructors compute themselves (GDN's β and γ, the gains, the factorized density) are kept. Other threads are
    unaffected: ``torch.nn.init``'s functions are wrapped only for the block and call through outside this thread."""
    with _INIT_LOCK:
        saved = {name: getattr(nn.init, name) for name in _INITS}
        for name, init in saved.items():
            setattr(nn.init, name, _nan_unless_skipping(init))
        _SKIPPING.on = True
        try:
            yield
        finally:
            _SKIPPING.on = False
            for name, init in saved.items():
                setattr(nn.init, name, init)


def ste_round(v: Tensor) -> Tensor:
    """round(v) in value, identity in gradient (straight-through estimator)."""
    return v + (torch.round(v) - v).detach()


def _float(theta: MixtureTensors) -> tuple[Tensor, Tensor, Tensor]:
    return theta.weights.float(), theta.means.float(), theta.scales.float()


def _with_noise(v: Tensor) -> Tensor:
    return v + torch.empty_like(v).uniform_(-0.5, 0.5)


class LcfModel(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        N, M, Mz = config.N, config.M, config.Mz
        self.g_a = analysis_transform(N, M)
        self.h_a = hyper_analysis(M, N, Mz)
        self.h_s = hyper_synthesis(M, N, Mz)
        self.ctx = CheckerboardContext(M, 2 * M)
        self.pen_anchor = AnchorPEN(M)
        self.pen_nonanchor = NonAnchorPEN(M)
        self.z_density = FactorizedDensity(Mz)
        self.gain = QualityGain(len(config.levels), M)
        self.decoder_archs: dict[str, DecoderArch] = {"teacher": teacher_arch(N, M)}
        self.decoders = nn.ModuleDict({"teacher": build_decoder(self.decoder_archs["teacher"])})

    # -- training ---------------------------------------------------------------------------------------------
    def forward(self, x: Tensor, quality: Tensor, decoder: str = "teacher") -> dict[str, Any]:
        """x (B, 3, H, W) in [0, 1], H and W multiples of 64; quality (B,) in [1, L].

        Returns x_hat (not clamped, for the loss), y_hat (rounded gained latent, straight-through; for the λ2·|ŷ|
        term), likelihoods {"y": (B, M, H/16, W/16), "z": (B, Mz, H/64, W/64)} and params {"anchor": θ1 (GLLMM),
        "nonanchor": θ2 (GMM)} as MixtureTensors at all positions (for distillation).
        """
        y = self.analyse(x, quality)
        z = self.h_a(y)
        with torch.autocast(z.device.type, enabled=False):
            z_lik = self.z_density.likelihood((_with_noise(z) if self.training else torch.round(z)).float())
        t1 = self.h_s(ste_round(z))
        y_hat = ste_round(y)
        anchors, _ = split(y_hat)
        theta1 = self.pen_anchor(t1)
        theta2 = self.pen_nonanchor(t1, self.ctx(anchors))
        y_rate = _with_noise(y) if self.training else torch.round(y)
        with torch.autocast(y.device.type, enabled=False):  # likelihoods in float32 also under bf16 autocast
            lik_anchor = mixture_likelihood(y_rate.float(), *_float(theta1), theta1.families)
            lik_nonanchor = mixture_likelihood(y_rate.float(), *_float(theta2), theta2.families)
        is_anchor = anchor_mask(y.shape[-2], y.shape[-1], device=y.device)
        y_lik = torch.where(is_anchor, lik_anchor, lik_nonanchor)
        x_hat = self._decoder(decoder)(y_hat * self.gain.inv_gain(quality))
        return {
            "x_hat": x_hat,
            "y_hat": y_hat,
            "likelihoods": {"y": y_lik, "z": z_lik},
            "params": {"anchor": theta1, "nonanchor": theta2},
        }

    # -- inference pieces ---------------------------------------------------------------------------------------
    def analyse(self, x: Tensor, quality: Tensor, tile: int | None = None) -> Tensor:
        """y = g_a(x) · gain(q), float; the coded symbols are round(y). ``tile``: run g_a's modules from full
        resolution to H/8 in tiles of this many of their output pixels (lcf.nn.tiling.analyse_tiled)."""
        return self.apply_gain(self.analyse_ungained(x, tile), quality)

    def analyse_ungained(self, x: Tensor, tile: int | None = None) -> Tensor:
        """g_a(x), before the quality's gain: what every quality shares (``apply_gain`` makes y of it)."""
        return analyse_tiled(self.g_a, x, tile) if tile else self.g_a(x)

    def apply_gain(self, features: Tensor, quality: Tensor) -> Tensor:
        """y = features · gain(q), with ``features`` from :meth:`analyse_ungained`."""
        return features * self.gain.gain(quality)

    def hyper_analyse(self, y: Tensor) -> Tensor:
        """z = h_a(y), float; the coded symbols are round(z)."""
        return self.h_a(y)

    def synthesise(
        self,
        y_hat: Tensor,
        quality: Tensor,
        decoder: str = "teacher",
        coded: Tensor | None = None,
        tile: int | None = None,
        upsamplings: int | None = None,
    ) -> Tensor:
        """x̂ = g_s(ŷ · inv_gain(q)), clamped to [0, 1]; ``coded`` (M,) bool: the channel bitmap, whose all-zero
        channels the first layer of g_s then skips; ``tile``: run g_s's last modules (from its ``upsamplings``-th
        last up-sampling one, lcf.nn.tiling.tile_plan) in tiles of this many of their input pixels. Both give the
        same result up to float rounding."""
        g_s, y = self._decoder(decoder), y_hat * self.gain.inv_gain(quality)
        out = synthesise_tiled(g_s, y, tile, coded, upsamplings)
        return out.clamp_(0.0, 1.0)  # in place: g_s's own output, read by nothing

    def synthesise_blocks(
        self,
        y_hat: Tensor,
        quality: Tensor,
        decoder: str = "teacher",
        coded: Tensor | None = None,
        tile: int | None = None,
        upsamplings: int | None = None,
        block: int | None = None,
        layout: torch.memory_format = torch.contiguous_format,
    ) -> Iterator[tuple[int, int, Tensor]]:
        """:meth:`synthesise` a block of at most ``block`` x ``block`` latent pixels at a time
        (lcf.nn.tiling.synthesise_blocks): ``(top, left, part)`` with ``part`` x̂ from output pixel ``(top, left)``,
        clamped to [0, 1]; the same result up to float rounding at the peak memory of one block. ``y_hat`` may be
        the integer symbols: each block is made float, scaled by the quality's gain and put in ``layout`` on its own
        (the same values as scaling the whole ŷ at once)."""
        g_s, gain = self._decoder(decoder), self.gain.inv_gain(quality)

        def prepare(piece: Tensor) -> Tensor:
            return piece.to(torch.float32, memory_format=layout) * gain

        for top, left, part in synthesise_blocks(g_s, y_hat, block, tile, coded, upsamplings, prepare):
            yield top, left, part.clamp_(0.0, 1.0)  # in place: g_s's own output, read by nothing

    def add_decoder(self, name: str, arch: DecoderArch) -> nn.Module:
        """Register (or replace) decoder ``name``: a g_s built from ``arch`` (lcf.nn.students.build_decoder)."""
        if isinstance(arch, DecoderArch) and arch.M != self.config.M:
            raise UsageError(f"decoder {name!r} reads M = {arch.M} latent channels, the model has {self.config.M}")
        self.decoders[check_decoder_name(name)] = build_decoder(arch)
        self.decoder_archs[name] = arch
        return self.decoders[name]

    def _decoder(self, name: str) -> nn.Module:
        if name not in self.decoders:
            raise UsageError(f"unknown decoder {name!r}; this model has {sorted(self.decoders)}")
        return self.decoders[name]
