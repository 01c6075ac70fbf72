"""The .lcf container: bytes <-> (Header, chunks). Standard library only; knows nothing of tensors or images.

The normative description is spec/lcf.md. Typical use::

    data = write_container(header, [Chunk("CMAP", bitmap), Chunk("HYPR", z), Chunk("ANCH", a), Chunk("NANC", n)])
    container = read_container(data)          # strict: raises an LcfError subclass on any problem
    container.header.width, container.anchor, container.alpha
"""

from lcf.container.chunks import (
    Chunk,
    Container,
    compress_alpha,
    decode_channel_bitmap,
    decompress_alpha,
    encode_channel_bitmap,
)
from lcf.container.format import SIGNATURE, VERSION, is_critical
from lcf.container.header import ColorFormat, Header, snap_quality
from lcf.container.limits import Limits
from lcf.container.reader import ChunkInfo, read_container, read_header_only, walk_chunks
from lcf.container.writer import write_container

__all__ = [
    "SIGNATURE",
    "VERSION",
    "Chunk",
    "ChunkInfo",
    "ColorFormat",
    "Container",
    "Header",
    "Limits",
    "compress_alpha",
    "decode_channel_bitmap",
    "decompress_alpha",
    "encode_channel_bitmap",
    "is_critical",
    "read_container",
    "read_header_only",
    "snap_quality",
    "walk_chunks",
    "write_container",
]
