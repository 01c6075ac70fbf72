"""What a codec may use of the machine: the device, the memory budget, the tiles and layouts of the transforms, huge
pages. Policy only: none of it changes a symbol or a file's bytes (the layouts and tiles change g_a's latents and
g_s's pixels by float rounding at most; the spec allows ±1 in a decoded pixel). Measurements behind each choice:
docs/BENCHMARKS.md, "Large images and start-up on the CPU".
"""

from __future__ import annotations

import ctypes
import os
import sys

import torch

from lcf import hugepages
from lcf.errors import LimitError, UsageError
from lcf.options import check_device

DEFAULT_MAX_MEMORY = 8 << 30  # bytes; LCF_MAX_MEMORY (GiB) or Codec(max_memory=...) changes it
DEEP_TILES_PIXELS = 16 << 20  # padded pixels beyond which decoding starts g_s's tiles at H/8 (synthesis_upsamplings)


def use_huge_pages() -> None:
    """Ask PyTorch for huge pages where the kernel gives them on request (:mod:`lcf.hugepages`; a
    ``THP_MEM_ALLOC_ENABLE`` already in the environment wins). PyTorch reads the setting at its first CPU allocation:
    a :class:`lcf.codec.Codec` calls this before it builds its model, so it takes effect unless the program had made
    CPU tensors before."""
    hugepages.enable()


def torch_device(device: str) -> torch.device:
    """The torch device for ``device`` ('cpu', 'cuda', 'cuda:N': :func:`lcf.options.check_device`); UsageError where
    this torch build sees no CUDA GPU."""
    check_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} was asked for, but this torch build sees no CUDA GPU; use --device cpu")
    return torch.device(device)


def place(module: torch.nn.Module, device: torch.device, memory_format: torch.memory_format) -> None:
    """``module.to(device, memory_format=...)``: the transforms' parameters on the device in the layout chosen
    below (torch's type stubs lack Module.to's ``memory_format``)."""
    module.to(device, memory_format=memory_format)  # type: ignore[call-overload]


# -- memory --------------------------------------------------------------------------------------------------------


def default_max_memory() -> int:
    """The memory budget in bytes: ``LCF_MAX_MEMORY`` (GiB) if set, else DEFAULT_MAX_MEMORY."""
    value = os.environ.get("LCF_MAX_MEMORY")
    if not value:
        return DEFAULT_MAX_MEMORY
    try:
        return int(float(value) * (1 << 30))
    except ValueError as exc:
        raise UsageError(f"LCF_MAX_MEMORY must be a number of GiB, got {value!r}") from exc


def memory_needed(padded_width: int, padded_height: int, N: int, M: int, decoding: bool = False) -> int:
    """Peak bytes the codec needs for one image of this padded size: 25 % above what ``benchmarks/large_images.py``
    measured with N=64, M=96 for a 12-megapixel image (PyTorch and the weights, ~350 MiB, not counted): ~76 B per
    padded pixel to encode and ~106 to decode, scaled with M + N. The high-resolution layers of g_a and g_s run in
    tiles (lcf.nn.tiling) and the entropy parameters are built a block at a time, so what grows with the image is
    the entropy parameters' stream-order arrays (with M) and the transforms' whole-image tensors at low resolution
    (with N): g_s's at H/4 set decoding's peak, until beyond DEEP_TILES_PIXELS its tiles start at H/8 and decoding
    needs less than encoding (budgeted as encoding)."""
    deep = synthesis_upsamplings(padded_width, padded_height) > 2
    per_pixel = (0.66 if decoding and not deep else 0.48) * (M + N)
    return int(padded_width * padded_height * per_pixel * 1.25)


def refine_memory_needed(padded_width: int, padded_height: int, N: int) -> int:
    """Extra peak bytes of latent refinement (effort > 0): g_s and the entropy networks kept for a backward pass
    (~1.9 kB per padded pixel with N=64 on a Kodak image)."""
    return int(padded_width * padded_height * 32 * N * 1.25)


def check_memory(
    max_memory: int,
    padded_width: int,
    padded_height: int,
    N: int,
    M: int,
    *,
    decoding: bool = False,
    chunk: str | None = None,
    effort: int = 0,
) -> None:
    """LimitError before allocating anything when one image would need more than ``max_memory`` bytes."""
    need = memory_needed(padded_width, padded_height, N, M, decoding)
    at_effort, or_lower = "", ""
    if effort:
        need += refine_memory_needed(padded_width, padded_height, N)
        at_effort, or_lower = f" at effort {effort}", " (or encode it with a lower --effort)"
    if need > max_memory:
        raise LimitError(
            f"{'decoding' if decoding else 'encoding'} a {padded_width}x{padded_height} (padded) image needs "
            f"about {need / (1 << 30):.1f} GiB of "
            f"memory{at_effort}, more than the {max_memory / (1 << 30):.1f} GiB allowed; raise it with "
            f"LCF_MAX_MEMORY=<GiB> (or Codec(max_memory=...)) if this machine has the memory{or_lower}",
            chunk=chunk,
        )


