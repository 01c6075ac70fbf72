"""The HEAD chunk: image size, colour format, model identifier, quality, decoder, latent geometry (spec/lcf.md, "HEAD").

Payload layout, all integers big-endian (41 + n bytes, n = decoder name length):

```
offset size field            range
 0     4   width            u32  1 .. 2^24-1
 4     4   height           u32  1 .. 2^24-1
 8     1   color            u8   0 = RGB8, 1 = GRAY8
 9     1   reserved         u8   0
10     2   quality          u16  256 .. 1792   (quality * 256)
12    16   model_id         16 bytes (first 16 bytes of SHA-256 over the entropy-model tensors)
28     2   latent_channels  u16  1 .. 65535   (M)
30     2   hyper_channels   u16  1 .. 65535   (Mz)
32     4   padded_width     u32  ceil(width / 64) * 64
36     4   padded_height    u32  ceil(height / 64) * 64
40     1   decoder_length   u8   1 .. 16      (n)
41     n   decoder          ASCII letters, digits, "-", "_", "."
```
"""

from __future__ import annotations

import enum
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

from lcf.constants import MAX_QUALITY, MIN_QUALITY
from lcf.errors import FormatError

MAX_DIMENSION = 2**24 - 1
PAD = 64  # padded sizes are multiples of the total down-sampling of g_a then h_a (16 * 4)
LATENT_STRIDE = 16
HYPER_STRIDE = 64
QUALITY_SCALE = 256
MODEL_ID_SIZE = 16
MAX_DECODER_LENGTH = 16
DECODER_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,16}")

_FIXED = struct.Struct(">IIBBH16sHHIIB")
FIXED_SIZE = _FIXED.size  # 41
MAX_SIZE = FIXED_SIZE + MAX_DECODER_LENGTH  # 57

# Field -> byte offset inside the payload, for error messages.
_OFFSETS = {
    "width": 0,
    "height": 4,
    "color": 8,
    "reserved": 9,
    "quality": 10,
    "model_id": 12,
    "latent_channels": 28,
    "hyper_channels": 30,
    "padded_width": 32,
    "padded_height": 36,
    "decoder_length": 40,
    "decoder": 41,
}


class ColorFormat(enum.IntEnum):
    """Colour format of the decoded image. Both are coded as RGB; GRAY8 is decoded to one 8-bit channel."""

    RGB8 = 0
    GRAY8 = 1


def quality_to_fixed(quality: float) -> int:
    """The u16 stored for ``quality``: round(quality * 256), halves rounded up. Range is not checked here."""
    return math.floor(quality * QUALITY_SCALE + 0.5)


def snap_quality(quality: float) -> float:
    """``quality`` on the 1/256 grid the file stores. Encoders must code with this value, not the requested one."""
    return quality_to_fixed(quality) / QUALITY_SCALE


