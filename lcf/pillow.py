"""Pillow plugin: ``Image.open("x.lcf")`` and ``im.save("x.lcf", quality=4)``, a thin adapter over lcf.api.

Built like Pillow's own QoiImagePlugin/WebPImagePlugin::

    Image.open -> _accept(prefix)   the 8-byte signature 8B 4C 43 46 0D 0A 1A 0A
               -> LcfImageFile._open()   lcf.container.read_container: structure, CRCs, header, ICC/EXIF/XMP
                                         into info; the streams are not decoded. The pixel limit is Pillow's
                                         (Image.MAX_IMAGE_PIXELS), checked by Image.open right after _open, as for
                                         every Pillow format; a file over lcf's file-size limit is a LimitError.
    im.load()  -> lcf.api.decode_bytes()  the whole image, once, with the options given to register()
    im.verify()                           raises what _open found wrong after the header (nothing to decode)
    im.save    -> _save() -> lcf.image.load_image(im) -> lcf.api.encode_image(prepared, quality=, decoder=, effort=)

Damaged files behave as Pillow's own formats do (a truncated PNG opens and fails on load):

    signature or HEAD unreadable     _open raises SyntaxError, so Image.open raises UnidentifiedImageError
    HEAD fine, later chunks damaged  Image.open succeeds (size, mode, lcf_* info); load() and verify() raise the
    (truncation, CRC, chunk order)   CorruptDataError/FormatError, both OSErrors (lcf.errors)
    streams do not decode            load() raises CorruptDataError (an OSError); other weights: ModelMismatchError

Importing this module registers the plugin with the default options; :func:`register` changes them, as
pillow-heif's ``register_heif_opener`` does::

    import lcf.pillow
    lcf.pillow.register(decoder="student-s", device="cuda")

``info`` after open: ``icc_profile``, ``exif``, ``xmp`` (bytes, where the file has them) and ``lcf_quality``,
``lcf_decoder`` (the recommended decoder), ``lcf_model_id`` (hex). Save options:

- ``quality``: lcf's own scale, the same as ``lcf encode -q`` and ``lcf.encode``: any number from 1.0 (smallest file)
  to 7.0 (best), default 4.0; ``im.info["lcf_quality"]`` of an opened file is on it too. It is not the 0..100 scale
  of JPEG, WebP or AVIF: a value outside 1..7 (such as ``quality=95``) raises a ValueError (:class:`UsageError`)
  that says so, and nothing is written.
- ``decoder``: the decoder name to recommend in the header.
- ``effort``: 0..3, encoder effort (lcf.effort): more encode time for a better latent; at equal PSNR the file is
  smaller, at the same quality both size and PSNR change.

What lcf changes in the image to code it (16 -> 8 bits, CMYK or palette -> RGB, an ICC profile dropped, EXIF
orientation applied; :mod:`lcf.image`) is reported by ``warnings.warn`` with :class:`lcf.errors.ConversionWarning`,
one warning per note.

The codec modules are imported only when needed, so that importing lcf does not import torch.
"""

from __future__ import annotations

import importlib
import warnings
from typing import IO, Any

from PIL import Image, ImageFile

from lcf.constants import DEFAULT_QUALITY, EXIF_PREFIX, MAX_QUALITY, MIN_QUALITY, SIGNATURE
from lcf.errors import ConversionWarning, CorruptDataError, FormatError, LcfError
from lcf.options import check_quality

FORMAT = "LCF"
EXTENSION = ".lcf"
MIME = "image/x-lcf"

_options: dict[str, Any] = {"decoder": None, "device": "cpu", "weights": None}


