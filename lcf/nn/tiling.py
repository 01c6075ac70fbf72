"""The transforms in tiles: g_a's first, highest-resolution modules and g_s's last ones run on overlapping tiles, so
that coding a large image holds their activations for one tile at a time instead of the whole image.

Every module of g_s is convolutional (stride-1 convolutions, sub-pixel up-sampling, pointwise non-linearities):
its output at a pixel depends on its input within a fixed radius r, the *halo*. Cut the input into tiles, extend
each tile by r input pixels on every side that has a neighbour (the image's own borders keep the zero padding of
the whole-image pass), run the modules, and keep the tile's core of the output: that is the whole-image output,
up to float rounding (a convolution routine may sum in another order for another shape).

    ŷ ─ head: g_s up to its second-last up-sampling module, whole image ─ f (H/4) ─┬─ tile + halo ─ tail ─ core ─┐
                                                                                  ├─ tile + halo ─ tail ─ core ─┼─ x̂
                                                                                  └─ ...                        ─┘

The tail (for the teacher: RBUp ×2, RB, subpel ×2) holds 60–70 % of g_s's time and about three quarters of its
peak memory (benchmarks/large_images.py); the head runs at H/16..H/4. Starting the tail one up-sampling earlier
(H/8, ``upsamplings`` = 3) lowers a large decode's peak further but costs g_s time (the attention module at H/4
widens the teacher's halo from 3 to 6 tail pixels; docs/BENCHMARKS.md, "Large images"): the codec does so only for
images beyond 16 Mi pixels (lcf.resources.synthesis_upsamplings). The halo is measured, not declared:
:func:`dependency_radius` back-propagates from one output pixel block and reads how far the gradient reaches, so
any student architecture gets its own. g_a is the mirror image (:func:`analyse_tiled`), with a fixed halo: its
deformable offsets are learnt.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .students import is_upsampling, synthesise_coded


@dataclass(frozen=True)
class TilePlan:
    """How to run one g_s in tiles: ``g_s[:split]`` whole, ``g_s[split:]`` (the tail) tile by tile."""

    split: int  # index of the first tail module
    halo: int  # tail input pixels each tile reads beyond its core, on every side
    scale: int  # tail output pixels per tail input pixel, per axis


_PLANS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int], TilePlan | None]] = weakref.WeakKeyDictionary()


TAIL_UPSAMPLINGS = 2  # g_s's tail: from its second-last up-sampling module on (H/4 for the shipped decoders)


def tile_plan(g_s: nn.Sequential, latent_channels: int, upsamplings: int | None = None) -> TilePlan | None:
    """The tiling of ``g_s`` (cached per module object and depth): its tail starts at the ``upsamplings``-th
    up-sampling module from the end, or at the earliest one that leaves a head; None when g_s has fewer than two
    up-sampling modules or none but the first could start the tail (nothing would be left to run whole).
    ``upsamplings`` None: TAIL_UPSAMPLINGS."""
    upsamplings = TAIL_UPSAMPLINGS if upsamplings is None else upsamplings
    key = (upsamplings, latent_channels)
    cached = _PLANS.setdefault(g_s, {})
    if key in cached:
        return cached[key]
    ups = [i for i, m in enumerate(g_s) if is_upsampling(m)]
    starts = [i for i in ups if i > 0][-upsamplings:]  # where the tail may start: something must stay in the head
    plan = None
    if len(ups) >= 2 and starts:
        split = starts[0]
        param = next(g_s.parameters())
        with torch.no_grad():
            probe = torch.zeros(1, latent_channels, 1, 1, dtype=param.dtype, device=param.device)
            f = g_s[:split](probe)
            scale = g_s[split:](f).shape[-1] // f.shape[-1]
        plan = TilePlan(split=split, halo=dependency_radius(g_s[split:], f.shape[1], scale), scale=scale)
    cached[key] = plan
    return plan


def dependency_radius(module: nn.Module, channels: int, scale: int, trials: int = 3, limit: int = 256) -> int:
    """How many input pixels away the output of ``module`` (a fully convolutional network up-sampling by ``scale``)
    still depends on its input: the largest distance (in input pixels, per axis) at which the gradient of the
    output block of the centre input pixel is non-zero, over ``trials`` random inputs."""
    param = next(module.parameters())
    size, radius = 15, 0
    while True:
        centre = size // 2
        for seed in range(trials):
            gen = torch.Generator(device="cpu").manual_seed(seed)
            with torch.inference_mode(False), torch.enable_grad():  # the codec synthesises in inference mode
                x = torch.randn(1, channels, size, size, generator=gen).to(param.device, param.dtype)
                x.requires_grad_(True)
                out = module(x)
                block = out[:, :, centre * scale : (centre + 1) * scale, centre * scale : (centre + 1) * scale]
                (grad,) = torch.autograd.grad(block.sum(), x)
            reach = torch.nonzero(grad.abs().sum(dim=(0, 1)))
            if reach.numel() == 0:
                raise ValueError("the module's output does not depend on its input")
            radius = max(radius, int((reach - centre).abs().max()))
        if radius < centre:
            return radius
        if size > limit:
            raise ValueError(f"the module's dependency radius exceeds {limit // 2} input pixels")
        size = 2 * size + 1


def run_tiled(module: nn.Module, x: Tensor, tile: int, halo: int, scale: int = 1, down: int = 1) -> Tensor:
    """``module(x)`` computed on tiles, stitched together. Positions count in cells of ``down`` input pixels, which
    are ``scale`` output pixels (g_s's tail: 1 and 4; g_a's head: 4 and 1); each tile is ``tile`` x ``tile`` cells,
    read with ``halo`` more cells on every side (clipped at the image's borders). Same values up to float rounding
    when the halo covers the module's dependency radius (:func:`dependency_radius`)."""
    if tile < 1:
        raise ValueError(f"tile must be at least 1 cell, got {tile}")
    _, _, h, w = x.shape
    if h % down or w % down:
        raise ValueError(f"a {w}x{h} input does not divide into cells of {down} pixels")
    h, w = h // down, w // down
    layout = (
        torch.channels_last
        if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1
        else (torch.contiguous_format)
    )
    out: Tensor | None = None
    for top in range(0, h, tile):
        bottom = min(top + tile, h)
        t0, t1 = max(0, top - halo), min(h, bottom + halo)
        for left in range(0, w, tile):
            right = min(left + tile, w)
            l0, l1 = max(0, left - halo), min(w, right + halo)
            part = module(x[:, :, t0 * down : t1 * down, l0 * down : l1 * down].contiguous(memory_format=layout))
            if out is None:
                out = part.new_empty(x.shape[0], part.shape[1], h * scale, w * scale)
            out[:, :, top * scale : bottom * scale, left * scale : right * scale] = part[
                :, :, (top - t0) * scale : (bottom - t0) * scale, (left - l0) * scale : (right - l0) * scale
            ]
    assert out is not None
    return out


def synthesise_tiled(
    g_s: nn.Sequential, y: Tensor, tile: int | None, coded: Tensor | None = None, upsamplings: int | None = None
) -> Tensor:
    """g_s(y) with its tail (:func:`tile_plan`) in tiles of ``tile`` tail-input pixels (the whole pass when ``tile``
    is None, the image fits in one tile or g_s has no plan). ``coded``: the channel bitmap, whose all-zero channels
    the first layer skips (:func:`lcf.nn.students.synthesise_coded`)."""
    plan = tile_plan(g_s, y.shape[1], upsamplings) if tile else None
    head = g_s if plan is None else g_s[: plan.split]
    f = head(y) if coded is None else synthesise_coded(head, y, coded)
    if plan is None:
        return f
    tail = g_s[plan.split :]
    assert tile is not None  # a plan is made only for a tile
    if f.shape[-2] <= tile and f.shape[-1] <= tile:
        return tail(f)
    return run_tiled(tail, f, tile, plan.halo, scale=plan.scale)


_RADII: weakref.WeakKeyDictionary[nn.Module, dict[int, tuple[int, int] | None]] = weakref.WeakKeyDictionary()


def synthesis_reach(g_s: nn.Sequential, latent_channels: int) -> tuple[int, int] | None:
    """(radius, scale) of the whole ``g_s`` (cached per module object): how many latent pixels away its output still
    depends on ŷ (:func:`dependency_radius`; 11 for the shipped teacher, 3 to 11 for its students) and its output
    pixels per latent pixel (16). None when the reach is not local (beyond :func:`dependency_radius`'s limit): such a
    g_s runs whole."""
    cached = _RADII.setdefault(g_s, {})
    if latent_channels not in cached:
        param = next(g_s.parameters())
        with torch.no_grad():
            probe = torch.zeros(1, latent_channels, 1, 1, dtype=param.dtype, device=param.device)
            scale = g_s(probe).shape[-1]
        try:
            cached[latent_channels] = (dependency_radius(g_s, latent_channels, scale), scale)
        except ValueError:
            cached[latent_channels] = None
    return cached[latent_channels]


def synthesise_blocks(
    g_s: nn.Sequential,
    y: Tensor,
    block: int | None,
    tile: int | None,
    coded: Tensor | None = None,
    upsamplings: int | None = None,
    prepare: Callable[[Tensor], Tensor] | None = None,
) -> Iterator[tuple[int, int, Tensor]]:
    """g_s(y) a block at a time: ``(top, left, part)``, ``part`` the output at output pixel ``(top, left)``. The
    latent is cut into the fewest blocks of at most ``block`` x ``block`` latent pixels (evenly sized); each block is
    read with g_s's whole reach (:func:`synthesis_reach`) more on every side that has a neighbour and synthesised by
    :func:`synthesise_tiled`, and its core kept: the whole pass's output up to float rounding, at a peak memory of
    one block's activations however large the image (docs/BENCHMARKS.md, "Large images"). One block (the whole
    image) when ``block`` is None, the latent fits in one or g_s's reach is not local. ``prepare``: what g_s reads
    of a piece of ``y`` (the whole or one block with its reach), in the layout it wants; then ``y`` itself may be the
    integer symbols, and no whole-image float copy of them is made."""
    _, _, h, w = y.shape
    reach = synthesis_reach(g_s, y.shape[1]) if block and (h > block or w > block) else None
    if reach is None:
        yield 0, 0, synthesise_tiled(g_s, y if prepare is None else prepare(y), tile, coded, upsamplings)
        return
    assert block is not None
    halo, scale = reach
    layout = torch.channels_last if y.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    bh, bw = -(-h // -(-h // block)), -(-w // -(-w // block))
    for top in range(0, h, bh):
        bottom, t0 = min(h, top + bh), max(0, top - halo)
        t1 = min(h, bottom + halo)
        for left in range(0, w, bw):
            right, l0 = min(w, left + bw), max(0, left - halo)
            l1 = min(w, right + halo)
            piece = y[:, :, t0:t1, l0:l1]
            # a slice is not in the layout the convolutions' fast paths expect
            piece = piece.contiguous(memory_format=layout) if prepare is None else prepare(piece)
            part = synthesise_tiled(g_s, piece, tile, coded, upsamplings)
            yield (
                top * scale,
                left * scale,
                part[:, :, (top - t0) * scale : (bottom - t0) * scale, (left - l0) * scale : (right - l0) * scale],
            )


# -- g_a ---------------------------------------------------------------------------------------------------------------

HEAD_DOWNSAMPLINGS = 3  # g_a's head: its modules up to and including its third down-sampling one (to H/8)
ANALYSIS_HALO = 6  # cells of 8 input pixels: 48 pixels; see analyse_tiled


def _is_downsampling(module: nn.Module) -> bool:
    stride = getattr(module, "stride", 1)
    return (stride if isinstance(stride, int) else stride[0]) > 1


def analyse_tiled(
    g_a: nn.Sequential, x: Tensor, tile: int, halo: int | None = None, downsamplings: int | None = None
) -> Tensor:
    """g_a(x) with its head (the modules up to its ``downsamplings``-th down-sampling one: full resolution to H/8,
    nearly all of its time and memory) in tiles of ``tile`` x ``tile`` head output pixels (2**downsamplings input
    pixels each), read with ``halo`` more on every side; the rest on the whole image.

    Unlike g_s, g_a's reach is not fixed: its deformable convolutions sample at learnt offsets. With the shipped
    weights, tiles of 8 cells with a halo of 5 cells (40 input pixels) gave the whole pass's latents up to float
    rounding on kodim01 and kodim13 (max |Δy| 1e-4, no symbol changed; 4 cells: 3e-3; 3 cells: 14 symbols changed;
    ``benchmarks/analysis_halo.py``); the default is 6 cells. Where an offset reaches further, that tile samples
    zeros instead of its neighbours: the latents there differ a little from the whole pass's, and the file is as
    valid (an encoder's choice: decoders never run g_a). ``halo`` None: ANALYSIS_HALO; ``downsamplings`` None:
    HEAD_DOWNSAMPLINGS.
    """
    halo = ANALYSIS_HALO if halo is None else halo
    downsamplings = HEAD_DOWNSAMPLINGS if downsamplings is None else downsamplings
    downs = [i for i, m in enumerate(g_a) if _is_downsampling(m)]
    cell = 2**downsamplings
    if len(downs) < downsamplings or x.shape[-2] <= cell * tile and x.shape[-1] <= cell * tile:
        return g_a(x)
    split = downs[downsamplings - 1] + 1
    return g_a[split:](run_tiled(g_a[:split], x, tile, halo, down=cell))
