"""The strict reader: every damage is a clean LcfError subclass with chunk and offset; limits before allocation."""

from __future__ import annotations

import io
import tracemalloc
import zlib

import pytest

from lcf.container import Chunk, Limits, read_container, read_header_only, walk_chunks, write_container
from lcf.container.header import pack_header
from lcf.container.samples import sample_chunks, sample_file, sample_header
from lcf.container.writer import encode_chunk
from lcf.errors import CorruptDataError, FormatError, LcfError, LimitError, UsageError

SIG = b"\x8bLCF\r\n\x1a\n"
PREAMBLE = SIG + b"\x00\x01"
CLEAN_ERRORS = (FormatError, CorruptDataError, LimitError)


def assemble(header_payload: bytes, *chunks: tuple[str, bytes], end: bool = True) -> bytes:
    """A file from raw chunks, bypassing the writer's checks."""
    body = [encode_chunk("HEAD", header_payload)] + [encode_chunk(t, p) for t, p in chunks]
    return PREAMBLE + b"".join(body) + (encode_chunk("LEND", b"") if end else b"")


def required(header=None) -> list[tuple[str, bytes]]:
    return [(c.type, c.payload) for c in sample_chunks(header or sample_header())]


HEAD = pack_header(sample_header())


def test_every_single_byte_change_is_a_clean_error() -> None:
    data = sample_file(metadata=True)
    for i in range(len(data)):
        for value in range(256):
            if value == data[i]:
                continue
            try:
                read_container(data[:i] + bytes([value]) + data[i + 1 :])
            except CLEAN_ERRORS as exc:
                assert exc.offset is not None, (i, value, exc)
            else:
                pytest.fail(f"byte {i} set to {value} was not detected")


def test_every_single_byte_change_of_an_alpha_file_is_a_clean_error() -> None:
    data = sample_file(alpha=True, unknown=True, width=20, height=10)
    for i in range(len(data)):
        for value in {data[i] ^ 1, data[i] ^ 0x80, data[i] ^ 0xFF, 0, 0xFF} - {data[i]}:
            with pytest.raises(CLEAN_ERRORS):
                read_container(data[:i] + bytes([value]) + data[i + 1 :])


@pytest.mark.parametrize("kwargs", [{}, {"alpha": True, "metadata": True, "unknown": True}])
def test_every_truncation_is_a_clean_error(kwargs: dict) -> None:
    data = sample_file(**kwargs)
    for n in range(len(data)):
        with pytest.raises(CLEAN_ERRORS) as info:
            read_container(data[:n])
        assert info.value.offset is not None or n == 0
        assert isinstance(info.value, CorruptDataError) or n == 0, (n, info.value)


def test_errors_name_chunk_and_offset() -> None:
    data = bytearray(sample_file())
    anch = next(c for c in walk_chunks(bytes(data)) if c.type == "ANCH")
    data[anch.payload_offset] ^= 1
    with pytest.raises(CorruptDataError, match=rf"CRC mismatch.*\(chunk ANCH, offset {anch.crc_offset}\)") as info:
        read_container(bytes(data))
    assert (info.value.chunk, info.value.offset) == ("ANCH", anch.crc_offset)


def test_unknown_ancillary_chunks_are_skipped_and_kept() -> None:
    data = assemble(HEAD, ("zzZz", b"first"), *required(), ("abCd", b"second"))
    container = read_container(data)
    assert [(c.type, c.payload) for c in container.unknown] == [("zzZz", b"first"), ("abCd", b"second")]
    assert [c.type for c in container.chunks] == ["zzZz", "CMAP", "HYPR", "ANCH", "NANC", "abCd"]
    assert container.anchor == b"anchor stream"


def test_unknown_critical_chunk_is_refused() -> None:
    data = assemble(HEAD, *required(), ("ZzZz", b"needed"))
    with pytest.raises(FormatError, match="unknown critical chunk ZzZz") as info:
        read_container(data)
    assert info.value.chunk == "ZzZz"


