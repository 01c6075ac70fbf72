"""Strict reader of .lcf files (spec/lcf.md, "Reading a file").

Every check on a size happens before anything of that size is allocated; every problem is an LcfError naming the
chunk and byte offset. Layers:

```
walk_chunks      framing only: signature, version, length/type/CRC of each chunk, LEND last, nothing after it
read_container   + CRCs, chunk order, header fields, limits, payload rules (CMAP bits, ALPH size)
read_header_only signature, version and HEAD only (reads about 70 bytes from a file object)
```
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from lcf.container import format as fmt
from lcf.container.chunks import Chunk, ChunkOrder, Container, check_payload
from lcf.container.header import FIXED_SIZE, MAX_SIZE, Header, unpack_header
from lcf.container.limits import Limits
from lcf.errors import CorruptDataError, FormatError

_DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class ChunkInfo:
    """Where a chunk lies in a file and whether its CRC matches. ``offset`` is that of its length field."""

    type: str
    offset: int
    length: int
    stored_crc: int
    computed_crc: int

    @property
    def crc_ok(self) -> bool:
        return self.stored_crc == self.computed_crc

    @property
    def payload_offset(self) -> int:
        return self.offset + 8

    @property
    def crc_offset(self) -> int:
        return self.offset + 8 + self.length


def walk_chunks(data: bytes, limits: Limits = _DEFAULT_LIMITS) -> Iterator[ChunkInfo]:
    """Yield the chunks of ``data`` up to and including LEND, checking framing but not CRCs or chunk order.

    Raises on a bad signature or version, a bad chunk type, truncation (or a length beyond the end of the data), a
    length over the limits, or bytes after LEND. Used by :func:`read_container`, and by ``lcf info`` to list the
    chunks of a damaged file.
    """
    limits.check_file_size(len(data))
    error = fmt.preamble_error(data)
    if error is not None:
        raise error
    view = memoryview(data)
    pos, end = fmt.PREAMBLE_SIZE, len(data)
    while True:
        if end - pos < 8:
            where = "before the LEND chunk" if pos == end else "inside a chunk's length and type"
            raise CorruptDataError(f"file is truncated: it ends {where}", offset=end)
        length = int.from_bytes(data[pos : pos + 4], "big")
        type_bytes = bytes(data[pos + 4 : pos + 8])
        if not fmt.is_valid_type(type_bytes):
            raise FormatError(f"invalid chunk type {type_bytes!r}: a type is four ASCII letters", offset=pos + 4)
        chunk_type = type_bytes.decode("ascii")
        chunk_end = pos + fmt.CHUNK_OVERHEAD + length
        if chunk_end > end:  # before the limits: a length beyond the data is damage, not a size to allow
            raise CorruptDataError(
                f"file is truncated or the chunk's length is damaged: the chunk claims {length} "
                f"payload bytes and a CRC, only {end - pos - 8} bytes follow its type",
                chunk=chunk_type,
                offset=pos,
            )
        if length > fmt.MAX_CHUNK_LENGTH:
            raise FormatError(
                f"chunk length {length} exceeds the format's maximum {fmt.MAX_CHUNK_LENGTH}",
                chunk=chunk_type,
                offset=pos,
            )
        limits.check_chunk_length(length, chunk=chunk_type, offset=pos)
        stored = int.from_bytes(data[chunk_end - 4 : chunk_end], "big")
        computed = fmt.chunk_crc(type_bytes, view[pos + 8 : chunk_end - 4])
        yield ChunkInfo(chunk_type, pos, length, stored, computed)
        pos = chunk_end
        if chunk_type == fmt.LEND:
            if pos != end:
                raise FormatError(f"{end - pos} bytes follow the LEND chunk; nothing may follow it", offset=pos)
            return


def read_container(data: bytes, limits: Limits = _DEFAULT_LIMITS) -> Container:
    """Parse and check a whole .lcf file held in memory. Does not decode the streams (that is the codec's job).

    Raises FormatError, CorruptDataError or LimitError (all LcfError) with the chunk and offset at fault.
    """
    data = bytes(data)
    header: Header | None = None
    order = ChunkOrder()
    body: list[Chunk] = []
    alpha = None
    for info in walk_chunks(data, limits):
        if not info.crc_ok:
            raise _crc_error(info)
        payload = data[info.payload_offset : info.crc_offset]
        if header is None:
            header = _read_head(info, payload, limits)
        elif info.type == fmt.LEND:
            if info.length:
                raise FormatError(f"LEND must be empty, it has {info.length} bytes", chunk=fmt.LEND, offset=info.offset)
            order.finish(offset=info.offset)
        else:
            order.add(info.type, offset=info.offset)
            chunk = Chunk(info.type, payload, info.offset)
            plane = check_payload(header, chunk, offset=info.payload_offset)
            if plane is not None:
                alpha = plane
            body.append(chunk)
    assert header is not None  # walk_chunks yields at least LEND, and the first chunk became the header
    return Container(header, tuple(body), alpha)


def _crc_error(info: ChunkInfo) -> CorruptDataError:
    return CorruptDataError(
        f"CRC mismatch: stored {info.stored_crc:08x}, computed {info.computed_crc:08x}",
        chunk=info.type,
        offset=info.crc_offset,
    )


def _read_head(info: ChunkInfo, payload: bytes, limits: Limits) -> Header:
    if info.type != fmt.HEAD:
        raise FormatError(f"the first chunk must be HEAD, found {info.type}", chunk=info.type, offset=info.offset)
    header = unpack_header(payload, offset=info.payload_offset)
    limits.check_pixels(header.width, header.height, offset=info.payload_offset)
    return header


def read_header_only(source: bytes | BinaryIO, limits: Limits = _DEFAULT_LIMITS) -> Header:
    """Check the signature and version and parse the HEAD chunk, reading nothing after it.

    ``source`` is the file's bytes (or a prefix of at least the first ~70) or a binary file object positioned at the
    start of the file; a file object is left positioned after HEAD. Checks HEAD's CRC and the pixel limit.
    """
    read = source.read if hasattr(source, "read") else io.BytesIO(source).read
    preamble = read(fmt.PREAMBLE_SIZE)
    error = fmt.preamble_error(preamble)
    if error is not None:
        raise error
    pos = fmt.PREAMBLE_SIZE
    frame = read(8)
    if len(frame) < 8:
        raise CorruptDataError("file is truncated: it ends before the HEAD chunk", offset=pos + len(frame))
    length, type_bytes = int.from_bytes(frame[:4], "big"), bytes(frame[4:])
    if type_bytes != fmt.HEAD.encode():
        raise FormatError(f"the first chunk must be HEAD, found {type_bytes!r}", offset=pos + 4)
    if not FIXED_SIZE < length <= MAX_SIZE:
        raise FormatError(f"HEAD length {length} must be {FIXED_SIZE + 1}..{MAX_SIZE}", chunk=fmt.HEAD, offset=pos)
    rest = read(length + 4)
    if len(rest) < length + 4:
        raise CorruptDataError("file is truncated inside the HEAD chunk", chunk=fmt.HEAD, offset=pos + 8 + len(rest))
    info = ChunkInfo(
        fmt.HEAD, pos, length, int.from_bytes(rest[length:], "big"), fmt.chunk_crc(type_bytes, rest[:length])
    )
    if not info.crc_ok:
        raise _crc_error(info)
    return _read_head(info, bytes(rest[:length]), limits)
