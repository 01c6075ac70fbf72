"""lcf.pillow, the Pillow plugin, against stand-ins for lcf.container.reader and lcf.api.

These tests need no codec: they check signature sniffing, registration, what _open reads, that load() decodes once
with the registered options, and what _save passes on. The same paths through the real container and codec are in
test_pillow_codec.py.
"""

from __future__ import annotations

import enum
import functools
import io
import sys
import types
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from images import make_rgb, make_rgba, srgb_icc, to_bytes, xmp_packet
from PIL import Image, UnidentifiedImageError

import lcf.container
import lcf.errors
import lcf.pillow
from lcf.errors import CorruptDataError, FormatError, LcfError, LimitError, UsageError

SIGNATURE = bytes.fromhex("8B4C43460D0A1A0A")


class ColorFormat(enum.IntEnum):
    RGB8 = 0
    GRAY8 = 1


@dataclass(frozen=True)
class Header:
    width: int
    height: int
    color: ColorFormat = ColorFormat.RGB8
    quality: float = 4.0
    decoder: str = "teacher"
    model_id: bytes = bytes(range(16))


@dataclass(frozen=True)
class Chunk:
    type: str
    payload: bytes


@dataclass
class FakeCodec:
    """Stands in for lcf.container.reader and lcf.api; a file is SIGNATURE + a key into ``files``."""

    files: dict[bytes, tuple[Any, Image.Image | None]] = field(default_factory=dict)
    decode_calls: list[dict[str, Any]] = field(default_factory=list)
    encode_calls: list[dict[str, Any]] = field(default_factory=list)
    limits: list[Any] = field(default_factory=list)

    def add(self, key: bytes, container: Any, decoded: Image.Image | None = None) -> bytes:
        self.files[key] = (container, decoded)
        return SIGNATURE + key

    def read_container(self, data: bytes, limits: Any = None) -> Any:
        self.limits.append(limits)
        if data[8:] not in self.files:
            raise FormatError("no HEAD chunk", chunk="HEAD", offset=10)
        container = self.files[data[8:]][0]
        if isinstance(container, Exception):
            raise container
        return container

    def decode_bytes(self, data: bytes, **kwargs: Any) -> Image.Image:
        self.decode_calls.append(kwargs)
        decoded = self.files[data[8:]][1]
        assert decoded is not None
        return decoded.copy()

    def encode_image(self, prepared: Any, **kwargs: Any) -> bytes:  # an lcf.image.PreparedImage, as _save makes it
        self.encode_calls.append({"prepared": prepared, **kwargs})
        return SIGNATURE + b"encoded"


@pytest.fixture
def codec(monkeypatch: pytest.MonkeyPatch) -> FakeCodec:
    fake = FakeCodec()
    monkeypatch.setattr(lcf.container, "read_container", fake.read_container)
    api = types.ModuleType("lcf.api")
    api.decode_bytes = fake.decode_bytes  # type: ignore[attr-defined]
    api.encode_image = fake.encode_image  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lcf.api", api)
    yield fake
    lcf.pillow.register()  # back to the default options


def _container(header: Header, alpha: bytes | None = None, icc=None, exif=None, xmp=None) -> Any:  # noqa: ANN001
    return types.SimpleNamespace(header=header, alpha=alpha, icc=icc, exif=exif, xmp=xmp)


def test_signature_is_the_design_contract() -> None:
    assert lcf.pillow.SIGNATURE == SIGNATURE
    assert lcf.pillow._accept(SIGNATURE + b"\x00\x01")
    assert not lcf.pillow._accept(SIGNATURE[:7])
    assert not lcf.pillow._accept(b"\x89PNG\r\n\x1a\n")


def test_registered_with_pillow() -> None:
    assert Image.registered_extensions()[".lcf"] == "LCF"
    assert Image.MIME["LCF"] == "image/x-lcf"
    assert "LCF" in Image.OPEN and "LCF" in Image.SAVE


