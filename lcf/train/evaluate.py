"""Validation of a training checkpoint: the float model's estimated rate and its PSNR on held-out images.

    python -m lcf.train eval --run runs/cpu --images ../shared/data/kodak --max-images 4 [--qualities 1,4,7]

For each quality: the mean over the images of bpp = -log2 of the likelihoods of ŷ and ẑ (rounded, as in eval mode)
per pixel, and the PSNR of the (unclamped) reconstruction of the teacher g_s; images are padded to multiples of 64
by repeating the last row and column, as the codec does, and measured on the padded size. No entropy coding: it
reads a checkpoint of ``lcf.train.loop`` (or the pinned teacher of a distillation run), not a weights folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lcf.bench.runner import list_images, load_rgb
from lcf.train.distill import load_teacher
from lcf.train.losses import rate_distortion_loss

PAD = 64


def evaluate(run: str | Path, images: str | Path, qualities: list[float], max_images: int | None = None) -> dict:
    """{"step": int, "points": {quality: (mean bpp, mean PSNR)}}"""
    model, meta = load_teacher(run)
    model.eval()
    files = list_images(images)[:max_images]
    points = {}
    for q in qualities:
        bpp, psnr = [], []
        for path in files:
            x = torch.from_numpy(np.array(load_rgb(path))).permute(2, 0, 1)[None].to(torch.float32).div(255.0)
            h, w = x.shape[-2:]
            x = F.pad(x, (0, -w % PAD, 0, -h % PAD), mode="replicate")
            with torch.inference_mode():
                terms = rate_distortion_loss(x, model(x, torch.tensor([float(q)])), torch.tensor([1.0]), 0.0)
            bpp.append(float(terms.bpp_y[0] + terms.bpp_z[0]))
            psnr.append(float(terms.psnr[0]))
        points[q] = (float(np.mean(bpp)), float(np.mean(psnr)))
    return {"step": meta["step"], "images": len(files), "points": points}


def format_result(result: dict) -> str:
    cells = "  ".join(f"q{q:g} {b:.3f} bpp / {p:.2f} dB" for q, (b, p) in result["points"].items())
    return f"step {result['step']} ({result['images']} images): {cells}"