def register(decoder: str | None = None, device: str = "cpu", weights: str | None = None) -> None:
    """Register the plugin with Pillow (open, save, ``.lcf``, ``image/x-lcf``) and set the decoding options.

    ``decoder``: the g_s variant to decode with (None: the one the file recommends); ``device``: where g_s runs;
    ``weights``: a weights folder or file other than the installed ones. Calling it again only changes the options.
    """
    _options.update(decoder=decoder, device=device, weights=weights)
    Image.register_open(FORMAT, LcfImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_mime(FORMAT, MIME)


def _accept(prefix: bytes) -> bool:
    return prefix[:8] == SIGNATURE


class LcfImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "lcf learned image codec"
    _lcf_data: bytes | None = None
    _lcf_error: LcfError | None = None  # what is wrong after a readable HEAD; raised by load() and verify()

    def _open(self) -> None:
        if self.fp is None or not _accept(self.fp.read(len(SIGNATURE))):
            raise SyntaxError("not an lcf file")
        container_api = _require("lcf.container", "read_container")
        # Pixels: Pillow's own bomb check (Image.MAX_IMAGE_PIXELS) runs right after _open, before any decoding.
        limits = container_api.Limits(max_pixels=None)
        limits.check_file_size(_remaining(self.fp) + len(SIGNATURE))
        data = SIGNATURE + self.fp.read()
        try:
            container = container_api.read_container(data, limits)
        except (FormatError, CorruptDataError) as exc:
            header = _readable_header(container_api, data, limits)
            self._lcf_error = exc
            alpha = icc = exif = xmp = None
        else:
            header = container.header
            alpha, icc, exif, xmp = _ancillaries(container)
        gray = getattr(header.color, "name", str(header.color)) == "GRAY8"
        self._mode = ("L" if gray else "RGB") + ("A" if alpha is not None else "")
        self._size = (int(header.width), int(header.height))
        for key, value in (("icc_profile", icc), ("exif", exif), ("xmp", xmp)):
            if value:
                self.info[key] = bytes(value)
        self.info["lcf_quality"] = float(header.quality)
        self.info["lcf_decoder"] = str(header.decoder)
        self.info["lcf_model_id"] = bytes(header.model_id).hex()
        self._lcf_data = data
        self.tile = [ImageFile._Tile("lcf", (0, 0, *self._size), 0, None)]  # a marker: load() decodes, not a tile

    def load(self) -> Any:
        if self._lcf_error is not None:
            raise self._lcf_error
        if self.tile and self._lcf_data is not None:
            decoded = _decode(self._lcf_data)
            if decoded.size != self.size:
                raise LcfError(f"the decoder returned a {decoded.size} image for a file whose header says {self.size}")
            if decoded.mode != self.mode:
                decoded = decoded.convert(self.mode)
            decoded.load()
            self.im = decoded.im
            self.tile = []
            self._lcf_data = None  # decoded once; the bytes are no longer needed
            if self._exclusive_fp and self.fp:  # as ImageFile.load: a file Pillow opened is closed once loaded
                self.fp.close()
            self.fp = None
        return Image.Image.load(self)

    def load_seek(self, pos: int) -> None:
        pass  # one image, decoded whole by load(); defined so that ImageFile.Parser uses our load()

    def verify(self) -> None:
        """Pillow's integrity check without decoding: structure and every CRC were checked by _open."""
        if self._lcf_error is not None:
            raise self._lcf_error


def _readable_header(container_api: Any, data: bytes, limits: Any) -> Any:
    """The header of a file whose later chunks are damaged; SyntaxError ("not an lcf file") if HEAD is not readable."""
    try:
        return container_api.read_header_only(data, limits)
    except (FormatError, CorruptDataError) as exc:
        raise SyntaxError(f"not a readable lcf file: {exc}") from exc


def _remaining(fp: IO[bytes]) -> int:
    """Bytes from the position to the end, to refuse an oversized file before reading it (0 if not seekable)."""
    try:
        here = fp.tell()
        end = fp.seek(0, 2)
        fp.seek(here)
    except (OSError, ValueError):
        return 0
    return max(end - here, 0)


def _ancillaries(container: Any) -> tuple[Any, bytes | None, bytes | None, bytes | None]:
    """(alpha, icc, exif, xmp) of a Container (lcf.container.Container has them as properties)."""
    chunks = {c.type: c.payload for c in getattr(container, "chunks", ()) or ()}
    alpha = getattr(container, "alpha", chunks.get("ALPH"))
    icc = getattr(container, "icc", chunks.get("iCCP"))
    exif = getattr(container, "exif", chunks.get("eXIf"))
    if exif is not None and not exif.startswith(EXIF_PREFIX):
        exif = EXIF_PREFIX + exif  # the eXIf chunk holds bare TIFF; Pillow's info["exif"] carries the prefix
    xmp = getattr(container, "xmp", chunks.get("xMPd"))
    return alpha, icc, exif, xmp


def _decode(data: bytes) -> Image.Image:
    api = _require("lcf.api", "decode_bytes")
    kwargs: dict[str, Any] = {"decoder": _options["decoder"], "device": _options["device"]}
    if _options["weights"] is not None:
        kwargs["weights"] = _options["weights"]
    return api.decode_bytes(data, **kwargs)


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    info = getattr(im, "encoderinfo", {}) or {}
    quality = _check_quality(info.get("quality", DEFAULT_QUALITY))
    overrides = {k: info[k] for k in ("icc_profile", "exif", "xmp") if info.get(k) is not None}
    if overrides:  # Pillow's convention: save(..., icc_profile=...) wins over im.info
        im = im.copy()
        im.info.update(overrides)
    api = _require("lcf.api", "encode_image")
    prepared = _require("lcf.image", "load_image").load_image(im)
    for note in prepared.notes:
        warnings.warn(f"lcf: {note}", ConversionWarning, stacklevel=3)  # 3: the caller of Image.save
    kwargs: dict[str, Any] = {
        "decoder": info.get("decoder"),
        "device": _options["device"],
        "effort": info.get("effort", 0),
    }
    if _options["weights"] is not None:
        kwargs["weights"] = _options["weights"]
    fp.write(api.encode_image(prepared, quality=quality, **kwargs))


def _check_quality(quality: object) -> float:
    """``quality`` of save() as a float on lcf's 1..7 scale; a UsageError (a ValueError) that says what to pass."""
    return check_quality(quality, how=f"pass quality={MIN_QUALITY:g}..{MAX_QUALITY:g}, e.g. quality=5")


def _require(module_name: str, attribute: str) -> Any:
    """Import a codec module when first needed, with a clear error where this installation lacks it."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LcfError(f"the lcf Pillow plugin needs {module_name}, which cannot be imported: {exc}") from exc
    if not hasattr(module, attribute):
        raise LcfError(f"the lcf Pillow plugin needs {module_name}.{attribute}, which this installation lacks")
    return module


register()

__all__ = ["DEFAULT_QUALITY", "EXTENSION", "FORMAT", "MIME", "SIGNATURE", "LcfImageFile", "register"]