def test_open_reads_header_and_metadata_without_decoding(codec: FakeCodec) -> None:
    icc, exif, xmp = srgb_icc(), Image.Exif().tobytes(), xmp_packet()
    data = codec.add(b"a", _container(Header(33, 17, quality=2.5, decoder="student"), icc=icc, exif=exif, xmp=xmp))
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.size, im.mode) == ("LCF", (33, 17), "RGB")
        assert im.get_format_mimetype() == "image/x-lcf"
        assert (im.info["icc_profile"], im.info["exif"], im.info["xmp"]) == (icc, exif, xmp)
        assert im.info["lcf_quality"] == 2.5 and im.info["lcf_decoder"] == "student"
        assert im.info["lcf_model_id"] == bytes(range(16)).hex()
    assert codec.decode_calls == []


@pytest.mark.parametrize(
    ("color", "alpha", "mode"),
    [(ColorFormat.RGB8, None, "RGB"), (ColorFormat.RGB8, b"z", "RGBA"), (ColorFormat.GRAY8, None, "L"),
     (ColorFormat.GRAY8, b"z", "LA")],
)  # fmt: skip
def test_mode_from_color_and_alpha(codec: FakeCodec, color: ColorFormat, alpha: bytes | None, mode: str) -> None:
    data = codec.add(b"m", _container(Header(4, 3, color=color), alpha=alpha))
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == mode


def test_metadata_from_chunks_when_the_container_has_no_attributes(codec: FakeCodec) -> None:
    chunks = [Chunk("CMAP", b""), Chunk("ALPH", b"z"), Chunk("iCCP", b"icc"), Chunk("xMPd", b"<x/>")]
    data = codec.add(b"c", types.SimpleNamespace(header=Header(4, 3), chunks=chunks))
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGBA" and im.info["icc_profile"] == b"icc" and im.info["xmp"] == b"<x/>"
        assert "exif" not in im.info


def test_load_decodes_once_with_the_registered_options(codec: FakeCodec) -> None:
    decoded = make_rgba(6, 5, kind="noise")
    data = codec.add(b"d", _container(Header(6, 5), alpha=b"z"), decoded)
    lcf.pillow.register(decoder="student-s", device="cuda", weights="/w")
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        im.load()
        assert np.array_equal(np.asarray(im), np.asarray(decoded))
        assert im.getpixel((0, 0)) == decoded.getpixel((0, 0))
    assert codec.decode_calls == [{"decoder": "student-s", "device": "cuda", "weights": "/w"}]


def test_default_options_and_mode_conversion(codec: FakeCodec) -> None:
    decoded = make_rgb(6, 5, "gradient")  # a decoder that hands back RGB for a gray file
    data = codec.add(b"g", _container(Header(6, 5, color=ColorFormat.GRAY8)), decoded)
    with Image.open(io.BytesIO(data)) as im:
        assert im.convert("L").mode == "L" and im.mode == "L"
        assert np.array_equal(np.asarray(im), np.asarray(decoded.convert("L")))
    assert codec.decode_calls == [{"decoder": None, "device": "cpu"}]


def test_decoded_size_must_match_the_header(codec: FakeCodec) -> None:
    data = codec.add(b"s", _container(Header(6, 5)), make_rgb(5, 6))
    with Image.open(io.BytesIO(data)) as im, pytest.raises(LcfError, match="header says"):
        im.load()


def test_file_opened_by_path_is_closed_after_load(codec: FakeCodec, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "x.lcf"
    path.write_bytes(codec.add(b"p", _container(Header(3, 2)), make_rgb(3, 2)))
    im = Image.open(path)
    fp = im.fp
    im.load()
    assert fp.closed and im.size == (3, 2)


def test_format_error_means_not_mine(codec: FakeCodec) -> None:
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(SIGNATURE + b"unknown"))


def test_unreadable_header_means_not_mine(codec: FakeCodec) -> None:
    data = codec.add(b"x", CorruptDataError("CRC mismatch", chunk="HEAD", offset=14))
    with pytest.raises(UnidentifiedImageError):  # as Pillow's PNG plugin does for a broken IHDR
        Image.open(io.BytesIO(data))


