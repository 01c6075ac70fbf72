"""Encoder effort: how long the encoder searches for a better latent for the image (torch-free, so the API and the
CLI can check it without loading the networks). What it buys: a smaller file at equal PSNR; at the same quality both
the size and the PSNR change (refinement optimises that level's rate-distortion trade-off, not the size alone).

Effort 0 codes g_a's latents as they are; effort e > 0 refines them for ``EFFORT_ITERATIONS[e]`` iterations
(lcf.nn.refine). Like ``cwebp -m`` or ``avifenc --speed``, it costs encode time only: any decoder decodes every
file the same way, whatever effort wrote it. Measured sizes and times per level: docs/BENCHMARKS.md, "Encoder effort".
"""

from __future__ import annotations

from lcf.errors import UsageError

EFFORT_ITERATIONS = (0, 8, 16, 32)
MAX_EFFORT = len(EFFORT_ITERATIONS) - 1
DEFAULT_EFFORT = 0


def check_effort(effort: int) -> int:
    """``effort`` if it is an integer 0..MAX_EFFORT, else UsageError."""
    if isinstance(effort, bool) or not isinstance(effort, int) or not 0 <= effort <= MAX_EFFORT:
        raise UsageError(f"effort must be an integer from 0 (fastest) to {MAX_EFFORT} (slowest; smallest files at "
                         f"equal PSNR), got {effort!r}")
    return effort
