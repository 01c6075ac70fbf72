"""The options a user passes to lcf (quality, effort, device), each checked in one place (standard library only, so
the API, the CLI and the Pillow plugin check them before PyTorch is imported).

* **quality**: a number from MIN_QUALITY (1, smallest files) to MAX_QUALITY (7, best quality), continuous; a file
  stores it on a 1/256 grid (:func:`lcf.container.snap_quality`), and encoders code with that stored value.
* **effort**: how long the encoder searches for a better latent. What it buys: a smaller file at equal PSNR; at the
  same quality both the size and the PSNR change (refinement optimises that level's rate-distortion trade-off, not
  the size alone). Effort 0 codes g_a's latents as they are; effort e > 0 refines them for ``EFFORT_ITERATIONS[e]``
  iterations (lcf.nn.refine). Like ``cwebp -m`` or ``avifenc --speed``, it costs encode time only: any decoder
  decodes every file the same way, whatever effort wrote it. Measured sizes and times per level: docs/BENCHMARKS.md,
  "Encoder effort".
* **device**: where the float transforms g_a and g_s run: ``cpu``, ``cuda`` or ``cuda:N``. Whether this machine has
  that device is checked when a codec is made (:func:`lcf.resources.torch_device`).
"""

from __future__ import annotations

import math
import numbers
import re

from lcf.constants import DEFAULT_QUALITY, MAX_QUALITY, MIN_QUALITY
from lcf.errors import UsageError

EFFORT_ITERATIONS = (0, 8, 16, 32)
MAX_EFFORT = len(EFFORT_ITERATIONS) - 1
DEFAULT_EFFORT = 0

DEVICES = re.compile(r"cpu|cuda(:\d+)?")


def check_quality(quality: object, *, how: str = "") -> float:
    """``quality`` as a float if it is a number in [MIN_QUALITY, MAX_QUALITY], else UsageError. ``how``: what the
    caller's user should pass instead (e.g. the Pillow plugin's ``quality=5``), added to the message."""
    value = float(quality) if isinstance(quality, numbers.Real) and not isinstance(quality, bool) else math.nan
    if MIN_QUALITY <= value <= MAX_QUALITY:  # false for NaN: not a number, or not a finite one
        return value
    jpeg = " (not the 0..100 of JPEG, WebP or AVIF)" if MAX_QUALITY < value <= 100 else ""
    raise UsageError(
        f"quality must be a number in {MIN_QUALITY:g}..{MAX_QUALITY:g}, from {MIN_QUALITY:g} (smallest "
        f"file) to {MAX_QUALITY:g} (best), default {DEFAULT_QUALITY:g}{jpeg}, got {quality!r}"
        + (f": {how}" if how else "")
    )


def check_effort(effort: object) -> int:
    """``effort`` if it is an integer 0..MAX_EFFORT, else UsageError."""
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort <= MAX_EFFORT:
        raise UsageError(
            f"effort must be an integer from 0 (fastest) to {MAX_EFFORT} (slowest; smallest files at "
            f"equal PSNR), got {effort!r}"
        )
    return effort


def check_device(device: object) -> str:
    """``device`` if it names a device lcf can run on ('cpu', 'cuda', 'cuda:N'), else UsageError. Whether this
    machine has it: :func:`lcf.resources.torch_device`."""
    if not isinstance(device, str) or DEVICES.fullmatch(device) is None:
        raise UsageError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device


__all__ = [
    "DEFAULT_EFFORT",
    "DEFAULT_QUALITY",
    "EFFORT_ITERATIONS",
    "MAX_EFFORT",
    "MAX_QUALITY",
    "MIN_QUALITY",
    "check_device",
    "check_effort",
    "check_quality",
]
