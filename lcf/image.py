"""Every input a user has -> one RGB uint8 array, an optional alpha plane and the metadata to carry along; and back.

lcf codes one thing: an 8-bit RGB image (``PreparedImage.rgb``). Everything else a user may hand us is mapped onto
it here, and what cannot be coded (alpha, ICC/EXIF/XMP) is split off so that the codec can store it beside the
streams and :func:`to_pil` can put it back::

    path | bytes | PIL image | numpy array
        -> load_image() -> PreparedImage(rgb (H, W, 3) uint8, alpha (H, W) uint8 | None, color, icc, exif, xmp, notes)
        -> ... codec ...
        -> to_pil(rgb, color=, alpha=, icc=, exif=, xmp=) -> PIL image -> save_image() (atomic)

What each Pillow mode becomes (``color`` says how the decoder gives it back):

==============================  ==============================  =====  ==========================================
input mode                      coded as                        color  note
==============================  ==============================  =====  ==========================================
RGB, RGBX                       RGB                             RGB
RGBA, RGBa, RGB + tRNS colour   RGB + alpha (un-premultiplied)  RGB
P (palette), PA                 RGB, + alpha if transparent     RGB    "palette input converted to RGB[A]"
1                               gray 0/255 repeated to R=G=B    L      "1-bit input converted to 8-bit gray"
L                               gray repeated to R=G=B          L
LA, La, L + tRNS value          gray + alpha                    L
I;16, I;16B, I;16L, I;16N       gray, 16 -> 8 bits rounded      L      "16-bit input reduced to 8 bits"
I (32-bit int)                  gray; 0..255 as is, else as     L      16-bit note; a clipped note if < 0 or
                                16-bit                                 > 65535
F (float)                       gray; [0, 1] scaled by 255,     L      "floating-point input ..."
                                else read on 0..255, clipped
16-bit RGB/RGBA/LA PNG          8 bits rounded from the full    RGB/L  "16-bit input reduced to 8 bits"
                                16-bit samples
16-bit RGB/RGBA TIFF            8 bits as Pillow reads them     RGB    "16-bit input reduced to 8 bits"
                                (the high byte)
PPM with maxval > 255           8 bits as Pillow scales them    RGB    "16-bit input reduced to 8 bits"
CMYK                            sRGB via embedded ICC, else     RGB    "CMYK input converted ..."; the CMYK
                                Pillow's plain conversion              profile is dropped
LAB                             sRGB (Pillow's conversion)      RGB    note; the profile is dropped
YCbCr, HSV                      RGB                             RGB    note
==============================  ==============================  =====  ==========================================

numpy arrays: (H, W) and (H, W, 1) gray, (H, W, 2) gray + alpha, (H, W, 3) RGB, (H, W, 4) RGBA; dtype uint8 as is,
bool as 0/255 (note), uint16 rounded to 8 bits (note), float in [0, 1] scaled by 255 and rounded (note).

EXIF orientation is applied to the pixels (as ``ImageOps.exif_transpose`` does) and the orientation is then reset
to 1 in the EXIF (patched in place, so every other byte is kept) and in the XMP, so a viewer does not turn the
image a second time; a note says so ("EXIF orientation 6 applied: ..."). EXIF is kept in the form JPEG's APP1 uses
and Pillow's writers accept: ``b"Exif\\0\\0"`` + TIFF structure.

``notes`` (``PreparedImage.notes``, one short sentence each, no repeats) say what was changed,
whenever the decoded image will differ from the input other than by lossy coding: the conversions marked in the
table (bit depth, palette, colour space), what happened to an embedded ICC profile when the pixels were converted
("ICC profile dropped: ..." for CMYK and LAB, whose profile no longer describes the RGB coded; "ICC profile kept:
..." otherwise), values clipped, the EXIF orientation applied, the extra images of MPO/PSD left out. No note for
what the decoder gives back as it was: RGB, RGBA, L, LA, the padding of RGBX, premultiplied RGBa/La (stored
un-premultiplied), a tRNS colour (stored as an alpha plane), ICC/EXIF/XMP carried unchanged. Notes are about what
lcf was given: a file's own samples, or a PIL image as it is (Pillow itself reads a 16-bit RGB PNG or TIFF as 8-bit
RGB, so an image it has already loaded has nothing left to reduce). The library only returns the notes; the ``lcf``
command prints them and the Pillow plugin warns with them.

Animated and multi-frame inputs (GIF, APNG, WebP, multi-page TIFF, ...) are refused: lcf codes one still image and
choosing a frame silently would lose the rest. Two formats are the exception because their first image *is* the
picture and the other frames are extras: MPO (a camera JPEG plus previews/depth maps) and PSD (composite plus
layers); for these the primary image is used and a note says so.

Size limits are checked from the header, before any pixel is decoded (Pillow's decompression-bomb check, made an
:class:`LimitError`).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from lcf.constants import EXIF_PREFIX
from lcf.container.limits import DEFAULT_MAX_PIXELS  # Pillow's MAX_IMAGE_PIXELS
from lcf.errors import LcfError, LcfIOError, LimitError, UnsupportedImageError, UsageError
from lcf.fileio import atomic_output

NOTE_16_BIT = "16-bit input reduced to 8 bits"

_PRIMARY_IMAGE_FORMATS = frozenset({"MPO", "PSD"})
_ORIENTATION_TAG = 0x0112
_TRANSPOSE: dict[int, Callable[[np.ndarray], np.ndarray]] = {  # EXIF orientation -> pixel op (Image.Transpose)
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1],  # FLIP_TOP_BOTTOM
    5: lambda a: a.swapaxes(0, 1),  # TRANSPOSE
    6: lambda a: np.rot90(a, -1),  # ROTATE_270
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),  # ROTATE_90
}
_ORIENTATION_WORDS = {
    2: "mirrored left to right",
    3: "rotated by 180 degrees",
    4: "mirrored top to bottom",
    5: "transposed (mirrored along the main diagonal)",
    6: "rotated by 90 degrees clockwise",
    7: "transversed (mirrored along the other diagonal)",
    8: "rotated by 90 degrees counter-clockwise",
}
_XMP_ORIENTATION = (
    re.compile(rb"""(tiff:Orientation\s*=\s*["'])[0-9](["'])"""),
    re.compile(rb"(<tiff:Orientation>\s*)[0-9](\s*</tiff:Orientation>)"),
)
# PNG rawmodes of 16-bit samples that Pillow truncates to their high byte, and the rawmode that reads the other bytes.
_PNG_WIDE_RAWMODES = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}
_SAVE_DEFAULTS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}
_pillow_limit_lock = threading.RLock()


