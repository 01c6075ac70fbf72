"""Students in the same lease: cfg2, cfg3 and cfg4 distilled from the shipped teacher, all three in one step.

g_a's output does not depend on the quality level (the level enters as the gain after it), so it is computed once
per training tile and view and kept on the device; each step then only draws tiles, views and levels, applies the
gain, rounds, and runs the teacher's g_s (no gradient) and the three students::

    cache[tile, view] = g_a(view of tile)                                    once, float32, on the device
    step: y_in = round(cache[i] · gain(q)) · inv_gain(q) ─┬─ teacher g_s ─ x̂ᵀ, f1ᵀ..f3ᵀ        (no gradient)
                                                          ├─ cfg2 g_s, A ─ x̂, f  ─ loss of Eq. (2) ─ its own Adam
                                                          ├─ cfg3 ...
                                                          └─ cfg4 ...

Each student has its own optimiser, clipping, non-finite flag and EMA (lcf.train.step.OptGroup), so the three
train as they would apart, in one graph. The loss is lcf.train.distill's: λ·255²·MSE(x, x̂ˢ) + λ3·L_KD with the
feature adapters A_k inside each student's module (:class:`StudentPair`), so that data-parallel training sees every
parameter in the forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lcf.manifest import DecoderArch
from lcf.nn import LcfModel
from lcf.nn.students import (
    build_decoder,
    feature_channels,
    init_from_teacher,
    student_arch,
    synthesis_features,
)
from lcf.train.device_data import DeviceCrops
from lcf.train.distill import FeatureAdapters, distill_loss, teacher_g_s
from lcf.train.lease_phase import autocast
from lcf.train.step import DeviceMeters

VIEWS = (0, 1, 4, 5, 2, 3, 6, 7)  # the dihedral views cached first: identity, flip, transpose, ... (device_data)
_IDENTITY = (nn.Identity(), nn.Identity(), nn.Identity())


class StudentPair(nn.Module):
    """A student g_s with its feature adapters A_k (training only): y_in -> (x̂ˢ, [A_k(f_kˢ)])."""

    def __init__(self, g_s: nn.Sequential, adapters: FeatureAdapters) -> None:
        super().__init__()
        self.g_s, self.adapters = g_s, adapters

    def forward(self, y_in: Tensor) -> tuple[Tensor, list[Tensor]]:
        x_s, feats = synthesis_features(self.g_s, y_in)
        return x_s, [adapt(f) for adapt, f in zip(self.adapters, feats, strict=True)]


def make_students(
    names: list[str], teacher: LcfModel, given: Mapping[str, tuple[DecoderArch, nn.Module]], device: torch.device
) -> tuple[dict[str, tuple[DecoderArch, StudentPair]], dict[str, str]]:
    """The student pairs of ``names`` (recipes cfg2..cfg4) for ``teacher``: from ``given`` (the start folder's) when
    it has that name at the recipe's shape, else a channel-sliced teacher. Returns the pairs and how each began."""
    c, g_t = teacher.config, teacher_g_s(teacher)
    teacher_widths = feature_channels(g_t, c.M)
    pairs, how = {}, {}
    for name in names:
        arch = student_arch(name, c.N, c.M)
        g_s = build_decoder(arch)
        if name in given and given[name][0].same_network(arch):
            g_s.load_state_dict(given[name][1].state_dict())
            how[name] = "the start folder's"
        else:
            copied, left = init_from_teacher(g_s, arch, g_t, teacher.decoder_archs["teacher"])
            how[name] = f"a channel-sliced teacher ({copied} tensors copied or sliced, {left} random)"
        adapters = FeatureAdapters(feature_channels(g_s, c.M), teacher_widths)
        pairs[name] = (arch, StudentPair(g_s, adapters).to(device).train())
    return pairs, how


@torch.no_grad()
def cache_features(teacher: LcfModel, tiles: DeviceCrops, views: int, batch: int) -> Tensor:
    """g_a of every tile under each of the first ``views`` of :data:`VIEWS`: (K · views, M, T/16, T/16), float32,
    row k · views + v = tile k, view v."""
    codes = torch.tensor(VIEWS[:views], device=tiles.device)
    index = torch.arange(tiles.count * views, device=tiles.device)
    parts = [teacher.g_a(tiles.view(chunk // views, codes[chunk % views])) for chunk in index.split(batch)]
    return torch.cat(parts)


class StudentObjective:
    """One batch for all students: draws (tile, view, level) on the device, returns one loss per student."""

    def __init__(
        self,
        teacher: LcfModel,
        pairs: dict[str, nn.Module],
        features: Tensor,
        tiles: DeviceCrops,
        views: int,
        batch: int,
        kd_weight: float,
        meters: DeviceMeters,
        precision: str,
    ) -> None:
        self.teacher, self.pairs, self.features, self.tiles = teacher, pairs, features, tiles
        self.views, self.batch, self.kd_weight, self.meters, self.precision = views, batch, kd_weight, meters, precision
        self.codes = torch.tensor(VIEWS[:views], device=tiles.device)
        self.lambdas = torch.tensor(teacher.config.levels, device=tiles.device)

    def __call__(self) -> list[Tensor]:
        dev, b = self.tiles.device, self.batch
        index = torch.randint(self.features.shape[0], (b,), device=dev)
        level = torch.randint(1, len(self.lambdas) + 1, (b,), device=dev)
        x = self.tiles.view(index // self.views, self.codes[index % self.views])
        q, lam = level.float(), self.lambdas[level - 1]
        gain = self.teacher.gain
        with torch.no_grad():
            y_in = torch.round(self.features[index] * gain.gain(q)) * gain.inv_gain(q)
            with autocast(dev, self.precision):
                x_t, feats_t = synthesis_features(teacher_g_s(self.teacher), y_in)
        self.meters.count(level)
        self.meters.step()
        losses = []
        for name, pair in self.pairs.items():
            with autocast(dev, self.precision):
                x_s, feats_s = pair(y_in)
            terms = distill_loss(x, x_s, feats_s, lam, self.kd_weight, x_t, feats_t, _IDENTITY)
            self.meters.add_per_level(f"psnr_{name}", level, terms.psnr)
            self.meters.add(f"loss_{name}", terms.loss)
            losses.append(terms.loss)
        return losses


@torch.no_grad()
def validate_students(
    teacher: LcfModel, students: dict[str, nn.Module], val: DeviceCrops, batch: int
) -> dict[str, float]:
    """Per student and level, on the validation crops through the teacher's encoder (rounded latents):
    ``psnr_<name>_qL`` and ``loss_<name>`` (the mean over levels of λ·255²·MSE); the teacher's as ``teacher``."""
    levels = teacher.config.levels
    nets = {"teacher": teacher.decoders["teacher"], **students}
    was = {name: net.training for name, net in nets.items()}
    sums = torch.zeros(len(nets), 2, len(levels), dtype=torch.float64, device=val.device)
    index = torch.arange(val.count, device=val.device)
    for lv in range(1, len(levels) + 1):
        for chunk in index.split(batch):
            x = val.view(chunk, torch.zeros_like(chunk))
            q = torch.full((chunk.numel(),), float(lv), device=x.device)
            y_in = torch.round(teacher.analyse(x, q)) * teacher.gain.inv_gain(q)
            for i, net in enumerate(nets.values()):
                net.eval()
                mse = (net(y_in) - x).pow(2).flatten(1).mean(1)
                psnr = -10.0 * torch.log10(mse.clamp_min(1e-10))
                sums[i, :, lv - 1] += torch.stack([levels[lv - 1] * 255.0**2 * mse, psnr]).sum(1).double()
    for name, net in nets.items():
        net.train(was[name])
    means = (sums / val.count).cpu().tolist()
    row = {}
    for i, name in enumerate(nets):
        row[f"loss_{name}"] = sum(means[i][0]) / len(levels)
        row.update({f"psnr_{name}_q{lv}": means[i][1][lv - 1] for lv in range(1, len(levels) + 1)})
    return row