@pytest.mark.parametrize(
    "chunks, message",
    [
        (lambda r: r[:3], "LEND before the required chunk"),
        (lambda r: [r[1], r[0], *r[2:]], "out of order"),
        (lambda r: r + [r[0]], "a second CMAP"),
        (lambda r: r + [("ALPH", zlib.compress(bytes(5000)))] * 2, "a second ALPH"),
        (lambda r: r + [("xMPd", b"")] * 2, "a second xMPd"),
        (lambda r: r + [("HEAD", HEAD)], "HEAD may appear only first"),
        (lambda r: r + [("LEND", b"")], "bytes follow the LEND chunk"),
        (lambda r: r + [("LE1D", b"")], "invalid chunk type"),
    ],
)
def test_order_rules(chunks, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        read_container(assemble(HEAD, *chunks(required())))


def test_head_must_come_first() -> None:
    data = PREAMBLE + encode_chunk("CMAP", b"\x92\x40") + encode_chunk("HEAD", HEAD) + encode_chunk("LEND", b"")
    with pytest.raises(FormatError, match="first chunk must be HEAD"):
        read_container(data)
    with pytest.raises(FormatError, match="first chunk must be HEAD"):
        read_header_only(data)


def test_lend_must_be_empty_and_last() -> None:
    good = sample_file()
    with pytest.raises(FormatError, match="3 bytes follow the LEND"):
        read_container(good + b"abc")
    with pytest.raises(FormatError, match="LEND must be empty"):
        read_container(assemble(HEAD, *required(), end=False) + encode_chunk("LEND", b"x"))
    with pytest.raises(CorruptDataError, match="ends before the LEND"):
        read_container(assemble(HEAD, *required(), end=False))


def _head(**changes: int) -> bytes:
    """HEAD payload with raw byte-level changes: {offset: value} as keyword 'o<offset>'."""
    payload = bytearray(HEAD)
    for key, value in changes.items():
        payload[int(key[1:])] = value
    return bytes(payload)


@pytest.mark.parametrize(
    "payload, message, field_offset",
    [
        (_head(o9=1), "reserved byte is 1", 9),
        (_head(o8=2), "color format 2 is unknown", 8),
        (_head(o10=0, o11=0xFF), "quality 255/256 is outside", 10),
        (_head(o10=7, o11=1), "quality 1793/256 is outside", 10),
        (_head(o0=0, o1=0, o2=0, o3=0), "width 0 is outside", 0),
        (_head(o4=1), "height 16777266 is outside", 4),
        (_head(o35=0xC0), "padded width 192 must be", 32),
        (_head(o39=0), "padded height 0 must be", 36),
        (_head(o28=0, o29=0), "latent_channels 0 is outside", 28),
        (_head(o40=6), "decoder name length 6", 40),
        (_head(o41=ord(" ")), "decoder name ' eacher'", 41),
        (_head(o41=0xE9), "decoder name", 41),
        (HEAD[:41], "HEAD payload is 41 bytes", 0),
        (HEAD + b"x" * 17, "HEAD payload is 65 bytes", 0),
    ],
)
def test_header_fields_are_checked(payload: bytes, message: str, field_offset: int) -> None:
    with pytest.raises(FormatError, match=message) as info:
        read_container(assemble(payload, *required()))
    assert (info.value.chunk, info.value.offset) == ("HEAD", 18 + field_offset)


def test_cmap_length_and_unused_bits() -> None:
    with pytest.raises(FormatError, match="CMAP is 1 bytes; 12 channels need 2"):
        read_container(assemble(HEAD, ("CMAP", b"\x92"), *required()[1:]))
    with pytest.raises(FormatError, match="unused bits must be zero"):
        read_container(assemble(HEAD, ("CMAP", b"\x92\x41"), *required()[1:]))


@pytest.mark.parametrize(
    "payload, message",
    [
        (zlib.compress(bytes(4999)), "inflates to 4999 bytes"),
        (zlib.compress(bytes(5001)), "inflates to more than"),
        (zlib.compress(bytes(5000))[:-6], "truncated"),
        (zlib.compress(bytes(5000)) + b"x", "1 bytes follow the end"),
        (b"not zlib at all", "not a valid zlib stream"),
        (b"", "truncated"),
    ],
)
def test_alpha_must_inflate_to_exactly_width_times_height(payload: bytes, message: str) -> None:
    with pytest.raises(CorruptDataError, match=message):
        read_container(assemble(HEAD, *required(), ("ALPH", payload)))


def test_alpha_bomb_is_not_inflated() -> None:
    bomb = zlib.compress(bytes(32 * 2**20), 9)  # 32 MiB of zeros in 32 KB; the image needs 5000 bytes
    data = assemble(HEAD, *required(), ("ALPH", bomb))
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDataError, match="inflates to more than"):
            read_container(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * len(data) + 2**20


def _huge_file() -> bytes:
    head = pack_header(sample_header(width=100_000, height=100_000))
    return assemble(head, *required(), ("ALPH", zlib.compress(bytes(1000))))


def test_huge_image_is_refused_before_allocation() -> None:
    data = _huge_file()
    tracemalloc.start()
    try:
        with pytest.raises(LimitError, match="100000x100000 = 10000000000 pixels exceeds") as info:
            read_container(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert info.value.chunk == "HEAD" and info.value.exit_code == 5
    with pytest.raises(LimitError):
        read_header_only(data)


def test_pixel_limit_override() -> None:
    data = assemble(pack_header(sample_header(width=100_000, height=100_000)), *required())
    assert read_container(data, Limits(max_pixels=10**10)).header.width == 100_000
    assert read_container(data, Limits.unlimited()).header.height == 100_000
    with pytest.raises(LimitError):
        read_container(data, Limits(max_pixels=10**10 - 1))
    small = sample_file()
    with pytest.raises(LimitError):
        read_container(small, Limits(max_pixels=4999))
    assert read_container(small, Limits(max_pixels=5000))


def test_chunk_length_and_file_size_limits() -> None:
    data = sample_file()
    with pytest.raises(LimitError, match="chunk length 48 exceeds the limit of 47") as info:
        read_container(data, Limits(max_chunk_length=47))
    assert info.value.chunk == "HEAD"
    with pytest.raises(LimitError, match="file of 174 bytes exceeds"):
        read_container(data, Limits(max_file_size=173))
    assert read_container(data, Limits(max_chunk_length=48, max_file_size=174))


def test_claimed_length_beyond_the_file_is_truncation_not_allocation() -> None:
    data = bytearray(sample_file())
    for claim in (2**31 - 1, 2**31, 2**32 - 1):  # CMAP claims 2 GiB, more than the format allows, 4 GiB
        data[70:74] = claim.to_bytes(4, "big")
        for limits in (Limits(), Limits.unlimited()):
            with pytest.raises(CorruptDataError, match="truncated or the chunk's length is damaged") as info:
                read_container(bytes(data), limits)
            assert (info.value.chunk, info.value.offset, info.value.exit_code) == ("CMAP", 70, 4)


def test_a_flipped_bit_in_any_chunk_length_is_corruption_not_a_limit() -> None:
    """Issue 20: a length pointing past the end of the file was a LimitError (exit 5, "raise it with
    Limits(max_chunk_length=...)") or a FormatError; every flipped bit of a length field is damage (exit 4)."""
    data = sample_file(alpha=True, metadata=True, unknown=True, width=40, height=30)
    for chunk in walk_chunks(data):
        for bit in range(32):
            damaged = bytearray(data)
            damaged[chunk.offset : chunk.offset + 4] = (chunk.length ^ (1 << bit)).to_bytes(4, "big")
            with pytest.raises(CorruptDataError) as info:
                read_container(bytes(damaged))
            assert "Limits(" not in str(info.value), (chunk.type, bit, info.value)


def test_limits_must_be_positive() -> None:
    for bad in (0, -1, 1.5, "10", True):
        with pytest.raises(UsageError):
            Limits(max_pixels=bad)


@pytest.mark.parametrize(
    "start, error, message",
    [
        (b"", FormatError, "empty file"),
        (SIG[:5], CorruptDataError, "ends inside the signature"),
        (SIG + b"\x00", CorruptDataError, "ends inside the version"),
        (SIG + b"\x00\x02", FormatError, "version 2 is not supported"),
        (SIG + b"\x00\x00", FormatError, "version 0 is not supported"),
        (b"\x8bLCF\n\x1a\n\x00\x01", CorruptDataError, "CR LF became LF"),
        (b"\x8bLCF\r\r\n\x1a\r\n\x00\x01", CorruptDataError, "LF became CR LF"),
        (b"\x0bLCF\r\n\x1a\n\x00\x01", CorruptDataError, "high bit stripped"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", FormatError, "looks like a PNG image"),
        (b"hello world", FormatError, "not an lcf file"),
    ],
)
def test_signature_and_version(start: bytes, error: type[LcfError], message: str) -> None:
    with pytest.raises(error, match=message):
        read_container(start + sample_file()[10:] if len(start) >= 10 else start)
    with pytest.raises(error, match=message):
        read_header_only(start + sample_file()[10:] if len(start) >= 10 else start)


def test_read_header_only_reads_only_the_header() -> None:
    data = sample_file(metadata=True)
    header_end = 10 + 12 + len(HEAD)
    garbage_after = data[:header_end] + b"\x00garbage that is not a chunk"
    assert read_header_only(garbage_after) == sample_header()
    f = io.BytesIO(data)
    assert read_header_only(f) == sample_header()
    assert f.tell() == header_end
    for n in range(header_end):
        with pytest.raises(CLEAN_ERRORS):
            read_header_only(data[:n])
    damaged = bytearray(data)
    damaged[30] ^= 4
    with pytest.raises(CorruptDataError, match="CRC mismatch"):
        read_header_only(io.BytesIO(damaged))


def test_walk_chunks_lists_chunks_with_bad_crcs() -> None:
    data = bytearray(sample_file())
    data[78] ^= 1  # inside the CMAP payload
    chunks = list(walk_chunks(bytes(data)))
    assert [c.type for c in chunks] == ["HEAD", "CMAP", "HYPR", "ANCH", "NANC", "LEND"]
    assert [c.crc_ok for c in chunks] == [True, False, True, True, True, True]
    assert chunks[1].offset == 70 and chunks[1].length == 2


def test_container_accessors_without_optional_chunks() -> None:
    container = read_container(sample_file())
    assert container.alpha is None and container.icc is None and container.exif is None and container.xmp is None
    assert container.unknown == ()
    assert container.coded_channels == (0, 3, 6, 9)
    assert container.get("ALPH") is None


def test_container_built_by_hand_inflates_alpha_on_demand() -> None:
    header = sample_header(width=4, height=2)
    chunks = sample_chunks(header, alpha=True)
    from lcf.container import Container

    assert Container(header, tuple(chunks)).alpha == bytes([0, 1, 2, 3, 1, 2, 3, 4])
    assert read_container(write_container(header, chunks)).alpha == bytes([0, 1, 2, 3, 1, 2, 3, 4])


def test_chunk_offsets_are_recorded_but_not_compared() -> None:
    container = read_container(sample_file())
    assert container.chunks[0].offset == 70
    assert container.chunks[0] == Chunk("CMAP", container.chunks[0].payload)