def test_pixel_limit_is_pillows(codec: FakeCodec, monkeypatch: pytest.MonkeyPatch) -> None:
    data = codec.add(b"big", _container(Header(40, 40)))
    with Image.open(io.BytesIO(data)):
        pass
    assert codec.limits[-1].max_pixels is None  # the container leaves pixels to Pillow's check ...
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(Image.DecompressionBombError):  # ... which Image.open makes right after _open
        Image.open(io.BytesIO(data))


def test_oversized_file_is_refused_before_reading(codec: FakeCodec, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lcf.container, "Limits", functools.partial(lcf.container.Limits, max_file_size=10))
    data = codec.add(b"0123456789", _container(Header(4, 4)))
    with pytest.raises(LimitError, match="10 bytes"):
        Image.open(io.BytesIO(data))
    assert codec.limits == []  # never parsed


def test_other_formats_are_not_claimed() -> None:
    with Image.open(io.BytesIO(to_bytes(make_rgb(4, 4), "PNG"))) as im:
        assert im.format == "PNG"


def test_save_passes_quality_and_decoder(codec: FakeCodec) -> None:
    image = make_rgb(8, 8, "noise")
    buffer = io.BytesIO()
    image.save(buffer, format="LCF")
    image.save(buffer, format="LCF", quality=2, decoder="student")
    assert buffer.getvalue() == (SIGNATURE + b"encoded") * 2
    assert [(c["quality"], c["decoder"]) for c in codec.encode_calls] == [(4.0, None), (2.0, "student")]
    assert np.array_equal(codec.encode_calls[0]["prepared"].rgb, np.asarray(image))


def test_save_by_extension(codec: FakeCodec, tmp_path) -> None:  # noqa: ANN001
    make_rgb(4, 4).save(tmp_path / "out.lcf")
    assert (tmp_path / "out.lcf").read_bytes() == SIGNATURE + b"encoded"


def test_save_metadata_overrides_without_touching_the_image(codec: FakeCodec) -> None:
    image = make_rgb(4, 4)
    image.save(io.BytesIO(), format="LCF", icc_profile=b"icc", xmp=b"<x/>")
    assert codec.encode_calls[0]["prepared"].icc == b"icc" and codec.encode_calls[0]["prepared"].xmp == b"<x/>"
    assert "icc_profile" not in image.info


@pytest.mark.parametrize("quality", [0.5, 7.5, "high", True])
def test_save_refuses_bad_quality(codec: FakeCodec, quality: object) -> None:
    with pytest.raises(UsageError, match="quality"):
        make_rgb(4, 4).save(io.BytesIO(), format="LCF", quality=quality)
    assert codec.encode_calls == []


def test_missing_codec_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lcf.api", types.ModuleType("lcf.api"))
    with pytest.raises(LcfError, match=r"lcf\.api\.encode_image"):
        make_rgb(4, 4).save(io.BytesIO(), format="LCF")
    monkeypatch.setitem(sys.modules, "lcf.api", None)  # import fails
    with pytest.raises(LcfError, match=r"lcf\.api"):
        lcf.pillow._decode(SIGNATURE)


# ------------------------------------------------------------------ the real container (no codec needed to open)


def test_open_a_real_container_file() -> None:
    samples = pytest.importorskip("lcf.container.samples")
    data = samples.sample_file(alpha=True, metadata=True, quality=2.5, decoder="student")
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.size, im.mode) == ("LCF", (100, 50), "RGBA")
        assert im.info["icc_profile"] == b"icc profile" and im.info["xmp"] == b"<x:xmpmeta/>"
        assert im.info["exif"] == b"Exif\x00\x00MM\x00*exif"  # Pillow convention: prefixed
        assert (im.info["lcf_quality"], im.info["lcf_decoder"]) == (2.5, "student")
    gray = samples.sample_file(color=lcf.container.ColorFormat.GRAY8)
    with Image.open(io.BytesIO(gray)) as im:
        assert im.mode == "L" and "icc_profile" not in im.info


