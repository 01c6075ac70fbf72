"""Writer of .lcf files (spec/lcf.md). It refuses to write anything the strict reader would refuse."""

from __future__ import annotations

from collections.abc import Iterable

from lcf.container import format as fmt
from lcf.container.chunks import Chunk, ChunkOrder, check_payload
from lcf.container.header import Header, pack_header


def encode_chunk(chunk_type: str, payload: bytes) -> bytes:
    """One chunk on disk: length u32 BE, type, payload, CRC-32 u32 BE over type and payload."""
    type_bytes = chunk_type.encode("ascii")
    return b"".join(
        (len(payload).to_bytes(4, "big"), type_bytes, payload, fmt.chunk_crc(type_bytes, payload).to_bytes(4, "big"))
    )


def write_container(header: Header, chunks: Iterable[Chunk]) -> bytes:
    """The bytes of a file: signature, version, HEAD from ``header``, ``chunks`` in the order given, LEND.

    ``chunks`` are the chunks between HEAD and LEND (CMAP, HYPR, ANCH, NANC, optionally ALPH and ancillary chunks).
    Raises FormatError when they break the order rules or a payload rule (CMAP size and unused bits, ALPH size).
    Size limits are a reader's business and are not applied here.
    """
    order = ChunkOrder()
    parts = [fmt.SIGNATURE, fmt.VERSION.to_bytes(2, "big"), encode_chunk(fmt.HEAD, pack_header(header))]
    for chunk in chunks:
        order.add(chunk.type)
        check_payload(header, chunk)
        parts.append(encode_chunk(chunk.type, chunk.payload))
    order.finish()
    parts.append(encode_chunk(fmt.LEND, b""))
    return b"".join(parts)
