"""Training data: random crops with flips from folders of images.

Kodak is for evaluation only; point this at training folders (e.g. ``../shared/data/train/shard-00``).
All images are decoded once into memory as uint8 (a 500-crop shard of 256x256 is ~100 MB), then every batch is a
random crop + flip of random images, drawn from a seeded generator so that a resumed run continues the same stream.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def find_images(folders: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """All image files below ``folders``, sorted for reproducibility."""
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            files.append(folder)
            continue
        files.extend(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(files)


def load_images(files: list[Path], min_side: int) -> list[np.ndarray]:
    """Decode every file to an (H, W, 3) uint8 array; skip those smaller than ``min_side``."""
    images = []
    for path in files:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        if min(rgb.shape[:2]) >= min_side:
            images.append(rgb)
    return images


@dataclass
class CropSampler:
    """Draws batches of random ``crop``x``crop`` patches with random horizontal/vertical flips."""

    images: list[np.ndarray]
    crop: int
    batch: int
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.images:
            raise ValueError(f"no training image is at least {self.crop} pixels on its short side")
        self.rng = np.random.default_rng(self.seed)

    def state(self) -> dict:
        return dict(self.rng.bit_generator.state)

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def next(
        self, device: torch.device | str = "cpu", memory_format: torch.memory_format = torch.contiguous_format
    ) -> torch.Tensor:
        """A float batch in [0, 1], shape (batch, 3, crop, crop), on ``device``: the crops travel as uint8 and become
        float there (a quarter of the bytes to a GPU; the same values on the CPU)."""
        out = np.empty((self.batch, self.crop, self.crop, 3), dtype=np.uint8)
        for b in range(self.batch):
            img = self.images[self.rng.integers(len(self.images))]
            h, w = img.shape[:2]
            i = self.rng.integers(h - self.crop + 1)
            j = self.rng.integers(w - self.crop + 1)
            patch = img[i : i + self.crop, j : j + self.crop]
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            if self.rng.random() < 0.5:
                patch = patch[::-1]
            out[b] = patch
        batch = torch.from_numpy(out).to(device, non_blocking=True).permute(0, 3, 1, 2)
        # contiguous NCHW by default: torch 2.13 segfaults in the backward of a strided 1x1 conv on channels_last
        # input on the CPU; CUDA training may ask for channels_last
        return batch.contiguous(memory_format=memory_format).float().div_(255.0)
