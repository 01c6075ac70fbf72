"""Test images built in code: no binary fixtures, deterministic for a given (size, kind, seed).

    from images import make_rgb, make_mode, make_rgba, to_bytes   # tests/ is on sys.path under pytest

    make_rgb(64, 48, "text")            # PIL RGB image; kinds: KINDS
    make_rgba(17, 13, alpha="binary")   # RGB content + an alpha plane; alpha kinds: ALPHA_KINDS
    make_mode("I;16", 5, 3)             # an image of any Pillow mode (MODES), content from make_rgb(kind="mixed")
    to_bytes(img, "PNG")                # the encoded file, as Pillow writes it
    png_16bit(samples)                  # a 16-bit PNG (gray, gray+alpha, RGB, RGBA), which Pillow cannot write
    animated_gif(8, 8, frames=3), srgb_icc(), exif_bytes(orientation=6), xmp_packet(orientation=6)

Sizes worth covering are in ODD_SIZES (1x1, 1xN and Nx1 thin, odd, just off the 64-pixel grid).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont

KINDS = ("gradient", "noise", "edges", "text", "checker", "flat", "mixed")
ALPHA_KINDS = ("gradient", "binary", "noise", "opaque", "transparent")
MODES = (
    "1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX",
    "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "I;16B", "I;16L", "F",
)  # fmt: skip
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"})
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
ODD_SIZES = ((1, 1), (1, 7), (7, 1), (1, 65), (65, 1), (2, 3), (17, 13), (63, 65))


def make_rgb(width: int, height: int, kind: str = "gradient", seed: int = 0) -> Image.Image:
    """An RGB image of ``kind`` (one of KINDS): smooth, random, sharp-edged, text, checkerboard, flat, or all four."""
    if kind not in _RGB_MAKERS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    pixels = _RGB_MAKERS[kind](width, height, np.random.default_rng(seed))
    return Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))


def make_rgb_array(width: int, height: int, kind: str = "gradient", seed: int = 0) -> np.ndarray:
    """make_rgb as an (H, W, 3) uint8 array."""
    return np.asarray(make_rgb(width, height, kind, seed)).copy()


def make_alpha(width: int, height: int, kind: str = "gradient", seed: int = 0) -> np.ndarray:
    """An (H, W) uint8 alpha plane of ``kind`` (one of ALPHA_KINDS)."""
    x, y = _ramps(width, height)
    if kind == "gradient":
        return np.round(255 * (x + y) / 2).astype(np.uint8)
    if kind == "binary":
        return np.where((x - 0.5) ** 2 + (y - 0.5) ** 2 < 0.16, 255, 0).astype(np.uint8)
    if kind == "noise":
        return np.random.default_rng(seed + 1).integers(0, 256, (height, width), dtype=np.uint8)
    if kind in ("opaque", "transparent"):
        return np.full((height, width), 255 if kind == "opaque" else 0, dtype=np.uint8)
    raise ValueError(f"alpha kind must be one of {ALPHA_KINDS}, got {kind!r}")


def make_rgba(width: int, height: int, kind: str = "gradient", alpha: str = "gradient", seed: int = 0) -> Image.Image:
    """An RGBA image: make_rgb content with a make_alpha plane."""
    pixels = np.dstack([make_rgb_array(width, height, kind, seed), make_alpha(width, height, alpha, seed)])
    return Image.fromarray(pixels)


def make_gray(width: int, height: int, kind: str = "gradient", seed: int = 0) -> Image.Image:
    """An L image (make_rgb converted with Pillow's luma weights)."""
    return make_rgb(width, height, kind, seed).convert("L")


def make_mode(mode: str, width: int, height: int, seed: int = 0) -> Image.Image:
    """An image of any Pillow ``mode`` (see MODES), made from make_rgb(kind="mixed"); alpha modes get a gradient."""
    base = make_rgb(width, height, "mixed", seed)
    gray = np.asarray(base.convert("L"))
    alpha = Image.fromarray(make_alpha(width, height, "gradient", seed))
    if mode in ("LA", "La"):
        image = Image.merge("LA", (base.convert("L"), alpha))
        return image if mode == "LA" else image.convert("La")
    if mode in ("RGBA", "RGBa"):
        image = Image.merge("RGBA", (*base.split(), alpha))
        return image if mode == "RGBA" else image.convert("RGBa")
    if mode == "P":
        return base.quantize(colors=64, dither=Image.Dither.NONE)
    if mode == "PA":
        return base.quantize(colors=64, dither=Image.Dither.NONE).convert("PA")
    if mode == "I":
        return Image.fromarray(gray.astype(np.int32) * 257)
    if mode in ("I;16", "I;16L", "I;16B"):
        wide = gray.astype(np.uint16) * 257
        return Image.frombytes(mode, (width, height), wide.astype(">u2" if mode == "I;16B" else "<u2").tobytes())
    if mode == "F":
        return Image.fromarray(gray.astype(np.float32) / 255)
    if mode in MODES:
        return base.convert(mode)
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def make_palette(width: int, height: int, transparency: bool = False, seed: int = 0) -> Image.Image:
    """A P image with 16 colours; ``transparency``: palette entry 0 is fully transparent (PNG tRNS / GIF)."""
    image = make_rgb(width, height, "edges", seed).quantize(colors=16, dither=Image.Dither.NONE)
    if transparency:
        image.info["transparency"] = 0
    return image


def to_bytes(image: Image.Image, format: str, **params: object) -> bytes:
    """``image`` encoded by Pillow as ``format`` (PNG, JPEG, WEBP, TIFF, GIF, BMP, ...)."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def animated_gif(width: int, height: int, frames: int = 3) -> bytes:
    """An animated GIF of ``frames`` different frames."""
    images = [make_rgb(width, height, "noise", seed) for seed in range(frames)]
    return to_bytes(images[0], "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)


def png_16bit(samples: np.ndarray, interlace: bool = False) -> bytes:
    """A 16-bit PNG of ``samples`` (uint16; (H, W) gray, (H, W, 2) gray+alpha, (H, W, 3) RGB, (H, W, 4) RGBA).

    Written here because Pillow writes 16 bits only for gray. Filter type 0 on every row; no interlacing unless
    asked (then Adam7 with filter 0).
    """
    if samples.ndim == 2:
        samples = samples[..., None]
    height, width, channels = samples.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    big_endian = samples.astype(">u2")
    if interlace:
        # Adam7 passes as (x0, y0, dx, dy)
        passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
        raw = b"".join(
            b"".join(b"\x00" + row.tobytes() for row in big_endian[y0::dy, x0::dx])
            for x0, y0, dx, dy in passes
            if big_endian[y0::dy, x0::dx].size
        )
    else:
        raw = b"".join(b"\x00" + row.tobytes() for row in big_endian)
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 1 if interlace else 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def srgb_icc() -> bytes:
    """An sRGB ICC profile as bytes (built by littlecms)."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def exif_bytes(orientation: int | None = 6, **tags: object) -> bytes:
    """EXIF as Pillow writes it (b"Exif\\0\\0" + TIFF), with Orientation and a few identifying tags."""
    exif = Image.Exif()
    exif[0x010F] = "lcf-tests"  # Make
    exif[0x0110] = "images.py"  # Model
    if orientation is not None:
        exif[0x0112] = orientation
    for name, value in tags.items():
        exif[int(name.removeprefix("tag_"), 0)] = value  # e.g. tag_0x0131="software"
    return exif.tobytes()


def xmp_packet(orientation: int | None = None, title: str = "lcf test image") -> bytes:
    """A small XMP packet; with ``orientation``, a tiff:Orientation attribute as cameras write it."""
    orientation_attr = f' tiff:Orientation="{orientation}"' if orientation is not None else ""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        f'xmlns:tiff="http://ns.adobe.com/tiff/1.0/"{orientation_attr}><dc:title>{title}</dc:title>'
        '</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>'
    ).encode()


