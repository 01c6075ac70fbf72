"""Round trips of the container (property tests) and the writer's refusals."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lcf.container import (
    Chunk,
    ColorFormat,
    Header,
    Limits,
    compress_alpha,
    decode_channel_bitmap,
    encode_channel_bitmap,
    read_container,
    read_header_only,
    snap_quality,
    write_container,
)
from lcf.container.format import METADATA
from lcf.container.header import pack_header, unpack_header
from lcf.container.samples import sample_chunks, sample_file, sample_header
from lcf.errors import CorruptDataError, FormatError, LimitError

MAX_DIM = 2**24 - 1
dimension = st.one_of(st.integers(1, 64), st.integers(1, MAX_DIM))


@st.composite
def headers(draw: st.DrawFn) -> Header:
    return Header(
        width=draw(dimension),
        height=draw(dimension),
        color=draw(st.sampled_from(ColorFormat)),
        model_id=draw(st.binary(min_size=16, max_size=16)),
        quality=draw(st.floats(1.0, 7.0)),
        decoder=draw(st.from_regex(r"[A-Za-z0-9_.\-]{1,16}", fullmatch=True)),
        latent_channels=draw(st.one_of(st.integers(1, 300), st.integers(1, 65535))),
        hyper_channels=draw(st.integers(1, 65535)),
    )


unknown_types = st.from_regex(r"[a-z][A-Za-z]{3}", fullmatch=True).filter(lambda t: t not in METADATA)
payloads = st.binary(max_size=64)


@st.composite
def files(draw: st.DrawFn) -> tuple[Header, list[Chunk], bytes | None]:
    """A header and a valid chunk sequence: the required chunks in order, extras inserted anywhere."""
    header = draw(headers())
    n = header.bitmap_length
    bitmap = bytearray(draw(st.binary(min_size=n, max_size=n)))
    bitmap[-1] &= (0xFF00 >> (header.latent_channels - 8 * (n - 1))) & 0xFF  # unused bits zero
    chunks = [Chunk("CMAP", bytes(bitmap))] + [Chunk(t, draw(payloads)) for t in ("HYPR", "ANCH", "NANC")]
    extras = [Chunk(t, draw(payloads)) for t in METADATA if draw(st.booleans())]
    extras += [Chunk(draw(unknown_types), draw(payloads)) for _ in range(draw(st.integers(0, 3)))]
    plane = None
    if header.width * header.height <= 4096 and draw(st.booleans()):
        plane = draw(st.binary(min_size=header.width * header.height, max_size=header.width * header.height))
        extras.append(Chunk("ALPH", compress_alpha(plane, header.width, header.height)))
    for chunk in extras:
        chunks.insert(draw(st.integers(0, len(chunks))), chunk)
    return header, chunks, plane


@given(files())
def test_write_then_read_gives_back_the_same_values(case: tuple[Header, list[Chunk], bytes | None]) -> None:
    header, chunks, plane = case
    data = write_container(header, chunks)
    container = read_container(data, Limits.unlimited())
    assert container.header == header
    assert container.chunks == tuple(chunks)
    by_type = {c.type: c.payload for c in chunks}
    assert container.bitmap == by_type["CMAP"]
    assert (container.hyper, container.anchor, container.nonanchor) == (
        by_type["HYPR"],
        by_type["ANCH"],
        by_type["NANC"],
    )
    assert (container.icc, container.exif, container.xmp) == tuple(by_type.get(t) for t in METADATA)
    assert container.alpha == plane
    assert container.unknown == tuple(c for c in chunks if c.type[0].islower() and c.type not in METADATA)
    assert read_header_only(data, Limits.unlimited()) == header
    if header.width * header.height > Limits().max_pixels:
        with pytest.raises(LimitError):
            read_container(data)
    else:
        assert read_container(data) == container


@given(headers())
def test_header_pack_unpack(header: Header) -> None:
    payload = pack_header(header)
    assert len(payload) == 41 + len(header.decoder)
    assert unpack_header(payload) == header
    assert header.padded_width % 64 == 0 and 0 <= header.padded_width - header.width < 64
    assert header.latent_shape == (header.latent_channels, header.padded_height // 16, header.padded_width // 16)
    assert header.hyper_shape == (header.hyper_channels, header.padded_height // 64, header.padded_width // 64)


@given(st.floats(1.0, 7.0))
def test_quality_is_snapped_to_the_stored_grid(q: float) -> None:
    header = sample_header(quality=q)
    assert header.quality == snap_quality(q) == math.floor(q * 256 + 0.5) / 256
    assert abs(header.quality - q) <= 1 / 512
    assert sample_header(quality=header.quality) == header


@given(st.lists(st.booleans(), min_size=1, max_size=100))
def test_channel_bitmap_round_trip(flags: list[bool]) -> None:
    payload = encode_channel_bitmap(flags)
    assert len(payload) == -(-len(flags) // 8)
    assert decode_channel_bitmap(payload, len(flags)) == tuple(flags)


def test_bitmap_is_msb_first() -> None:
    assert encode_channel_bitmap([True] + [False] * 7 + [False, True]) == b"\x80\x40"


def test_channel_bitmap_rejects_bad_data() -> None:
    with pytest.raises(FormatError, match="unused bits must be zero"):
        decode_channel_bitmap(bytes([0xFF, 0x41]), 10)
    with pytest.raises(FormatError):
        decode_channel_bitmap(bytes([0xFF]), 10)
    with pytest.raises(FormatError):
        decode_channel_bitmap(bytes([0xFF, 0, 0]), 10)


def test_head_byte_layout_is_pinned() -> None:
    """The layout documented in spec/lcf.md, "HEAD"; the worked example there is this header."""
    payload = pack_header(sample_header())
    assert payload.hex() == (
        "000000640000003200000440000102030405060708090a0b0c0d0e0f000c0008000000800000004007" + b"teacher".hex()
    )


def test_spec_example_is_what_the_writer_writes() -> None:
    """The hex dump in spec/lcf.md, "Example", is byte for byte the writer's output for the sample file."""
    spec = (Path(__file__).parents[1] / "spec" / "lcf.md").read_text(encoding="utf-8")
    dump = re.search(r"```hexdump\n(.*?)```", spec, re.DOTALL)
    assert dump is not None
    documented = bytes.fromhex("".join(line[6:] for line in dump.group(1).splitlines()))
    data = sample_file()
    assert documented == data
    assert len(data) == 174 and data[-12:].hex() == "000000004c454e44999c90b0"  # LEND and its CRC


