"""Training data held on the training device: decoded once, drawn there.

    folders ─ thread pool: decode every image once ─ cut into tiles of tile x tile ─ one uint8 tensor (K, T, T, 3)
            ─ to the device, once ─ each step, on the device: K indices, crop offsets, flips, transposes ─ one gather
              ─ float (B, 3, crop, crop) in [0, 1]

The training shards are 256x256 crops, so with the default tile of 256 every file is one tile; larger images give
several non-overlapping tiles, smaller ones none (they are counted as skipped). Every random choice is drawn on the
device from torch's default generator, so a training step reads nothing from the host and can be captured in a CUDA
graph with its data (``lcf.train.step``); the same seed gives the same batches, eager or graphed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from lcf.errors import TrainError
from lcf.train.data import find_images


@dataclass(frozen=True)
class FolderTiles:
    """What one data folder gave: its name (e.g. ``shard-03``), files found, tiles cut, files too small or
    unreadable."""

    folder: str
    files: int
    tiles: int
    skipped: int

    def to_dict(self) -> dict:
        return {"folder": self.folder, "files": self.files, "tiles": self.tiles, "skipped": self.skipped}


def _decode(path: Path) -> np.ndarray | None:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def tiles_of(image: np.ndarray, tile: int) -> list[np.ndarray]:
    """The non-overlapping ``tile`` x ``tile`` tiles of an (H, W, 3) image, row by row (none if it is smaller)."""
    h, w = image.shape[:2]
    return [
        image[i : i + tile, j : j + tile] for i in range(0, h - tile + 1, tile) for j in range(0, w - tile + 1, tile)
    ]


def load_tiles(
    folders: Sequence[str | os.PathLike], tile: int, threads: int = 0
) -> tuple[np.ndarray, list[FolderTiles]]:
    """Decode every image below ``folders`` with a pool of ``threads`` (0: one per CPU, at most 32), cut it into tiles;
    return the tiles as one (K, tile, tile, 3) uint8 array (folders in the given order, files sorted) and one
    :class:`FolderTiles` per folder. TrainError when a folder holds no image or no tile at all is cut."""
    workers = threads or min(32, os.cpu_count() or 1)
    stacks: list[np.ndarray] = []
    report = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for folder in folders:
            files = find_images([folder])
            if not files:
                raise TrainError(f"no image files in {folder}")
            cut = [tiles_of(img, tile) if img is not None else [] for img in pool.map(_decode, files)]
            tiles = [t for per_file in cut for t in per_file]
            report.append(FolderTiles(Path(folder).name, len(files), len(tiles), sum(1 for c in cut if not c)))
            if tiles:
                stacks.append(np.stack(tiles))
    if not stacks:
        raise TrainError(f"no image in {', '.join(map(str, folders))} is at least {tile}x{tile} pixels")
    return np.concatenate(stacks), report


class DeviceCrops:
    """Tiles held on the device as one uint8 tensor (K, T, T, 3), and batches drawn from them there.

    :meth:`draw` picks, per sample, a tile, a crop offset within it, a horizontal and a vertical flip and a transpose
    (the 8 symmetries of the square), all with ``torch.randint`` on the device, and gathers the crop in one indexing
    operation: no host work and no host read, the same values eager or in a CUDA graph for the same seed."""

    def __init__(self, tiles: Tensor, crop: int) -> None:
        if tiles.dtype != torch.uint8 or tiles.dim() != 4 or tiles.shape[3] != 3 or tiles.shape[1] != tiles.shape[2]:
            raise TrainError(f"tiles must be uint8 (K, T, T, 3), got {tuple(tiles.shape)} {tiles.dtype}")
        if not 0 < crop <= tiles.shape[1] or crop % 64:
            raise TrainError(f"--crop must be a multiple of 64 of at most the tile size {tiles.shape[1]}, got {crop}")
        self.tiles = tiles.contiguous()
        self.crop = crop
        self.count, self.tile = tiles.shape[0], tiles.shape[1]
        self._flat = self.tiles.view(-1, 3)
        self._grid = torch.arange(crop, device=tiles.device)

    @property
    def device(self) -> torch.device:
        return self.tiles.device

    def _gather(self, index: Tensor, top: Tensor, left: Tensor, views: Tensor) -> Tensor:
        """Crops (B, 3, crop, crop) float in [0, 1]: tile ``index``, offset (``top``, ``left``), symmetry ``views``
        (bit 0: flip left-right, bit 1: flip up-down, bit 2: transpose; applied to the crop)."""
        c, b = self.crop, index.shape[0]
        rows = self._grid.view(1, c, 1).expand(b, c, c)
        cols = self._grid.view(1, 1, c).expand(b, c, c)
        flip_lr, flip_ud, swap = (((views >> k) & 1).bool().view(b, 1, 1) for k in range(3))
        rows, cols = torch.where(swap, cols, rows), torch.where(swap, rows, cols)
        rows = torch.where(flip_ud, c - 1 - rows, rows)
        cols = torch.where(flip_lr, c - 1 - cols, cols)
        flat = (index.view(b, 1, 1) * self.tile + top.view(b, 1, 1) + rows) * self.tile + left.view(b, 1, 1) + cols
        return self._flat[flat].permute(0, 3, 1, 2).float().div_(255.0)

    def draw(self, batch: int) -> Tensor:
        """A random batch (B, 3, crop, crop), drawn and cut on the device."""
        dev, room = self.device, self.tile - self.crop + 1
        index = torch.randint(self.count, (batch,), device=dev)
        top = torch.randint(room, (batch,), device=dev)
        left = torch.randint(room, (batch,), device=dev)
        views = torch.randint(8, (batch,), device=dev)
        return self._gather(index, top, left, views)

    def view(self, index: Tensor, views: Tensor) -> Tensor:
        """The centred crop of tiles ``index`` under symmetries ``views`` (deterministic: validation, caches)."""
        offset = torch.full_like(index, (self.tile - self.crop) // 2)
        return self._gather(index, offset, offset, views)


def to_device(tiles: np.ndarray, device: torch.device) -> Tensor:
    """The tiles as one uint8 tensor on ``device`` (a single copy)."""
    return torch.from_numpy(np.ascontiguousarray(tiles)).to(device)