@dataclass(frozen=True, eq=False)
class PreparedImage:
    """An image ready for the codec: 8-bit RGB pixels, the alpha plane and metadata split off, and user notes.

    ``color`` is ``"L"`` for grayscale inputs: they are coded as colour (R = G = B) and decoded back to gray.
    ``notes`` are user-facing warnings about what was changed on the way in (bit depth, colour space, frames).
    The arrays are read-only.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    color: str = "RGB"
    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_planes(self.rgb, self.alpha, self.color)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


# --------------------------------------------------------------------------------------------------- loading


def load_image(
    src: str | os.PathLike[str] | bytes | Image.Image | np.ndarray,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> PreparedImage:
    """Read any image Pillow can open (a path, the file's bytes, a PIL image) or a numpy array into a PreparedImage.

    ``max_pixels`` (None: no limit) is checked against width * height from the header before pixels are decoded.
    Errors: :class:`LcfIOError` (missing or unreadable file), :class:`UnsupportedImageError` (not an image, corrupt,
    animated, unsupported array), :class:`LimitError` (too many pixels). Pillow's exceptions never escape.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
        raise UsageError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if isinstance(src, np.ndarray):
        return _from_array(src, max_pixels)
    with _pillow_pixel_limit(max_pixels):
        if isinstance(src, Image.Image):
            return _from_pil(src, "the image", max_pixels, reopen=None)
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
            return _from_file(lambda: io.BytesIO(data), "the image data", max_pixels)
        if isinstance(src, (str, os.PathLike)):
            path = os.fspath(src)
            return _from_file(lambda: path, str(path), max_pixels)
    raise UnsupportedImageError(
        f"cannot read an image from a {type(src).__name__}: pass a path, the file's bytes, a PIL image or a numpy array"
    )


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Let our limit, not Pillow's global one, decide: silence its warning; lift its error only if we allow more."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        pillow_limit = Image.MAX_IMAGE_PIXELS
        if pillow_limit is None or (max_pixels is not None and max_pixels <= 2 * pillow_limit):
            yield
            return
        with _pillow_limit_lock:
            Image.MAX_IMAGE_PIXELS = None
            try:
                yield
            finally:
                Image.MAX_IMAGE_PIXELS = pillow_limit


def _from_file(opener: Callable[[], str | IO[bytes]], name: str, max_pixels: int | None) -> PreparedImage:
    def reopen() -> Image.Image:
        return _open(opener, name)

    with reopen() as im:
        return _from_pil(im, name, max_pixels, reopen=reopen)


def _open(opener: Callable[[], str | IO[bytes]], name: str) -> Image.Image:
    import lcf.pillow  # noqa: F401  (registers the plugin: an .lcf file is an image lcf reads, as before issue 22)

    try:
        return Image.open(opener())
    except FileNotFoundError:
        raise LcfIOError(f"no such file: {name}") from None
    except IsADirectoryError:
        raise LcfIOError(f"{name} is a directory, not an image file") from None
    except PermissionError:
        raise LcfIOError(f"permission denied reading {name}") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(
            f"cannot identify image file {name}: empty, truncated, or not an image format Pillow can read"
        ) from None
    except LcfError:
        raise
    except Exception as exc:
        raise _pillow_failure(name, exc) from exc


def _pillow_failure(name: str, exc: Exception) -> LcfError:
    """The LcfError a Pillow exception on a user's file stands for."""
    if isinstance(exc, Image.DecompressionBombError):  # only when the image is over our limit too (see above)
        return LimitError(
            f"{name} is over the pixel limit (decompression-bomb guard; Pillow: {exc}); "
            "raise max_pixels (--max-pixels) if you trust the file"
        )
    if isinstance(exc, MemoryError):
        return LimitError(f"not enough memory to decode {name}")
    if isinstance(exc, ValueError) and "too large" in str(exc).lower():
        return LimitError(f"{name}: {exc} (a metadata chunk exceeds Pillow's safety limit)")
    if isinstance(exc, OSError) and exc.errno is not None:
        return LcfIOError(f"cannot read {name}: {exc.strerror or exc}")
    return UnsupportedImageError(f"cannot decode image file {name}: {exc or type(exc).__name__}")


def _from_pil(
    im: Image.Image, name: str, max_pixels: int | None, reopen: Callable[[], Image.Image] | None
) -> PreparedImage:
    notes: list[str] = []
    try:
        frames = int(getattr(im, "n_frames", 1))
    except Exception as exc:
        raise _pillow_failure(name, exc) from exc
    if frames > 1:
        if im.format not in _PRIMARY_IMAGE_FORMATS:
            raise UnsupportedImageError(
                f"{name} is animated or has {frames} frames ({im.format}); lcf codes one still image: "
                "extract the frame you want first (e.g. im.seek(k); im.save('frame.png'))"
            )
        notes.append(f"{im.format} file holds {frames} images; only the primary image is coded")
    width, height = im.size
    if width < 1 or height < 1:
        raise UnsupportedImageError(f"{name} has no pixels ({width}x{height})")
    _check_pixel_limit(name, width, height, max_pixels)
    wide_rawmode = _png_wide_rawmode(im)
    before = len(notes)
    if wide_rawmode is None and _narrowed_by_pillow(im):
        notes.append(NOTE_16_BIT)
    try:
        im.load()
        planes, alpha, color, drops_icc = _planes(im, wide_rawmode, reopen, notes)
        converted = len(notes) > before  # every note of _planes is a change of bit depth or colour space
        icc, exif, xmp = _metadata(im)
        orientation = _orientation(im)
    except LcfError:
        raise
    except Exception as exc:
        raise _pillow_failure(name, exc) from exc
    if icc is not None and drops_icc:
        notes.append(f"ICC profile dropped: it describes the {im.mode} input, not the RGB pixels coded")
        icc = None
    elif icc is not None and converted:
        notes.append("ICC profile kept: it still describes the converted pixels")
    if orientation in _TRANSPOSE:
        planes = _TRANSPOSE[orientation](planes)
        alpha = None if alpha is None else _TRANSPOSE[orientation](alpha)
        exif = _reset_exif_orientation(exif, notes)
        xmp = _reset_xmp_orientation(xmp)
        notes.append(
            f"EXIF orientation {orientation} applied: the pixels are {_ORIENTATION_WORDS[orientation]} "
            "and the orientation stored is 1"
        )
    return _prepared(planes, alpha, color, icc, exif, xmp, notes)


def _check_pixel_limit(name: str, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise LimitError(
            f"{name} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} pixels "
            "(decompression-bomb guard); raise max_pixels (--max-pixels) if you trust the file"
        )


# ---------------------------------------------------------------------------------------- pixels from Pillow


def _planes(
    im: Image.Image, wide_rawmode: str | None, reopen: Callable[[], Image.Image] | None, notes: list[str]
) -> tuple[np.ndarray, np.ndarray | None, str, bool]:
    """(planes (H, W, 1|3) uint8, alpha | None, color, whether the ICC profile no longer applies)."""
    if wide_rawmode is not None:
        notes.append(NOTE_16_BIT)
        wide = _png_16bit_planes(im, wide_rawmode, reopen)
        if wide is not None:
            return (*wide, False)
        # Fall through: Pillow's 8-bit pixels are the high bytes (truncated, not rounded).
        if wide_rawmode.startswith("LA"):
            return _split(np.asarray(im)[..., [0, 3]], "L") + (False,)
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        return _deep_gray(im, notes) + ("L", False)
    if mode in ("1", "L", "LA", "La"):
        target, color = ("LA" if im.has_transparency_data else "L"), "L"
        if mode == "1":
            notes.append("1-bit input converted to 8-bit gray")
    elif mode in ("RGB", "RGBA", "RGBa", "RGBX", "P", "PA"):
        target, color = ("RGBA" if im.has_transparency_data else "RGB"), "RGB"
        if mode in ("P", "PA"):
            notes.append(f"palette input converted to {target}")
    elif mode == "CMYK":
        return _split(np.asarray(_cmyk_to_rgb(im, notes)), "RGB") + (True,)
    elif mode in ("LAB", "YCbCr", "HSV"):
        notes.append(f"{'CIELAB' if mode == 'LAB' else mode} input converted to {'sRGB' if mode == 'LAB' else 'RGB'}")
        return _split(np.asarray(im.convert("RGB")), "RGB") + (mode == "LAB",)
    else:
        target, color = "RGBA" if im.has_transparency_data else "RGB", "RGB"
        notes.append(f"{mode} input converted to {target}")
    converted = im if im.mode == target else im.convert(target)
    return _split(np.asarray(converted), color) + (False,)


def _split(pixels: np.ndarray, color: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(H, W) | (H, W, C) uint8 -> colour planes, alpha (last channel of 2 or 4), color."""
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    channels = pixels.shape[2]
    alpha = pixels[..., -1] if channels in (2, 4) else None
    return pixels[..., : 1 if channels <= 2 else 3], alpha, color


def _to_8bit(samples: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255, rounded: round(v * 255 / 65535) = round(v / 257), half up."""
    return ((samples.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)


def _png_wide_rawmode(im: Image.Image) -> str | None:
    """The rawmode of a 16-bit RGB/RGBA/LA PNG, which Pillow holds as 8 bits; read before load() clears the tile."""
    if im.format != "PNG":
        return None
    rawmodes = {t.args for t in getattr(im, "tile", None) or () if t.codec_name == "zip" and isinstance(t.args, str)}
    if len(rawmodes) == 1 and (rawmode := rawmodes.pop()) in _PNG_WIDE_RAWMODES:
        return rawmode
    return None


def _narrowed_by_pillow(im: Image.Image) -> bool:
    """Whether Pillow reduces this file's samples to 8 bits as it loads them, into an 8-bit mode (16-bit RGB/RGBA
    TIFF: the high byte; PPM with maxval > 255: scaled). Read from the tile before load() clears it."""
    if im.mode.startswith("I") or im.mode == "F":
        return False
    for tile in getattr(im, "tile", None) or ():
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        if args and isinstance(args[0], str) and ";16" in args[0]:
            return True
        if tile.codec_name == "ppm" and len(args) > 1 and isinstance(args[1], int) and args[1] > 255:
            return True
    return False


def _png_16bit_planes(
    im: Image.Image, rawmode: str, reopen: Callable[[], Image.Image] | None
) -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """Decode the file again with a rawmode that yields the bytes Pillow drops, to round instead of truncate.

    RGB;16B/RGBA;16B: Pillow keeps the high byte of each sample; the ";16L" unpacker over the same filtered rows
    keeps the other one. LA;16B (held as RGBA): the plain "RGBA" unpacker has the same 4-byte pixel and yields
    gray_hi, gray_lo, alpha_hi, alpha_lo.
    """
    if reopen is None:
        return None
    try:
        with reopen() as again:
            again.tile = [t._replace(args=_PNG_WIDE_RAWMODES[rawmode]) for t in again.tile]
            again.load()
            other = np.asarray(again).astype(np.uint16)
    except Exception:
        return None
    if rawmode == "LA;16B":
        gray = other[..., 0] << 8 | other[..., 1]
        alpha_samples = other[..., 2] << 8 | other[..., 3]
        return _to_8bit(gray)[..., None], _to_8bit(alpha_samples), "L"
    samples = np.asarray(im).astype(np.uint16) << 8 | other
    transparency = im.info.get("transparency")
    planes, alpha, _ = _split(_to_8bit(samples), "RGB")
    if alpha is None and isinstance(transparency, tuple) and len(transparency) == 3:
        alpha = np.where((samples == np.array(transparency, dtype=np.uint16)).all(axis=2), 0, 255).astype(np.uint8)
    return planes, alpha, "RGB"


def _deep_gray(im: Image.Image, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Modes I;16*, I (int32) and F (float32) -> 8-bit gray, and alpha from a tRNS gray value if there is one."""
    raw = np.asarray(im)
    if raw.dtype.kind == "f":
        return _float_to_8bit(raw, notes)[..., None], None
    values = raw.astype(np.int64)
    low, high = int(values.min()), int(values.max())
    if im.mode.startswith("I;16") or low < 0 or high > 255:
        if low < 0 or high > 65535:
            notes.append(f"32-bit integer values {low}..{high} clipped to 0..65535")
        notes.append(NOTE_16_BIT)
        gray = _to_8bit(np.clip(values, 0, 65535))
    else:
        gray = values.astype(np.uint8)
    transparency = im.info.get("transparency")
    alpha = np.where(values == transparency, 0, 255).astype(np.uint8) if isinstance(transparency, int) else None
    return gray[..., None], alpha


def _float_to_8bit(values: np.ndarray, notes: list[str]) -> np.ndarray:
    """Pillow 'F': values in [0, 1] are read as 0..1, anything else on Pillow's own 0..255 scale (clipped)."""
    values = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        notes.append("floating-point input (0..1) converted to 8 bits")
        values = values * 255.0
    else:
        notes.append("floating-point input (0..255) rounded to 8 bits")
        if low < 0.0 or high > 255.0:
            notes.append(f"floating-point values {low:g}..{high:g} clipped to 0..255")
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # ImportError (no littlecms), PyCMSError (bad or non-CMYK profile)
            notes.append("CMYK input converted to RGB without its ICC profile (unusable); colours may shift")
        else:
            if converted is not None:
                notes.append("CMYK input converted to sRGB through its embedded ICC profile")
                return converted
    else:
        notes.append("CMYK input converted to RGB without a colour profile; colours may shift")
    return im.convert("RGB")


# --------------------------------------------------------------------------------------------- metadata


def _metadata(im: Image.Image) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(ICC profile, EXIF as b"Exif\\0\\0" + TIFF, XMP packet) as raw bytes, or None where absent."""
    info = im.info
    icc = _as_bytes(info.get("icc_profile"))
    exif_value = info.get("exif")
    if exif_value is None and "Raw profile type exif" in info:  # PNG's old text-chunk EXIF (TIFF's IFD0 is not EXIF)
        parsed = im.getexif()
        exif_value = parsed.tobytes() if len(parsed) else None
    exif = _as_bytes(exif_value.tobytes() if isinstance(exif_value, Image.Exif) else exif_value)
    if exif is not None and exif[:4] in (b"II*\x00", b"MM\x00*"):
        exif = EXIF_PREFIX + exif
    xmp = _as_bytes(info.get("xmp") or info.get("XML:com.adobe.xmp"))
    return icc, exif, xmp


def _as_bytes(value: object) -> bytes | None:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, tuple) and len(value) == 1:  # TIFF tags may come as 1-tuples
        value = value[0]
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value):
        return bytes(value)
    return None


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)  # also reads tiff:Orientation from XMP, as Pillow does
    except Exception:
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _reset_exif_orientation(exif: bytes | None, notes: list[str]) -> bytes | None:
    """Set Orientation = 1 in IFD0: patched in place if possible, so maker notes and thumbnails stay valid."""
    if exif is None:
        return None
    patched = _patch_orientation(exif)
    if patched is not None:
        return patched
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        parsed[_ORIENTATION_TAG] = 1
        return parsed.tobytes()
    except Exception:
        notes.append("EXIF dropped: it is unreadable and its orientation could not be reset")
        return None


def _patch_orientation(exif: bytes) -> bytes | None:
    start = len(EXIF_PREFIX) if exif.startswith(EXIF_PREFIX) else 0
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(exif[start : start + 4])
    if order is None:
        return None
    try:
        (ifd,) = struct.unpack_from(order + "I", exif, start + 4)
        (count,) = struct.unpack_from(order + "H", exif, start + ifd)
        for k in range(count):
            entry = start + ifd + 2 + 12 * k
            tag, kind, n = struct.unpack_from(order + "HHI", exif, entry)
            if tag == _ORIENTATION_TAG:
                if kind != 3 or n != 1:  # not one SHORT: let Pillow rewrite it
                    return None
                out = bytearray(exif)
                struct.pack_into(order + "H", out, entry + 8, 1)
                return bytes(out)
    except struct.error:
        return None
    return exif  # no orientation in the EXIF itself (it came from XMP)


def _reset_xmp_orientation(xmp: bytes | None) -> bytes | None:
    if xmp is None:
        return None
    for pattern in _XMP_ORIENTATION:
        xmp = pattern.sub(rb"\g<1>1\g<2>", xmp)
    return xmp


# ---------------------------------------------------------------------------------------------- numpy input


def _from_array(array: np.ndarray, max_pixels: int | None) -> PreparedImage:
    shape, dtype = tuple(array.shape), array.dtype
    pixels = array[..., None] if array.ndim == 2 else array
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise UnsupportedImageError(
            f"cannot code an array of shape {shape} and dtype {dtype}: expected (H, W), (H, W, 1), (H, W, 2), "
            "(H, W, 3) or (H, W, 4) with H, W >= 1"
        )
    _check_pixel_limit(f"the array {shape}", pixels.shape[1], pixels.shape[0], max_pixels)
    notes: list[str] = []
    planes, alpha, color = _split(_array_to_8bit(pixels, notes), "L" if pixels.shape[2] <= 2 else "RGB")
    return _prepared(planes, alpha, color, None, None, None, notes)


def _array_to_8bit(pixels: np.ndarray, notes: list[str]) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:
        notes.append("boolean input converted to 8 bits (0 and 255)")
        return pixels.astype(np.uint8) * 255
    if pixels.dtype == np.uint16:
        notes.append(NOTE_16_BIT)
        return _to_8bit(pixels)
    if pixels.dtype.kind == "f":
        values = pixels.astype(np.float64)
        if not np.isfinite(values).all():
            raise UnsupportedImageError(f"the float array of shape {pixels.shape} holds NaN or infinite values")
        low, high = float(values.min()), float(values.max())
        if low < 0.0 or high > 1.0:
            raise UnsupportedImageError(
                f"float arrays must hold values in [0, 1]; this {pixels.dtype} array holds {low:g}..{high:g}: "
                "scale it, or pass uint8 (0..255)"
            )
        notes.append("floating-point input (0..1) converted to 8 bits")
        return np.floor(values * 255.0 + 0.5).astype(np.uint8)
    raise UnsupportedImageError(
        f"cannot code an array of dtype {pixels.dtype} (shape {pixels.shape}): use uint8 (0..255), "
        "uint16 (0..65535), bool, or float in [0, 1]"
    )


# ------------------------------------------------------------------------------------------------ assembling


def _prepared(
    planes: np.ndarray,
    alpha: np.ndarray | None,
    color: str,
    icc: bytes | None,
    exif: bytes | None,
    xmp: bytes | None,
    notes: list[str],
) -> PreparedImage:
    rgb = np.repeat(planes, 3, axis=2) if planes.shape[2] == 1 else np.array(planes, dtype=np.uint8)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    rgb.setflags(write=False)
    if alpha is not None:
        alpha = np.array(alpha, dtype=np.uint8, order="C")
        alpha.setflags(write=False)
    return PreparedImage(rgb, alpha, color, icc, exif, xmp, tuple(dict.fromkeys(notes)))


def _check_planes(rgb: object, alpha: object, color: object) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        got = f"{rgb.dtype} array of shape {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"rgb must be a uint8 array of shape (H, W, 3), got {got}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"rgb must have at least one pixel, got shape {rgb.shape}")
    if alpha is not None and (
        not isinstance(alpha, np.ndarray) or alpha.dtype != np.uint8 or alpha.shape != rgb.shape[:2]
    ):
        got = f"{alpha.dtype} array of shape {alpha.shape}" if isinstance(alpha, np.ndarray) else type(alpha).__name__
        raise ValueError(f"alpha must be a uint8 array of shape {rgb.shape[:2]}, got {got}")
    if color not in ("RGB", "L"):
        raise ValueError(f"color must be 'RGB' or 'L', got {color!r}")


# ---------------------------------------------------------------------------------------------- back to PIL


def to_pil(
    rgb: np.ndarray,
    *,
    color: str = "RGB",
    alpha: np.ndarray | None = None,
    icc: bytes | None = None,
    exif: bytes | None = None,
    xmp: bytes | None = None,
) -> Image.Image:
    """Decoded planes -> a PIL image of mode RGB, RGBA, L or LA, with ICC/EXIF/XMP in ``info``.

    ``color="L"``: the gray value is the rounded mean of R, G and B (all three estimate the same gray).
    ``info`` keys are Pillow's own: ``icc_profile``, ``exif``, ``xmp``; :func:`save_image` writes them.
    """
    _check_planes(rgb, alpha, color)
    if color == "L":
        channels = ((rgb.astype(np.uint16).sum(axis=2) + 1) // 3).astype(np.uint8)[..., None]
    else:
        channels = rgb
    if alpha is not None:
        channels = np.concatenate([channels, alpha[..., None]], axis=2)
    image = Image.fromarray(np.ascontiguousarray(channels[..., 0] if channels.shape[2] == 1 else channels))
    for key, value in (("icc_profile", icc), ("exif", exif), ("xmp", xmp)):
        if value:
            image.info[key] = bytes(value)
    return image


def save_image(img: Image.Image, path: str | os.PathLike[str], *, format: str | None = None, **params: object) -> None:
    """Write ``img`` atomically to ``path`` (:func:`lcf.fileio.atomic_output`: a temporary file beside it, renamed
    into place when complete; no half-written file). The format comes from ``format`` or the file extension; the
    rest as in :func:`write_image`.
    """
    target = os.fspath(path)
    fmt = format or Image.registered_extensions().get(os.path.splitext(target)[1].lower(), "")
    if not fmt:
        raise UsageError(f"cannot tell the image format of {target} from its extension; pass format=")
    with atomic_output(target) as fp:
        write_image(img, fp, fmt, name=target, **params)


def write_image(img: Image.Image, fp: IO[bytes], format: str, *, name: str = "the output", **params: object) -> None:
    """Write ``img`` as ``format`` to the binary file ``fp`` (``name`` is for messages).

    ICC/EXIF/XMP from ``img.info`` are written where the format can hold them (PNG: iCCP, eXIf, iTXt
    "XML:com.adobe.xmp"; JPEG and WebP: all three; TIFF: ICC, EXIF tags and XMP tag 700). JPEG and WebP default to
    quality 95. ``params`` go to Pillow's writer and win over defaults. Raises LcfIOError (the disk is full, ...) or
    UsageError (the format cannot hold this image).
    """
    fmt = format.upper()
    options = {**_SAVE_DEFAULTS.get(fmt, {}), **_metadata_options(img, fmt), **params}
    try:
        img.save(fp, format=fmt, **options)
    except LcfError:
        raise
    except OSError as exc:
        if exc.errno is not None:
            raise LcfIOError(f"cannot write {name}: {exc.strerror or exc}") from exc
        raise UsageError(f"cannot write this {img.mode} image as {fmt} to {name}: {exc}") from exc
    except Exception as exc:
        raise UsageError(f"cannot write this {img.mode} image as {fmt} to {name}: {exc}") from exc


def _metadata_options(img: Image.Image, fmt: str) -> dict[str, object]:
    icc, exif, xmp = _metadata(img)
    options: dict[str, object] = {}
    if fmt in ("PNG", "JPEG", "WEBP", "TIFF", "AVIF") and icc:
        options["icc_profile"] = icc
    if fmt in ("PNG", "JPEG", "WEBP", "AVIF") and exif:
        options["exif"] = exif
    if fmt in ("JPEG", "WEBP", "AVIF") and xmp:
        options["xmp"] = xmp
    if fmt == "PNG" and xmp:
        from PIL.PngImagePlugin import PngInfo

        pnginfo = PngInfo()
        pnginfo.add_itxt("XML:com.adobe.xmp", xmp, zip=False)
        options["pnginfo"] = pnginfo
    if fmt == "TIFF" and (exif or xmp):
        tags = Image.Exif()
        if exif:
            tags.load(exif)
        if xmp:
            tags[700] = xmp  # XMP tag
        options["exif"] = tags
    return options


__all__ = ["DEFAULT_MAX_PIXELS", "NOTE_16_BIT", "PreparedImage", "load_image", "save_image", "to_pil", "write_image"]
