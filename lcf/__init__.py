"""lcf: a learned image codec and its .lcf file format.

    import lcf

    data = lcf.encode("photo.png", quality=4.5)       # any image Pillow reads, a PIL image or a numpy array -> bytes
    image = lcf.decode(data)                          # bytes (or a path) -> PIL image: RGB, RGBA, L or LA
    codec = lcf.Codec(device="cuda")                  # load the weights once, code many images

    from PIL import Image
    import lcf.pillow                                 # registers the Pillow plugin (or lcf.register(...)):
    Image.open("photo.lcf").save("photo.png")         # Image.open / im.save("x.lcf", quality=4)

Importing lcf is cheap and changes nothing outside lcf: PyTorch is imported the first time an image is encoded or
decoded (``lcf.Codec`` and ``lcf.api`` are loaded on first use), the Pillow plugin is registered by ``import
lcf.pillow`` or :func:`lcf.register` (as pillow-heif's opener), and a codec, when it is made, asks PyTorch to back
its large CPU tensors with huge pages where Linux offers them on request (:mod:`lcf.hugepages`; large images code
much faster; ``THP_MEM_ALLOC_ENABLE=0`` in the environment turns it off). The file-level functions the command line
uses are in :mod:`lcf.api`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from lcf.errors import (
    CorruptDataError,
    FormatError,
    LcfError,
    LcfIOError,
    LimitError,
    ModelMismatchError,
    UnreachableTargetError,
    UnsupportedImageError,
    UsageError,
)

if TYPE_CHECKING:
    from PIL import Image

    from lcf.codec import Codec
    from lcf.container import Limits

__version__ = "0.1.0"


def encode(
    image: Any,
    quality: float = 4.0,
    *,
    decoder: str | None = None,
    device: str = "cpu",
    weights: str | os.PathLike[str] | None = None,
    effort: int = 0,
) -> bytes:
    """An image (a path, the file's bytes, a PIL image or a numpy array) -> the bytes of a .lcf file.

    ``quality`` 1..7 (continuous); ``decoder`` the decoder to recommend in the header; ``device`` "cpu" or "cuda[:N]"
    for the transforms; ``weights`` a weights folder (default: the bundled one); ``effort`` 0..3, encode time spent
    on a better latent: a smaller file at equal PSNR, while at the same quality both size and PSNR change (0 =
    fastest; :mod:`lcf.effort`). Raises an :class:`LcfError`.
    """
    from lcf import api

    return api.encode_image(image, quality=quality, decoder=decoder, device=device, weights=weights, effort=effort)


def decode(
    data: bytes | str | os.PathLike[str],
    *,
    decoder: str | None = None,
    device: str = "cpu",
    weights: str | os.PathLike[str] | None = None,
    limits: Limits | None = None,
) -> Image.Image:
    """The bytes of a .lcf file, or its path -> a PIL image (mode RGB, RGBA, L or LA; ICC/EXIF/XMP in ``info``).

    ``decoder`` overrides the file's recommended decoder; ``limits`` (:class:`lcf.container.Limits`) guards memory.
    Raises an :class:`LcfError` (FormatError, CorruptDataError, LimitError, ModelMismatchError, ...).
    """
    from lcf import api

    if isinstance(data, (str, os.PathLike)):
        data = api.read_bytes(data, limits)
    return api.decode_bytes(data, decoder=decoder, device=device, weights=weights, limits=limits)


def __getattr__(name: str) -> Any:
    """``lcf.Codec`` and the submodules import PyTorch; load them only when first used. ``lcf.register`` is
    :func:`lcf.pillow.register`: importing lcf.pillow registers the Pillow plugin, calling it sets its options."""
    if name == "register":
        from lcf.pillow import register

        return register
    if name == "Codec":
        from lcf.codec import Codec

        return Codec
    if name == "api":
        import importlib

        return importlib.import_module("lcf.api")
    raise AttributeError(f"module 'lcf' has no attribute {name!r}")


__all__ = [
    "Codec",
    "CorruptDataError",
    "FormatError",
    "LcfError",
    "LcfIOError",
    "LimitError",
    "ModelMismatchError",
    "UnreachableTargetError",
    "UnsupportedImageError",
    "UsageError",
    "__version__",
    "decode",
    "encode",
    "register",
]