# -- tiles and layouts of the transforms ---------------------------------------------------------------------------


def synthesis_upsamplings(padded_width: int, padded_height: int) -> int:
    """Where g_s's tiled tail starts, in up-sampling modules from its end (lcf.nn.tiling.tile_plan): 2 (H/4) for
    images up to DEEP_TILES_PIXELS, 3 (H/8) beyond. From H/8, g_s's whole-image tensors are 4x smaller for about 12 %
    more of its time (the tail's halo doubles), which is worth it where memory, not time, decides whether an image
    decodes at all."""
    return 3 if padded_width * padded_height > DEEP_TILES_PIXELS else 2


def analysis_memory_format(device: torch.device) -> torch.memory_format:
    """Layout of the analysis transform g_a: channels_last on the CPU, where oneDNN runs its convolutions faster; the
    default layout elsewhere (not measured there). It can change which valid file is written, never how a file
    decodes."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def synthesis_memory_format(device: torch.device) -> torch.memory_format:
    """Layout of the synthesis transforms g_s: channels_last on the CPU too (faster there at every size measured,
    most at large ones). It changes pixels by float rounding only (the spec's ±1), never ŷ."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def analysis_tile(device: torch.device) -> int:
    """Tile side of g_a's tiled head (``lcf.nn.tiling.analyse_tiled``), in its output pixels (H/8). CPU: 128 (1024x1024
    input pixels a tile; images up to that size run whole): as fast as the whole pass at 3 and 12 megapixels, where
    smaller tiles cost time (their halo). CUDA: 256, fewer and larger kernel launches (not measured)."""
    return 128 if device.type == "cpu" else 256


def synthesis_tile(device: torch.device) -> int:
    """Tile side of g_s's tiled modules (``lcf.nn.tiling``), in their input pixels (H/4 for the shipped decoders).
    CPU: 64 (256x256 output pixels a tile): as fast as the whole-image pass or faster, at half its peak memory and
    less. CUDA: 256, fewer and larger kernel launches (not measured)."""
    return 64 if device.type == "cpu" else 256


def bound_heap() -> None:
    """Serve every allocation of 1 MiB or more with its own ``mmap`` from now on in this process (glibc's
    ``mallopt(M_MMAP_THRESHOLD)``; nothing elsewhere), so that what a large decode frees goes back to the system.
    By default glibc raises that threshold (up to 32 MiB) each time a large block is freed, so after a decode's first
    layers its tensors of a few megabytes come from the heap and what they free stays resident, phase after phase
    and block after block of g_s; with it set, a decode in blocks stays near one block's memory, for more page faults
    (docs/BENCHMARKS.md, "Decoding in bounded memory"). The codec calls it only for images beyond one block of g_s."""
    global _heap_bounded
    if _heap_bounded or not sys.platform.startswith("linux"):
        return
    _heap_bounded = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return
    mallopt(M_MMAP_THRESHOLD, 1 << 20)


M_MMAP_THRESHOLD = -3  # glibc's malloc.h
_heap_bounded = False


def synthesis_block(device: torch.device) -> int:
    """Side of the blocks the whole g_s runs in (``lcf.nn.tiling.synthesise_blocks``), in latent pixels: 128 (2048 x
    2048 output pixels; images up to that size run whole), so that a decode's synthesis peaks at one block's
    activations (~0.4 GiB with the teacher, one block measured alone) however large the image. Each block also reads
    g_s's reach around it (11 latent pixels for the teacher): ~21 % more of g_s's work for a 12-megapixel image
    (docs/BENCHMARKS.md, "Decoding in bounded memory"). The same on CUDA (not measured)."""
    return 128


HUGE_IMAGE_PIXELS = 40 << 20  # padded pixels beyond which g_s's blocks shrink to 3/4 of their side


def image_synthesis_block(block: int | None, padded_pixels: int) -> int | None:
    """The side of g_s's blocks for one image: the codec's ``block`` (None: g_s runs whole), or 3/4 of it for images
    beyond HUGE_IMAGE_PIXELS. There the output and ŷ (~4.7 B a pixel) leave little of 1 GiB for one block's
    activations; smaller blocks cost more of g_s's time (their reach), measured in docs/BENCHMARKS.md ("Decoding in
    bounded memory"). A real photo that large peaks in its entropy decoding instead, whatever the block."""
    if block is None or padded_pixels <= HUGE_IMAGE_PIXELS:
        return block
    return max(1, block * 3 // 4)


__all__ = [
    "DEEP_TILES_PIXELS",
    "DEFAULT_MAX_MEMORY",
    "HUGE_IMAGE_PIXELS",
    "analysis_memory_format",
    "analysis_tile",
    "bound_heap",
    "check_memory",
    "default_max_memory",
    "memory_needed",
    "image_synthesis_block",
    "place",
    "refine_memory_needed",
    "synthesis_block",
    "synthesis_memory_format",
    "synthesis_tile",
    "synthesis_upsamplings",
    "torch_device",
    "use_huge_pages",
]
