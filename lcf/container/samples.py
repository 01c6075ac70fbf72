"""Small valid .lcf files for tests and examples, built without the codec (the streams hold placeholder bytes).

They are valid containers: every container check passes; only decoding the streams (``lcf validate --deep``) would
fail. The worked example of spec/lcf.md is ``sample_file()``.
"""

from __future__ import annotations

from typing import Any

from lcf.container.chunks import Chunk, compress_alpha, encode_channel_bitmap
from lcf.container.header import ColorFormat, Header
from lcf.container.writer import write_container


def sample_header(**overrides: Any) -> Header:
    """A 100x50 RGB header with M = 12 and Mz = 8 channels; any field can be overridden."""
    fields: dict[str, Any] = {
        "width": 100,
        "height": 50,
        "color": ColorFormat.RGB8,
        "model_id": bytes(range(16)),
        "quality": 4.25,
        "decoder": "teacher",
        "latent_channels": 12,
        "hyper_channels": 8,
    }
    fields.update(overrides)
    return Header(**fields)


def sample_chunks(header: Header, *, alpha: bool = False, metadata: bool = False, unknown: bool = False) -> list[Chunk]:
    """CMAP (every third channel coded), placeholder HYPR/ANCH/NANC; optionally ALPH (a gradient), iCCP, eXIf, xMPd
    and one unknown ancillary chunk ``teSt``."""
    m = header.latent_channels
    chunks = [
        Chunk("CMAP", encode_channel_bitmap([c % 3 == 0 for c in range(m)])),
        Chunk("HYPR", b"hyper stream"),
        Chunk("ANCH", b"anchor stream"),
        Chunk("NANC", b"non-anchor stream"),
    ]
    if metadata:
        chunks[1:1] = [Chunk("iCCP", b"icc profile"), Chunk("eXIf", b"MM\x00*exif"), Chunk("xMPd", b"<x:xmpmeta/>")]
    if alpha:
        plane = bytes((x + y) & 0xFF for y in range(header.height) for x in range(header.width))
        chunks.append(Chunk("ALPH", compress_alpha(plane, header.width, header.height)))
    if unknown:
        chunks.append(Chunk("teSt", b"kept as is"))
    return chunks


def sample_file(*, alpha: bool = False, metadata: bool = False, unknown: bool = False, **overrides: Any) -> bytes:
    """Bytes of a valid file from :func:`sample_header` and :func:`sample_chunks`."""
    header = sample_header(**overrides)
    return write_container(header, sample_chunks(header, alpha=alpha, metadata=metadata, unknown=unknown))
