"""Chunks, the parsed container, and the rules both the reader and the writer enforce (spec/lcf.md, "Chunk order").

```
HEAD  (CMAP HYPR ANCH NANC, exactly once each, in this order)  LEND
      with ALPH (at most once) and ancillary chunks anywhere in between
```
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from lcf.container import format as fmt
from lcf.container.header import Header
from lcf.errors import CorruptDataError, FormatError


@dataclass(frozen=True)
class Chunk:
    """One chunk: its type (four ASCII letters) and payload. ``offset`` (of its length field) is set by the reader."""

    type: str
    payload: bytes
    offset: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not fmt.is_valid_type(self.type.encode("ascii", "replace")):
            raise FormatError(f"chunk type {self.type!r} must be four ASCII letters", offset=self.offset)
        if not isinstance(self.payload, bytes):
            object.__setattr__(self, "payload", bytes(self.payload))
        if len(self.payload) > fmt.MAX_CHUNK_LENGTH:
            raise FormatError(
                f"payload of {len(self.payload)} bytes exceeds the format's {fmt.MAX_CHUNK_LENGTH}",
                chunk=self.type,
                offset=self.offset,
            )

    @property
    def critical(self) -> bool:
        return fmt.is_critical(self.type)


class ChunkOrder:
    """State machine for the order rules over the chunks between HEAD and LEND. Raises FormatError on a violation."""

    def __init__(self) -> None:
        self._next = 0  # index into REQUIRED_SEQUENCE
        self._seen: set[str] = set()

    def add(self, chunk_type: str, *, offset: int | None = None) -> None:
        """Account for one chunk between HEAD and LEND."""
        if chunk_type in (fmt.HEAD, fmt.LEND):
            raise FormatError(
                f"{chunk_type} may appear only {'first' if chunk_type == fmt.HEAD else 'last'}, once",
                chunk=chunk_type,
                offset=offset,
            )
        if chunk_type in fmt.REQUIRED_SEQUENCE:
            expected = fmt.REQUIRED_SEQUENCE[self._next] if self._next < len(fmt.REQUIRED_SEQUENCE) else None
            if chunk_type != expected:
                what = "a second" if chunk_type in self._seen else "out of order"
                raise FormatError(
                    f"{what} {chunk_type} chunk; critical stream chunks must appear once each in the "
                    f"order {' '.join(fmt.REQUIRED_SEQUENCE)}",
                    chunk=chunk_type,
                    offset=offset,
                )
            self._next += 1
        elif chunk_type in (fmt.ALPH, *fmt.METADATA):
            if chunk_type in self._seen:
                raise FormatError(
                    f"a second {chunk_type} chunk; it may appear at most once", chunk=chunk_type, offset=offset
                )
        elif fmt.is_critical(chunk_type):
            raise FormatError(
                f"unknown critical chunk {chunk_type}: this file needs a newer lcf reader",
                chunk=chunk_type,
                offset=offset,
            )
        self._seen.add(chunk_type)

    def finish(self, *, offset: int | None = None) -> None:
        """Account for LEND: every required chunk must have been seen."""
        if self._next < len(fmt.REQUIRED_SEQUENCE):
            missing = " ".join(fmt.REQUIRED_SEQUENCE[self._next :])
            raise FormatError(f"LEND before the required chunk(s) {missing}", chunk=fmt.LEND, offset=offset)


def check_bitmap(header: Header, payload: bytes, *, offset: int | None = None) -> None:
    """CMAP holds ceil(M/8) bytes, and the bits after channel M-1 are zero."""
    decode_channel_bitmap(payload, header.latent_channels, offset=offset)


def encode_channel_bitmap(coded: Sequence[bool]) -> bytes:
    """CMAP payload: bit c (1 = channel c coded) in byte c >> 3 at bit 7 - (c & 7), most significant bit first; the
    unused bits of the last byte zero. The one implementation of the channel bitmap (spec/lcf.md, "CMAP")."""
    out = bytearray(-(-len(coded) // 8))
    for c, flag in enumerate(coded):
        if flag:
            out[c >> 3] |= 0x80 >> (c & 7)
    return bytes(out)


def decode_channel_bitmap(payload: bytes, channels: int, *, offset: int | None = None) -> tuple[bool, ...]:
    """Inverse of :func:`encode_channel_bitmap` for ``channels`` channels; FormatError (chunk CMAP) for a payload
    of another length than ceil(channels / 8) or with an unused bit set."""
    need = -(-channels // 8)
    if len(payload) != need:
        raise FormatError(
            f"CMAP is {len(payload)} bytes; {channels} channels need {need}", chunk=fmt.CMAP, offset=offset
        )
    unused = need * 8 - channels
    if unused and payload[-1] & ((1 << unused) - 1):
        raise FormatError(
            f"CMAP sets bits after channel {channels - 1}; unused bits must be zero", chunk=fmt.CMAP, offset=offset
        )
    return tuple(bool(payload[c >> 3] & (0x80 >> (c & 7))) for c in range(channels))


def compress_alpha(plane: bytes, width: int, height: int) -> bytes:
    """ALPH payload: the zlib-compressed 8-bit alpha plane (row-major, ``width * height`` bytes)."""
    if len(plane) != width * height:
        raise FormatError(
            f"alpha plane is {len(plane)} bytes; a {width}x{height} image needs {width * height}", chunk=fmt.ALPH
        )
    return zlib.compress(bytes(plane), 9)


def decompress_alpha(payload: bytes, width: int, height: int, *, offset: int | None = None) -> bytes:
    """Inflate an ALPH payload to exactly ``width * height`` bytes, never inflating more than one byte beyond that."""
    size = width * height
    inflater = zlib.decompressobj()
    try:
        plane = inflater.decompress(payload, size + 1)
    except zlib.error as exc:
        raise CorruptDataError(f"ALPH is not a valid zlib stream: {exc}", chunk=fmt.ALPH, offset=offset) from None
    if len(plane) > size:
        raise CorruptDataError(f"ALPH inflates to more than width*height = {size} bytes", chunk=fmt.ALPH, offset=offset)
    if not inflater.eof:
        raise CorruptDataError("ALPH zlib stream is truncated", chunk=fmt.ALPH, offset=offset)
    if inflater.unused_data:
        raise CorruptDataError(
            f"{len(inflater.unused_data)} bytes follow the end of the ALPH zlib stream", chunk=fmt.ALPH, offset=offset
        )
    if len(plane) != size:
        raise CorruptDataError(
            f"ALPH inflates to {len(plane)} bytes; width*height = {size}", chunk=fmt.ALPH, offset=offset
        )
    return plane


def check_payload(header: Header, chunk: Chunk, *, offset: int | None = None) -> bytes | None:
    """Check the payload of a body chunk against the header; returns the alpha plane for ALPH, else None."""
    if chunk.type == fmt.CMAP:
        check_bitmap(header, chunk.payload, offset=offset)
    elif chunk.type == fmt.ALPH:
        return decompress_alpha(chunk.payload, header.width, header.height, offset=offset)
    return None


@dataclass(frozen=True)
class Container:
    """A parsed .lcf file: the header and the chunks between HEAD and LEND, in file order."""

    header: Header
    chunks: tuple[Chunk, ...]
    _alpha: bytes | None = field(default=None, repr=False, compare=False)

    def get(self, chunk_type: str) -> Chunk | None:
        """The first chunk of ``chunk_type``, or None."""
        return next((c for c in self.chunks if c.type == chunk_type), None)

    def _payload(self, chunk_type: str) -> bytes | None:
        chunk = self.get(chunk_type)
        return None if chunk is None else chunk.payload

    @property
    def bitmap(self) -> bytes:
        """CMAP payload (see :func:`decode_channel_bitmap`)."""
        return self._payload(fmt.CMAP) or b""

    @property
    def coded_channels(self) -> tuple[int, ...]:
        """Indices of the latent channels that are coded, ascending."""
        flags = decode_channel_bitmap(self.bitmap, self.header.latent_channels)
        return tuple(c for c, coded in enumerate(flags) if coded)

    @property
    def hyper(self) -> bytes:
        return self._payload(fmt.HYPR) or b""

    @property
    def anchor(self) -> bytes:
        return self._payload(fmt.ANCH) or b""

    @property
    def nonanchor(self) -> bytes:
        return self._payload(fmt.NANC) or b""

    @property
    def alpha(self) -> bytes | None:
        """The decompressed alpha plane (``width * height`` bytes), or None when the image has no alpha."""
        if self._alpha is not None:
            return self._alpha
        chunk = self.get(fmt.ALPH)
        return None if chunk is None else decompress_alpha(chunk.payload, self.header.width, self.header.height)

    @property
    def icc(self) -> bytes | None:
        return self._payload(fmt.ICCP)

    @property
    def exif(self) -> bytes | None:
        return self._payload(fmt.EXIF)

    @property
    def xmp(self) -> bytes | None:
        return self._payload(fmt.XMPD)

    @property
    def unknown(self) -> tuple[Chunk, ...]:
        """Ancillary chunks this version of lcf does not know, in file order (kept so callers can copy them)."""
        return tuple(c for c in self.chunks if not c.critical and c.type not in fmt.METADATA)
