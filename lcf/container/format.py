"""Byte-level constants of the .lcf container (spec/lcf.md, "File structure" and "Chunks").

```
file  = signature (8) | version u16 BE | chunk | chunk | ... | LEND chunk
chunk = length u32 BE | type (4 ASCII letters) | payload (length bytes) | CRC-32 u32 BE over type + payload
```
"""

from __future__ import annotations

import zlib

from lcf.constants import SIGNATURE  # its bytes and why: lcf.constants
from lcf.errors import CorruptDataError, FormatError, LcfError

VERSION = 1
PREAMBLE_SIZE = len(SIGNATURE) + 2  # signature + u16 version
CHUNK_OVERHEAD = 12  # length (4) + type (4) + CRC (4)
MAX_CHUNK_LENGTH = 2**31 - 1  # as PNG: a length never has the top bit set

HEAD = "HEAD"
CMAP = "CMAP"
HYPR = "HYPR"
ANCH = "ANCH"
NANC = "NANC"
ALPH = "ALPH"
LEND = "LEND"
ICCP = "iCCP"
EXIF = "eXIf"
XMPD = "xMPd"

#: Critical chunks that every file has, exactly once each, in this order (after HEAD, before LEND).
REQUIRED_SEQUENCE = (CMAP, HYPR, ANCH, NANC)
KNOWN_CRITICAL = frozenset({HEAD, *REQUIRED_SEQUENCE, ALPH, LEND})
#: Ancillary chunks that lcf understands; each appears at most once.
METADATA = (ICCP, EXIF, XMPD)

# Well-known other formats, for a friendlier "not an lcf file" message.
_OTHER_FORMATS = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image"}


def is_valid_type(type_bytes: bytes) -> bool:
    """Whether ``type_bytes`` is a chunk type: exactly four ASCII letters (A-Z, a-z)."""
    return len(type_bytes) == 4 and type_bytes.isalpha()  # bytes.isalpha() is ASCII-only


def is_critical(chunk_type: str) -> bool:
    """Critical chunks have an upper-case first letter; a reader that does not know one must refuse the file."""
    return chunk_type[:1].isupper()


def chunk_crc(type_bytes: bytes, payload: bytes | memoryview) -> int:
    """CRC-32 (ISO 3309 / ITU-T V.42, as PNG and zlib) over the chunk type followed by its payload."""
    return zlib.crc32(payload, zlib.crc32(type_bytes))


def preamble_error(data: bytes) -> LcfError | None:
    """Check the signature and version at the start of ``data`` (at least the first 10 bytes of a file).

    Returns the error to raise, or None when the preamble is valid. Damage that the signature was designed to catch
    (a stripped high bit, CR LF <-> LF conversion, truncation) is a :class:`CorruptDataError`; anything else is a
    :class:`FormatError` (not an lcf file, or a version this reader does not know).
    """
    head = bytes(data[:PREAMBLE_SIZE])
    if head[:8] == SIGNATURE:
        if len(head) < PREAMBLE_SIZE:
            return CorruptDataError(f"file ends inside the version field after {len(head)} bytes", offset=len(head))
        version = int.from_bytes(head[8:10], "big")
        if version != VERSION:
            return FormatError(
                f"format version {version} is not supported; this reader reads version {VERSION}", offset=8
            )
        return None
    if not head:
        return FormatError("empty file: not an lcf file", offset=0)
    if len(head) < 8 and SIGNATURE.startswith(head):
        return CorruptDataError(f"file ends inside the signature after {len(head)} bytes", offset=len(head))
    if head.startswith(SIGNATURE[:4] + b"\n\x1a\n"):
        return CorruptDataError("signature damaged: CR LF became LF (file was transferred in text mode)", offset=4)
    if head.startswith(SIGNATURE[:4] + b"\r\r\n"):
        return CorruptDataError("signature damaged: LF became CR LF (file was transferred in text mode)", offset=4)
    if head[:1] == b"\x0b" and head[1:8] == SIGNATURE[1:]:
        return CorruptDataError("signature damaged: high bit stripped (file went through a 7-bit channel)", offset=0)
    if head[1:4] == b"LCF":
        return CorruptDataError(f"signature damaged: {head[:8].hex(' ')}, expected {SIGNATURE.hex(' ')}", offset=0)
    hint = next((f"; this looks like {name}" for magic, name in _OTHER_FORMATS.items() if head.startswith(magic)), "")
    return FormatError(
        f"not an lcf file: it starts with {head[:8].hex(' ')}, expected {SIGNATURE.hex(' ')}{hint}", offset=0
    )