@pytest.mark.parametrize(
    "field, value",
    [
        ("width", 0),
        ("width", 2**24),
        ("height", -1),
        ("color", 2),
        ("model_id", b"short"),
        ("quality", 0.99),
        ("quality", 7.01),
        ("quality", float("nan")),
        ("decoder", ""),
        ("decoder", "x" * 17),
        ("decoder", "a b"),
        ("decoder", "é"),
        ("latent_channels", 0),
        ("hyper_channels", 65536),
        ("width", 1.5),
        ("quality", True),
    ],
)
def test_invalid_header_fields_are_refused(field: str, value: object) -> None:
    with pytest.raises(FormatError, match=field.split("_")[0]):
        sample_header(**{field: value})


def _required() -> list[Chunk]:
    return sample_chunks(sample_header())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c[:3], "LEND before the required chunk"),
        (lambda c: c[1:], "out of order"),
        (lambda c: [c[1], c[0], *c[2:]], "out of order"),
        (lambda c: c + [c[3]], "a second NANC"),
        (lambda c: c + [Chunk("ALPH", compress_alpha(bytes(5000), 100, 50))] * 2, "a second ALPH"),
        (lambda c: c + [Chunk("iCCP", b"")] * 2, "a second iCCP"),
        (lambda c: c + [Chunk("HEAD", b"")], "HEAD may appear only first"),
        (lambda c: c + [Chunk("LEND", b"")], "LEND may appear only last"),
        (lambda c: c + [Chunk("QUUX", b"")], "unknown critical chunk QUUX"),
        (lambda c: [Chunk("CMAP", b"\x92")] + c[1:], "CMAP is 1 bytes"),
        (lambda c: [Chunk("CMAP", b"\x92\x4f")] + c[1:], "unused bits must be zero"),
        (lambda c: c + [Chunk("ALPH", compress_alpha(bytes(10), 5, 2))], "ALPH inflates to 10 bytes"),
    ],
)
def test_writer_refuses_what_the_reader_would_refuse(edit, message: str) -> None:
    with pytest.raises((FormatError, CorruptDataError), match=message):
        write_container(sample_header(), edit(_required()))


def test_chunk_type_must_be_four_letters() -> None:
    for bad in ("ABC", "ABCDE", "AB1D", "AB D", "ÄBCD"):
        with pytest.raises(FormatError, match="four ASCII letters"):
            Chunk(bad, b"")
