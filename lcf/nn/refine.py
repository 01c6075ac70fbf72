"""Encoder-side latent refinement: better symbols for the same decoder (Campos et al. 2019; Yang et al. 2020).

A decoder accepts any integers ŷ, ẑ; ``round(g_a(x)·gain(q))`` is only the analysis transform's guess, one network
amortised over all images. Refinement searches near that guess, per image, for latents with a lower
rate-distortion cost under the shipped entropy model and synthesis transform:

    minimise over u:   λ(q)·255²·MSE(x, g_s(round(y)·inv_gain(q))) + bits(round(y)) / pixels,     y = u·gain(q)

with Adam on u (the latent before the gain, so one step size fits every quality level), the linear step-size decay
of Yang et al., and the two surrogates of training: the rate of y + U(−½, ½) under θ1/θ2 (from h_s(round(h_a(y))) and
the context of the rounded anchors) and round() straight-through for g_s. Every iterate, the first included, is also
scored on its rounded latents (that cost is the file's, up to ẑ and the container), and the best one is returned, so
refinement never raises the cost it measures. The rate of ẑ is left out: its density is not shipped, only its
integer tables, and ẑ is about 1 % of a file.

Channels that are all zero after g_a stay zero (the file skips them through its channel bitmap at no cost, so their
rate is not counted); any other channel may become zero, or stay non-zero.

Nothing here touches the bitstream: the file format, the decoder and every decoded pixel are unchanged; only which
valid file an encoder writes changes. Its noise comes from a fixed seed, so an encode is repeatable.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .context import anchor_mask, split
from .likelihood import mixture_likelihood
from .model import LcfModel, ste_round

DEFAULT_STEP = 0.05  # Adam step on u: of 0.02, 0.05, 0.1, 0.2 (kodim01, quality 4, 20 steps) 0.05 gave the lowest cost
SEED = 0


@dataclass(frozen=True)
class RefineResult:
    y: Tensor  # (1, M, h, w) float latent whose rounding is the best iterate
    cost_before: float  # rounded cost of g_a's latent, λ·255²·MSE + bpp(ŷ)
    cost_after: float  # rounded cost of the returned latent (≤ cost_before)
    best_iteration: int  # 0 = g_a's latent was best


def level_lambda(levels: tuple[float, ...], quality: float) -> float:
    """λ of a continuous quality, interpolated like the gains: geometrically between neighbouring levels."""
    n = len(levels)
    if n == 1:
        return float(levels[0])
    i = min(int(math.floor(quality)), n - 1)
    t = quality - i
    return float(math.exp((1 - t) * math.log(levels[i - 1]) + t * math.log(levels[i])))


class EntropyOnDevice(nn.Module):
    """A float copy of the entropy-parameter networks (h_s, ctx, PEN1, PEN2) on the refinement's device; the exact
    integer networks of the codec are untouched by it."""

    def __init__(self, model: LcfModel, device: torch.device) -> None:
        super().__init__()
        self.h_s = copy.deepcopy(model.h_s).to(device)
        self.ctx = copy.deepcopy(model.ctx).to(device)
        self.pen_anchor = copy.deepcopy(model.pen_anchor).to(device)
        self.pen_nonanchor = copy.deepcopy(model.pen_nonanchor).to(device)
        for p in self.parameters():
            p.requires_grad_(False)


def refine_latents(
    model: LcfModel,
    entropy: EntropyOnDevice,
    g_s: nn.Module,
    x: Tensor,
    y: Tensor,
    quality: float,
    iterations: int,
    *,
    height: int,
    width: int,
    step: float = DEFAULT_STEP,
    progress: Callable[[int, int], None] | None = None,
) -> RefineResult:
    """Refine g_a's latent ``y`` (1, M, h, w) of the padded image ``x`` (1, 3, 16h, 16w) in [0, 1] whose real size
    is ``height`` x ``width``; ``g_s`` the decoder the cost is measured with (the file's recommended one; its output is
    not clamped or rounded to 8 bits here, as in training). ``progress(done, total)`` is called after each iteration."""
    device = y.device
    q = torch.tensor([quality], dtype=torch.float32, device=device)
    gain, inv_gain = model.gain.gain(q).detach(), model.gain.inv_gain(q).detach()
    lam = level_lambda(model.config.levels, quality) * 255.0**2
    pixels = height * width
    target = x[..., :height, :width]
    keep = (torch.round(y) != 0).flatten(2).any(2).to(y.dtype).view(1, -1, 1, 1)  # the channel bitmap of g_a's ŷ
    is_anchor = anchor_mask(y.shape[-2], y.shape[-1], device=device)
    noise = torch.Generator(device=device).manual_seed(SEED)
    u = (y.detach() / gain * keep).requires_grad_(True)
    adam = torch.optim.Adam([u], lr=step)

    def costs(u: Tensor, with_surrogate: bool) -> tuple[Tensor, float]:
        y = u * gain * keep
        t1 = entropy.h_s(ste_round(model.h_a(y)))
        y_hat = ste_round(y)
        theta1 = entropy.pen_anchor(t1)
        theta2 = entropy.pen_nonanchor(t1, entropy.ctx(split(y_hat)[0]))
        x_hat = g_s(y_hat * inv_gain)[..., :height, :width]
        distortion = lam * (x_hat - target).pow(2).mean()

        def bits(values: Tensor) -> Tensor:
            lik1 = mixture_likelihood(values, theta1.weights, theta1.means, theta1.scales, theta1.families)
            lik2 = mixture_likelihood(values, theta2.weights, theta2.means, theta2.scales, theta2.families)
            return -(torch.log2(torch.where(is_anchor, lik1, lik2)) * keep).sum()

        with torch.no_grad():
            rounded = float(distortion + bits(y_hat.detach()) / pixels)
        if not with_surrogate:
            return distortion, rounded
        u_noise = torch.empty(y.shape, device=device).uniform_(-0.5, 0.5, generator=noise)
        return distortion + bits(y + u_noise) / pixels, rounded

    best_u, best_cost, best_it = u.detach().clone(), math.inf, 0
    first = math.inf
    for it in range(iterations + 1):
        last = it == iterations
        with torch.set_grad_enabled(not last):
            loss, rounded = costs(u, with_surrogate=not last)
        if it == 0:
            first = rounded
        if rounded < best_cost:
            best_u, best_cost, best_it = u.detach().clone(), rounded, it
        if last:
            break
        for group in adam.param_groups:
            group["lr"] = step * (1 - it / iterations)
        (u.grad,) = torch.autograd.grad(loss, [u])
        adam.step()
        if progress is not None:
            progress(it + 1, iterations)
    return RefineResult(
        y=(best_u * gain * keep).detach(), cost_before=first, cost_after=best_cost, best_iteration=best_it
    )