# ------------------------------------------------------------------------------------------------ kinds


def _ramps(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y in [0, 1] over the image, (H, W) each; a 1-pixel side is 0."""
    x = np.arange(width, dtype=np.float64) / max(width - 1, 1)
    y = np.arange(height, dtype=np.float64) / max(height - 1, 1)
    return np.broadcast_to(x, (height, width)), np.broadcast_to(y[:, None], (height, width))


def _gradient(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    x, y = _ramps(width, height)
    return np.round(255 * np.dstack([x, y, (x + (1 - y)) / 2])).astype(np.uint8)


def _noise(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _edges(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    image = Image.new("RGB", (width, height), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, x1 = sorted(rng.integers(0, width, 2).tolist())
        y0, y1 = sorted(rng.integers(0, height, 2).tolist())
        fill = tuple(rng.integers(0, 256, 3).tolist())
        (draw.rectangle if rng.integers(2) else draw.ellipse)((x0, y0, x1, y1), fill=fill)
    draw.line((0, 0, width - 1, height - 1), fill=(255, 255, 255), width=max(1, min(width, height) // 16))
    return np.asarray(image)


def _text(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    image = Image.new("RGB", (width, height), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(6, min(height // 4, 24)))
    words = ("lcf", "Quartz", "jumps", "0123", "Wavy", "ink")
    for row, top in enumerate(range(0, height, max(height // 4, 6))):
        left = int(rng.integers(0, max(width // 4, 1)))
        line = " ".join(words[row % 6 :] + words[: row % 6])
        draw.text((left, top), line, fill=(20, 20, 30), font=font)
    return np.asarray(image)


def _checker(width: int, height: int, rng: np.random.Generator, cell: int = 8) -> np.ndarray:
    x, y = np.meshgrid(np.arange(width) // cell, np.arange(height) // cell)
    on = ((x + y) % 2).astype(bool)
    return np.where(on[..., None], np.uint8(235), np.uint8(20)).repeat(3, axis=2)


def _flat(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    return np.broadcast_to(np.array([70, 130, 180], dtype=np.uint8), (height, width, 3))


def _mixed(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Quadrants: gradient | noise over edges | text (each made at full size, then cut)."""
    out = _gradient(width, height, rng).copy()
    half_w, half_h = (width + 1) // 2, (height + 1) // 2
    out[:half_h, half_w:] = _noise(width, height, rng)[:half_h, half_w:]
    out[half_h:, :half_w] = _edges(width, height, rng)[half_h:, :half_w]
    out[half_h:, half_w:] = _text(width, height, rng)[half_h:, half_w:]
    return out


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


_RGB_MAKERS = {
    "gradient": _gradient,
    "noise": _noise,
    "edges": _edges,
    "text": _text,
    "checker": _checker,
    "flat": _flat,
    "mixed": _mixed,
}
