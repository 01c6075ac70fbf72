"""Validation of a training checkpoint: the float model's estimated rate and its PSNR on held-out images.

    python -m lcf.train eval --run runs/cpu --images ../shared/data/kodak --max-images 4 [--qualities 1,4,7]
                             [--against OTHER_RUN]

For each quality: the mean over the images of bpp = -log2 of the likelihoods of ŷ and ẑ (rounded, as in eval mode)
per pixel, and the PSNR of the (unclamped) reconstruction of the teacher g_s; images are padded to multiples of 64
by repeating the last row and column, as the codec does, and measured on the padded size. No entropy coding: it
reads a checkpoint of ``lcf.train.loop``, not a weights folder. For a distillation run it measures the pinned
teacher and, on the same latents, the run's student decoder (``students``: PSNR per quality).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lcf.bench.bdrate import bd_rate
from lcf.bench.runner import list_images, load_rgb
from lcf.manifest import DecoderArch
from lcf.train.checkpoint import load_checkpoint
from lcf.train.distill import is_distill_checkpoint, load_teacher
from lcf.train.losses import rate_distortion_loss

PAD = 64


def evaluate(run: str | Path, images: str | Path, qualities: list[float], max_images: int | None = None) -> dict:
    """{"step": int, "images": int, "points": {quality: (mean bpp, mean PSNR)}, "students": {name: {quality: PSNR}}}"""
    model, meta = load_teacher(run)
    ckpt = load_checkpoint(run)
    students = []
    if is_distill_checkpoint(ckpt):
        model.add_decoder(ckpt["name"], DecoderArch.from_dict(ckpt["arch"])).load_state_dict(ckpt["student_state"])
        students.append(ckpt["name"])
    model.eval()
    files = list_images(images)[:max_images]
    points: dict[float, tuple[float, float]] = {}
    student_psnr: dict[str, dict[float, float]] = {name: {} for name in students}
    for q in qualities:
        bpp, psnr = [], []
        extra: dict[str, list[float]] = {name: [] for name in students}
        for path in files:
            x = torch.from_numpy(np.array(load_rgb(path))).permute(2, 0, 1)[None].to(torch.float32).div(255.0)
            h, w = x.shape[-2:]
            x = F.pad(x, (0, -w % PAD, 0, -h % PAD), mode="replicate")
            quality = torch.tensor([float(q)])
            with torch.inference_mode():
                out = model(x, quality)
                terms = rate_distortion_loss(x, out, torch.tensor([1.0]), 0.0)
                y_in = out["y_hat"] * model.gain.inv_gain(quality)
                for name in students:  # the same latents as the teacher's; unclamped, like its PSNR above
                    x_s = model.decoders[name](y_in)
                    extra[name].append(-10.0 * np.log10(max(float((x_s - x).pow(2).mean()), 1e-10)))
            bpp.append(float(terms.bpp_y[0] + terms.bpp_z[0]))
            psnr.append(float(terms.psnr[0]))
        points[q] = (float(np.mean(bpp)), float(np.mean(psnr)))
        for name in students:
            student_psnr[name][q] = float(np.mean(extra[name]))
    return {"step": meta["step"], "images": len(files), "points": points, "students": student_psnr}


def format_result(result: dict) -> str:
    cells = "  ".join(f"q{q:g} {b:.3f} bpp / {p:.2f} dB" for q, (b, p) in result["points"].items())
    lines = [f"step {result['step']} ({result['images']} images): {cells}"]
    for name, psnr in result.get("students", {}).items():
        lines.append(f"  student {name}: " + "  ".join(f"q{q:g} {p:.2f} dB" for q, p in psnr.items()))
    return "\n".join(lines)


def bd_rate_between(reference: dict, test: dict) -> float:
    """BD-rate (pchip, PSNR; percent, negative = ``test`` saves bits) between two :func:`evaluate` results of the same
    qualities; NaN when fewer than two qualities or no overlap."""
    qualities = sorted(reference["points"])
    if sorted(test["points"]) != qualities:
        raise ValueError("the two evaluations measured different qualities")
    ref, new = reference["points"], test["points"]
    return bd_rate(
        [ref[q][0] for q in qualities],
        [ref[q][1] for q in qualities],
        [new[q][0] for q in qualities],
        [new[q][1] for q in qualities],
    )
