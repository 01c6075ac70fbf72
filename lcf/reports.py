"""What the file-level operations report (:mod:`lcf.api`, :mod:`lcf.batch`), and the PSNR they measure.

Standard library only (numpy is imported by :func:`psnr` when called), so that the API, the batch converter and the
command line share these types without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lcf.container import ChunkInfo, Header
from lcf.errors import LcfError

if TYPE_CHECKING:
    from lcf.ratecontrol import Outcome


@dataclass(frozen=True)
class EncodeReport:
    """What :func:`lcf.api.encode_file` did. ``bytes`` is the size of the .lcf file; ``bpp`` = bytes * 8 / pixels;
    ``notes`` what was changed in the image to code it (16 -> 8 bits, palette or CMYK -> RGB, ...; :mod:`lcf.image`)."""

    src: Path
    dst: Path
    width: int
    height: int
    bytes: int
    bpp: float
    psnr: float | None
    seconds: float
    notes: tuple[str, ...] = ()
    quality: float | None = None  # stored in the file (the 1/256 grid): the one asked for, or a target's
    target: Outcome | None = None  # what a target came to (lcf.ratecontrol), None without one


@dataclass(frozen=True)
class DecodeReport:
    """What :func:`lcf.api.decode_file` did; ``decoder`` is the name of the decoder (g_s variant) that was used;
    ``notes`` what a user should know (the file's recommended decoder missing from the weights:
    :class:`lcf.errors.DecoderFallbackWarning`)."""

    src: Path
    dst: Path
    width: int
    height: int
    decoder: str
    seconds: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchItem:
    """One file of a batch: ``status`` is "ok", "skipped" (output exists) or "failed" (see ``error``)."""

    src: Path
    dst: Path
    status: str
    error: str | None = None
    exit_code: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class BatchReport:
    items: tuple[BatchItem, ...] = ()
    seconds: float = 0.0

    @property
    def failed(self) -> tuple[BatchItem, ...]:
        return tuple(item for item in self.items if item.status == "failed")


@dataclass(frozen=True)
class FileInfo:
    """What ``lcf info`` shows: the header, the chunks that could be framed, and the first problem, if any."""

    path: Path
    size: int
    header: Header
    chunks: tuple[ChunkInfo, ...]
    error: LcfError | None = field(default=None, compare=False)


def psnr(a, b) -> float:
    """PSNR in dB over all pixels and channels of two uint8 arrays of the same shape (inf when equal): what
    ``EncodeReport.psnr`` and the rate control's PSNR targets measure."""
    import numpy as np

    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


__all__ = ["BatchItem", "BatchReport", "DecodeReport", "EncodeReport", "FileInfo", "psnr"]