def padded(size: int) -> int:
    """``size`` rounded up to a multiple of 64."""
    return -(-size // PAD) * PAD


@dataclass(frozen=True)
class Header:
    """Contents of the HEAD chunk. ``quality`` is snapped to the stored 1/256 grid on construction."""

    width: int
    height: int
    color: ColorFormat
    model_id: bytes
    quality: float
    decoder: str
    latent_channels: int
    hyper_channels: int

    def __post_init__(self) -> None:
        problem = _problem(vars(self))
        if problem is not None:
            raise FormatError(f"invalid header: {problem[1]}", chunk="HEAD")
        object.__setattr__(self, "color", ColorFormat(self.color))
        object.__setattr__(self, "model_id", bytes(self.model_id))
        object.__setattr__(self, "quality", snap_quality(self.quality))

    @property
    def padded_width(self) -> int:
        return padded(self.width)

    @property
    def padded_height(self) -> int:
        return padded(self.height)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape (M, Hp/16, Wp/16) of y."""
        return (self.latent_channels, self.padded_height // LATENT_STRIDE, self.padded_width // LATENT_STRIDE)

    @property
    def hyper_shape(self) -> tuple[int, int, int]:
        """Shape (Mz, Hp/64, Wp/64) of z."""
        return (self.hyper_channels, self.padded_height // HYPER_STRIDE, self.padded_width // HYPER_STRIDE)

    @property
    def bitmap_length(self) -> int:
        """Length in bytes of the CMAP payload: ceil(M / 8)."""
        return -(-self.latent_channels // 8)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (model_id as hex), including the derived padded size."""
        return {
            "width": self.width,
            "height": self.height,
            "color": self.color.name,
            "model_id": self.model_id.hex(),
            "quality": self.quality,
            "decoder": self.decoder,
            "latent_channels": self.latent_channels,
            "hyper_channels": self.hyper_channels,
            "padded_width": self.padded_width,
            "padded_height": self.padded_height,
        }


def _problem(h: dict[str, Any]) -> tuple[str, str] | None:
    """The first (field, message) that makes the header fields ``h`` unwritable, or None."""
    for name in ("width", "height"):
        value = h[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DIMENSION:
            return name, f"{name} {value!r} is outside 1..{MAX_DIMENSION}"
    color, model_id, quality, decoder = h["color"], h["model_id"], h["quality"], h["decoder"]
    if color not in tuple(ColorFormat):
        return "color", f"color format {color!r} is unknown; known: 0 (RGB8), 1 (GRAY8)"
    if not isinstance(model_id, (bytes, bytearray)) or len(model_id) != MODEL_ID_SIZE:
        return "model_id", f"model_id must be {MODEL_ID_SIZE} bytes, got {model_id!r}"
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not MIN_QUALITY <= quality <= MAX_QUALITY:
        return "quality", f"quality {quality!r} is outside {MIN_QUALITY}..{MAX_QUALITY}"
    if not isinstance(decoder, str) or DECODER_NAME.fullmatch(decoder) is None:
        return "decoder", (
            f"decoder name {decoder!r} must be 1..{MAX_DECODER_LENGTH} ASCII letters, digits, '-', '_' or '.'"
        )
    for name in ("latent_channels", "hyper_channels"):
        value = h[name]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 0xFFFF:
            return name, f"{name} {value!r} is outside 1..65535"
    return None


def pack_header(h: Header) -> bytes:
    """The HEAD payload for ``h``."""
    decoder = h.decoder.encode("ascii")
    fixed = _FIXED.pack(
        h.width,
        h.height,
        int(h.color),
        0,
        quality_to_fixed(h.quality),
        h.model_id,
        h.latent_channels,
        h.hyper_channels,
        h.padded_width,
        h.padded_height,
        len(decoder),
    )
    return fixed + decoder


def unpack_header(payload: bytes, *, offset: int = 0) -> Header:
    """Parse and check a HEAD payload; ``offset`` is the payload's position in the file, for error messages.

    Raises FormatError naming the field, its byte offset and the allowed range.
    """

    def fail(field: str, message: str) -> FormatError:
        return FormatError(message, chunk="HEAD", offset=offset + _OFFSETS[field])

    if not FIXED_SIZE < len(payload) <= MAX_SIZE:
        raise FormatError(
            f"HEAD payload is {len(payload)} bytes; it must be {FIXED_SIZE + 1}..{MAX_SIZE}",
            chunk="HEAD",
            offset=offset,
        )
    (width, height, color, reserved, quality, model_id, m, mz, pw, ph, n) = _FIXED.unpack_from(payload)
    if reserved != 0:
        raise fail("reserved", f"reserved byte is {reserved}, must be 0")
    if not 1 <= n <= MAX_DECODER_LENGTH or len(payload) != FIXED_SIZE + n:
        raise fail(
            "decoder_length",
            f"decoder name length {n} must be 1..{MAX_DECODER_LENGTH} and match the "
            f"HEAD length ({len(payload)} = {FIXED_SIZE} + {len(payload) - FIXED_SIZE})",
        )
    if not MIN_QUALITY * QUALITY_SCALE <= quality <= MAX_QUALITY * QUALITY_SCALE:
        raise fail("quality", f"quality {quality}/256 is outside {MIN_QUALITY}..{MAX_QUALITY}")
    decoder = payload[FIXED_SIZE:].decode("latin-1")
    fields = {
        "width": width,
        "height": height,
        "color": color,
        "model_id": model_id,
        "quality": quality / QUALITY_SCALE,
        "decoder": decoder,
        "latent_channels": m,
        "hyper_channels": mz,
    }
    problem = _problem(fields)
    if problem is not None:
        raise fail(*problem)
    if pw != padded(width):
        raise fail("padded_width", f"padded width {pw} must be ceil({width}/64)*64 = {padded(width)}")
    if ph != padded(height):
        raise fail("padded_height", f"padded height {ph} must be ceil({height}/64)*64 = {padded(height)}")
    return Header(**fields)
