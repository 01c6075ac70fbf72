"""Transparent huge pages for PyTorch's CPU tensors on Linux.

The transforms of a large image allocate and free tensors of hundreds of megabytes, layer after layer. glibc hands
each one out as a fresh ``mmap``, so every layer pays one page fault per 4 KiB it touches: a 12-megapixel photo took
twice as long per pixel to decode as a Kodak image (2-core AMD EPYC). PyTorch can back its large CPU allocations
with 2 MiB pages instead (environment variable ``THP_MEM_ALLOC_ENABLE=1``: allocations of 2 MiB and more are aligned
to 2 MiB and marked ``madvise(MADV_HUGEPAGE)``), 512 times fewer faults: large images decode much faster at the
same peak memory, small ones peak a little higher (``benchmarks/large_images.py``; docs/BENCHMARKS.md, "Large
images").

:func:`enable` turns it on where the kernel leaves huge pages to the program (``madvise`` in
``/sys/kernel/mm/transparent_hugepage/enabled``, the default of most distributions); with ``always`` every large
allocation gets them anyway, with ``never`` (or off Linux) nothing is done. A ``THP_MEM_ALLOC_ENABLE`` already in the
environment is left as it is, so ``THP_MEM_ALLOC_ENABLE=0`` turns this off. PyTorch reads the variable once, at its
first CPU allocation: a :class:`lcf.codec.Codec` calls :func:`enable` (through
:func:`lcf.resources.use_huge_pages`) before it builds its networks, which therefore takes effect unless the program
had already made CPU tensors before its first codec. ``import lcf`` alone changes nothing.

:func:`plan_for` keeps the ordinary pages in a process that will code only smaller images: there, huge pages cost
more than they save (on the 2-core machine of docs/BENCHMARKS.md, "Start-up of one lcf encode": a Kodak image's
first encode in a process took about 0.3 s longer with them, the same afterwards; 3 megapixels gained nothing,
12 megapixels encoded 17 % faster). ``lcf encode`` and ``lcf decode`` call it with their largest input before they
load a codec.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "THP_MEM_ALLOC_ENABLE"
KERNEL_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"
LARGE_IMAGE_PIXELS = 8_000_000  # between the largest size measured without gain (3.1 MP) and the smallest with (12.2)


def kernel_mode(path: str = KERNEL_SETTING) -> str | None:
    """The kernel's transparent-huge-page mode ('always', 'madvise' or 'never'), None where it cannot be read."""
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def enable(path: str = KERNEL_SETTING) -> bool:
    """Ask PyTorch for huge pages where the kernel gives them on request; True if this call set the variable."""
    if VARIABLE in os.environ or not sys.platform.startswith("linux") or kernel_mode(path) != "madvise":
        return False
    os.environ[VARIABLE] = "1"
    return True


def plan_for(pixels: int | None) -> bool:
    """For a process that will code images of at most ``pixels`` (None: unknown, e.g. read from a pipe): below
    LARGE_IMAGE_PIXELS, set ``THP_MEM_ALLOC_ENABLE=0`` so that the codecs made next keep PyTorch's ordinary pages
    (:func:`enable` then leaves it). A variable already set is left as it is; True if this call set it."""
    if pixels is None or pixels >= LARGE_IMAGE_PIXELS or VARIABLE in os.environ:
        return False
    os.environ[VARIABLE] = "0"
    return True