def test_real_container_errors() -> None:
    samples = pytest.importorskip("lcf.container.samples")
    data = samples.sample_file()
    with pytest.raises(UnidentifiedImageError):  # a FormatError (here: bad version) means "not mine"
        Image.open(io.BytesIO(data[:8] + b"\x00\x63" + data[10:]))
    damaged = bytearray(data)
    damaged[-20] ^= 0xFF  # inside a stream chunk: its CRC no longer matches
    with Image.open(io.BytesIO(bytes(damaged))) as im:  # the header is fine: it opens, as a truncated PNG does
        assert (im.format, im.size) == ("LCF", (100, 50))
        with pytest.raises(CorruptDataError, match="CRC"):
            im.load()


# ------------------------------------------------------------------ Pillow's conventions (issue 21)


@pytest.mark.parametrize("quality", [95, 80, 100, 8])
def test_save_with_a_jpeg_style_quality_says_what_to_pass(codec: FakeCodec, quality: int) -> None:
    with pytest.raises(ValueError, match=r"1 \(smallest file\) to 7 \(best\).*not the 0\.\.100 of JPEG"):
        make_rgb(4, 4).save(io.BytesIO(), format="LCF", quality=quality)
    assert codec.encode_calls == []


def test_quality_of_an_opened_file_saves_again(codec: FakeCodec) -> None:
    data = codec.add(b"q", _container(Header(4, 4, quality=6.25)), decoded=make_rgb(4, 4))
    with Image.open(io.BytesIO(data)) as im:
        im.save(io.BytesIO(), format="LCF", quality=im.info["lcf_quality"])
    assert codec.encode_calls[-1]["quality"] == 6.25


def test_save_warns_with_each_conversion_note(codec: FakeCodec) -> None:
    with pytest.warns(lcf.errors.ConversionWarning, match="lcf: palette input converted to RGB"):
        make_rgb(8, 8, "noise").convert("P").save(io.BytesIO(), format="LCF")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing changed: no warning
        make_rgb(8, 8, "noise").save(io.BytesIO(), format="LCF")


def test_save_to_a_path_with_a_bad_quality_leaves_no_file(codec: FakeCodec, tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError):
        make_rgb(4, 4).save(tmp_path / "x.lcf", quality=95)
    assert list(tmp_path.iterdir()) == []


def _truncated_and_damaged() -> list[bytes]:
    samples = pytest.importorskip("lcf.container.samples")
    data = samples.sample_file(alpha=True, metadata=True)
    damaged = bytearray(data)
    damaged[-20] ^= 0xFF
    return [data[: len(data) // 2], data[:-5], bytes(damaged)]


def test_damaged_files_are_oserrors_on_load_and_verify_as_for_pillows_formats() -> None:
    """What a Pillow user writes for a truncated PNG works for a truncated .lcf file."""
    for data in _truncated_and_damaged():
        with Image.open(io.BytesIO(data)) as im:  # the header is readable
            try:
                im.load()
            except OSError as exc:  # the Pillow way
                assert isinstance(exc, LcfError) and exc.exit_code in (3, 4)
            else:
                raise AssertionError("a damaged file decoded")
        with Image.open(io.BytesIO(data)) as im, pytest.raises(OSError):
            im.verify()


def test_not_an_lcf_header_is_unidentified_the_pillow_way() -> None:
    samples = pytest.importorskip("lcf.container.samples")
    data = samples.sample_file()
    for bad in (data[:20], data[:8] + b"\x00\x63" + data[10:], lcf.pillow.SIGNATURE):
        try:
            Image.open(io.BytesIO(bad))
        except UnidentifiedImageError:  # an OSError too
            pass
        else:
            raise AssertionError("an unreadable header was identified")
    with Image.open(io.BytesIO(data)) as im:
        im.verify()  # an intact file verifies
