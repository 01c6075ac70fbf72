"""lcf.image: every input a user has -> PreparedImage, and back (to_pil, save_image)."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from images import (
    ALPHA_MODES,
    GRAY_MODES,
    MODES,
    ODD_SIZES,
    animated_gif,
    exif_bytes,
    make_alpha,
    make_mode,
    make_palette,
    make_rgb,
    make_rgb_array,
    make_rgba,
    png_16bit,
    srgb_icc,
    to_bytes,
    xmp_packet,
)
from PIL import Image, ImageOps

from lcf.errors import LcfIOError, LimitError, UnsupportedImageError, UsageError
from lcf.image import NOTE_16_BIT, PreparedImage, load_image, save_image, to_pil


def _orientation(exif: bytes) -> int | None:
    parsed = Image.Exif()
    parsed.load(exif)
    return parsed.get(0x0112)


# ------------------------------------------------------------------------------------------- every mode


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (17, 13)])
def test_every_mode_loads(mode: str, size: tuple[int, int]) -> None:
    width, height = size
    prepared = load_image(make_mode(mode, width, height))
    assert prepared.rgb.shape == (height, width, 3) and prepared.rgb.dtype == np.uint8
    assert prepared.color == ("L" if mode in GRAY_MODES else "RGB")
    assert (prepared.alpha is not None) == (mode in ALPHA_MODES)
    if prepared.color == "L":
        assert (prepared.rgb == prepared.rgb[..., :1]).all()


@pytest.mark.parametrize("kind", ["gradient", "noise", "edges", "text", "checker", "flat", "mixed"])
def test_rgb_is_exact(kind: str) -> None:
    source = make_rgb(23, 17, kind, seed=3)
    prepared = load_image(source)
    assert np.array_equal(prepared.rgb, np.asarray(source))
    assert prepared.alpha is None and prepared.notes == ()


@pytest.mark.parametrize("size", ODD_SIZES)
def test_odd_and_thin_sizes_from_png(size: tuple[int, int]) -> None:
    source = make_rgba(*size, kind="noise", alpha="noise")
    prepared = load_image(to_bytes(source, "PNG"))
    assert np.array_equal(prepared.rgb, np.asarray(source)[..., :3])
    assert np.array_equal(prepared.alpha, np.asarray(source)[..., 3])
    assert (prepared.width, prepared.height) == size


def test_gray_is_repeated_exactly() -> None:
    gray = make_mode("L", 13, 7)
    prepared = load_image(gray)
    assert prepared.color == "L"
    for c in range(3):
        assert np.array_equal(prepared.rgb[..., c], np.asarray(gray))


def test_one_bit_becomes_0_and_255() -> None:
    prepared = load_image(to_bytes(make_mode("1", 16, 9), "PNG"))
    assert prepared.color == "L" and set(np.unique(prepared.rgb).tolist()) <= {0, 255}


@pytest.mark.parametrize("alpha", ["gradient", "binary", "noise", "opaque", "transparent"])
@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_alpha_is_kept_exactly(alpha: str, fmt: str) -> None:
    source = make_rgba(19, 11, kind="edges", alpha=alpha)
    params = {"lossless": True, "exact": True} if fmt == "WEBP" else {}
    prepared = load_image(to_bytes(source, fmt, **params))
    if fmt == "WEBP" and alpha == "opaque":
        assert prepared.alpha is None  # libwebp drops an all-opaque alpha channel when it writes the file
    else:
        assert np.array_equal(prepared.alpha, np.asarray(source)[..., 3])
    assert np.array_equal(prepared.rgb, np.asarray(source)[..., :3])


def test_gray_alpha_is_kept_exactly() -> None:
    source = make_mode("LA", 12, 5)
    prepared = load_image(to_bytes(source, "PNG"))
    assert prepared.color == "L"
    assert np.array_equal(prepared.alpha, np.asarray(source)[..., 1])
    assert np.array_equal(prepared.rgb[..., 0], np.asarray(source)[..., 0])


def test_premultiplied_modes_are_unpremultiplied() -> None:
    source = make_mode("RGBA", 8, 8)
    prepared = load_image(source.convert("RGBa"))
    assert np.array_equal(prepared.alpha, np.asarray(source)[..., 3])


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_becomes_rgba(fmt: str) -> None:
    source = make_palette(15, 9, transparency=True)
    prepared = load_image(to_bytes(source, fmt, transparency=0))
    expected = np.asarray(source.convert("RGBA"))
    assert prepared.color == "RGB"
    assert np.array_equal(prepared.alpha, expected[..., 3]) and (prepared.alpha == 0).any()
    assert np.array_equal(prepared.rgb, expected[..., :3])


def test_palette_without_transparency_is_rgb() -> None:
    source = make_palette(15, 9)
    prepared = load_image(to_bytes(source, "PNG"))
    assert prepared.alpha is None and np.array_equal(prepared.rgb, np.asarray(source.convert("RGB")))


def test_trns_colour_and_gray_become_alpha() -> None:
    rgb = make_rgb(6, 4, "checker")
    prepared = load_image(to_bytes(rgb, "PNG", transparency=(20, 20, 20)))
    assert np.array_equal(prepared.alpha, np.where(np.asarray(rgb)[..., 0] == 20, 0, 255))
    gray = rgb.convert("L")
    prepared = load_image(to_bytes(gray, "PNG", transparency=20))
    assert prepared.color == "L" and np.array_equal(prepared.alpha, np.where(np.asarray(gray) == 20, 0, 255))


# ------------------------------------------------------------------------------------------ deep samples


def test_16bit_gray_is_rounded_not_truncated() -> None:
    samples = np.array([[0, 128, 129, 257, 385, 386, 65535]], dtype=np.uint16)
    for source in (Image.fromarray(samples), to_bytes(Image.fromarray(samples), "PNG")):
        prepared = load_image(source)
        assert prepared.rgb[0, :, 0].tolist() == [0, 0, 1, 1, 1, 2, 255]
        assert prepared.color == "L" and NOTE_16_BIT in prepared.notes


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_16bit_png_is_rounded_from_all_16_bits(channels: int, interlace: bool) -> None:
    samples = np.random.default_rng(channels).integers(0, 65536, (9, 11, channels), dtype=np.uint16)
    samples[0, :4, 0] = [128, 129, 65535, 0]  # around the rounding point
    prepared = load_image(png_16bit(samples, interlace=interlace))
    expected = np.round(samples / 257).astype(np.uint8)  # ties cannot occur: v / 257 is never x.5
    assert NOTE_16_BIT in prepared.notes
    assert prepared.color == ("L" if channels <= 2 else "RGB")
    colour = expected[..., :1] if channels <= 2 else expected[..., :3]
    assert np.array_equal(prepared.rgb, np.repeat(colour, 3 // colour.shape[2], axis=2))
    if channels in (2, 4):
        assert np.array_equal(prepared.alpha, expected[..., -1])
    else:
        assert prepared.alpha is None


def test_16bit_png_from_a_pil_image_is_truncated_with_the_note() -> None:
    samples = np.random.default_rng(0).integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    with Image.open(io.BytesIO(png_16bit(samples))) as im:
        prepared = load_image(im)  # no file to read again: Pillow's high bytes
    assert NOTE_16_BIT in prepared.notes and np.array_equal(prepared.rgb, samples >> 8)


def test_32bit_int_and_float_gray() -> None:
    prepared = load_image(Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32)))
    assert prepared.rgb[0, :, 0].tolist() == [0, 100, 255] and prepared.notes == ()
    prepared = load_image(Image.fromarray(np.array([[0, 257, 65535, 70000]], dtype=np.int32)))
    assert prepared.rgb[0, :, 0].tolist() == [0, 1, 255, 255] and NOTE_16_BIT in prepared.notes
    assert any("clipped" in note for note in prepared.notes)
    prepared = load_image(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))
    assert prepared.rgb[0, :, 0].tolist() == [0, 128, 255] and any("0..1" in note for note in prepared.notes)
    prepared = load_image(Image.fromarray(np.array([[0.0, 99.6, 300.0]], dtype=np.float32)))
    assert prepared.rgb[0, :, 0].tolist() == [0, 100, 255] and any("clipped" in note for note in prepared.notes)


# ------------------------------------------------------------------------------------------ colour spaces


def test_cmyk_without_profile_is_converted_with_a_note() -> None:
    source = make_rgb(10, 6, "gradient").convert("CMYK")
    prepared = load_image(to_bytes(source, "JPEG", quality=100))
    assert prepared.color == "RGB" and prepared.icc is None
    assert any("CMYK" in note for note in prepared.notes)
    assert np.abs(prepared.rgb.astype(int) - np.asarray(source.convert("RGB"), dtype=int)).mean() < 6


def test_cmyk_with_an_unusable_profile_falls_back_and_drops_it() -> None:
    source = make_rgb(10, 6, "gradient").convert("CMYK")
    source.info["icc_profile"] = srgb_icc()  # an RGB profile cannot describe CMYK
    prepared = load_image(source)
    assert prepared.icc is None and any("CMYK" in note for note in prepared.notes)
    assert np.array_equal(prepared.rgb, np.asarray(source.convert("RGB")))


@pytest.mark.parametrize("mode", ["LAB", "HSV", "YCbCr"])
def test_other_colour_spaces_become_rgb(mode: str) -> None:
    original = make_rgb(12, 8, "gradient")
    prepared = load_image(original.convert(mode))
    assert prepared.color == "RGB" and len(prepared.notes) == (2 if mode == "LAB" else 1)
    if mode == "LAB":  # Pillow's convert("LAB") attaches a LAB profile, which cannot describe the sRGB coded
        assert prepared.icc is None and prepared.notes[1].startswith("ICC profile dropped")
    error = np.abs(prepared.rgb.astype(int) - np.asarray(original, dtype=int))
    assert error.mean() < 3 and error.max() <= 24  # 8-bit LAB loses a little near the gamut's edge


# ------------------------------------------------------------------------------------------------ metadata


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_icc_exif_xmp_are_extracted_as_bytes(fmt: str) -> None:
    icc, exif, xmp = srgb_icc(), exif_bytes(orientation=1), xmp_packet()
    params = {"icc_profile": icc, "exif": exif}
    if fmt == "PNG":
        params["pnginfo"] = _png_xmp(xmp)
    else:
        params["xmp"] = xmp
    prepared = load_image(to_bytes(make_rgb(8, 8), fmt, **params))
    assert prepared.icc == icc and prepared.exif == exif and prepared.xmp == xmp


def _png_xmp(xmp: bytes):  # noqa: ANN202
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    return info


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_and_reset(orientation: int) -> None:
    source = make_rgba(7, 4, kind="noise", alpha="noise")
    exif = exif_bytes(orientation=orientation)
    data = to_bytes(source, "PNG", exif=exif, pnginfo=_png_xmp(xmp_packet(orientation=orientation)))
    prepared = load_image(data)
    with Image.open(io.BytesIO(data)) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(prepared.rgb, expected[..., :3])
    assert np.array_equal(prepared.alpha, expected[..., 3])
    assert _orientation(prepared.exif) == 1 and len(prepared.exif) == len(exif)  # patched in place
    assert b'tiff:Orientation="1"' in prepared.xmp
    assert Image.Exif().load(prepared.exif) is None  # still parses
    parsed = Image.Exif()
    parsed.load(prepared.exif)
    assert parsed[0x010F] == "lcf-tests"  # other tags kept


def test_exif_orientation_6_rotates_a_jpeg() -> None:
    prepared = load_image(to_bytes(make_rgb(30, 10, "gradient"), "JPEG", exif=exif_bytes(orientation=6)))
    assert prepared.rgb.shape == (30, 10, 3) and _orientation(prepared.exif) == 1


def test_xmp_only_orientation_is_applied() -> None:
    data = to_bytes(make_rgb(6, 3, "noise"), "PNG", pnginfo=_png_xmp(xmp_packet(orientation=8)))
    prepared = load_image(data)
    assert prepared.rgb.shape == (6, 3, 3) and prepared.exif is None
    assert b'tiff:Orientation="1"' in prepared.xmp


# ----------------------------------------------------------------------------------------- refusals


def test_animated_gif_is_refused_with_the_frame_count() -> None:
    with pytest.raises(UnsupportedImageError, match=r"3 frames.*extract"):
        load_image(animated_gif(8, 8, frames=3))


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
def test_multi_frame_files_are_refused(fmt: str) -> None:
    frames = [make_rgb(8, 8, "noise", seed) for seed in range(2)]
    with pytest.raises(UnsupportedImageError, match="2 frames"):
        load_image(to_bytes(frames[0], fmt, save_all=True, append_images=frames[1:]))


def test_mpo_uses_the_primary_image_with_a_note() -> None:
    primary = make_rgb(16, 8, "gradient")
    data = to_bytes(primary, "MPO", save_all=True, append_images=[make_rgb(16, 8, "noise")], quality=95)
    prepared = load_image(data)
    assert prepared.rgb.shape == (8, 16, 3) and any("primary" in note for note in prepared.notes)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 10,
        to_bytes(make_rgb(32, 32, "noise"), "PNG")[:200],
    ],
    ids=["empty", "text", "bad-png-header", "truncated-png"],
)
def test_bad_files_are_refused_cleanly(data: bytes, tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "bad.png"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        with pytest.raises(UnsupportedImageError) as caught:
            load_image(source)
        assert "image" in str(caught.value)


def test_unreadable_message_names_the_file(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(UnsupportedImageError, match=r"cannot identify image file .*empty\.jpg"):
        load_image(path)


def test_missing_file_and_folder_are_io_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(LcfIOError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(LcfIOError, match="directory"):
        load_image(tmp_path)


def test_other_source_types_are_refused() -> None:
    with pytest.raises(UnsupportedImageError, match="list"):
        load_image([[1, 2, 3]])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- bomb limit


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height but holds one row: only a header check can stop it cheaply."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_limit_is_checked_before_decoding() -> None:
    with pytest.raises(LimitError, match="over the pixel limit"):
        load_image(_png_header_only(100_000, 100_000))  # 10^10 pixels: decoding would need 30 GB
    with pytest.raises(LimitError, match="over the limit of 89478485"):
        load_image(_png_header_only(100_000, 1_000))  # between Pillow's warning and its error
    with pytest.raises(LimitError, match="99 pixels"):
        load_image(make_rgb(10, 10), max_pixels=99)
    with pytest.raises(LimitError):
        load_image(np.zeros((10, 10, 3), np.uint8), max_pixels=99)
    assert load_image(to_bytes(make_rgb(10, 10), "PNG"), max_pixels=100).width == 10


def test_our_limit_wins_over_pillows_and_no_warning_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = to_bytes(make_rgb(30, 30), "PNG")  # 900 pixels: an error for Pillow (> 2 * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(data, max_pixels=1000).width == 30
        assert load_image(to_bytes(make_rgb(15, 10), "PNG"), max_pixels=200).width == 15  # Pillow would warn
        with pytest.raises(LimitError):
            load_image(data, max_pixels=899)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


def test_bad_max_pixels_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        load_image(make_rgb(2, 2), max_pixels=0)


# --------------------------------------------------------------------------------------------- numpy


@pytest.mark.parametrize(
    ("shape", "color", "has_alpha"),
    [((5, 7), "L", False), ((5, 7, 1), "L", False), ((5, 7, 2), "L", True), ((5, 7, 3), "RGB", False),
     ((5, 7, 4), "RGB", True), ((1, 1, 3), "RGB", False), ((1, 9), "L", False)],
)  # fmt: skip
def test_numpy_shapes(shape: tuple[int, ...], color: str, has_alpha: bool) -> None:
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    prepared = load_image(array)
    assert prepared.color == color and (prepared.alpha is not None) == has_alpha
    pixels = array.reshape(shape[0], shape[1], -1)
    colour = pixels[..., :1] if color == "L" else pixels[..., :3]
    assert np.array_equal(prepared.rgb, np.broadcast_to(colour, (*shape[:2], 3)))
    if has_alpha:
        assert np.array_equal(prepared.alpha, pixels[..., -1])


def test_numpy_input_is_copied_and_read_only() -> None:
    array = make_rgb_array(4, 3, "noise")
    prepared = load_image(array)
    array[:] = 0
    assert prepared.rgb.any() and not prepared.rgb.flags.writeable


def test_numpy_deep_types() -> None:
    prepared = load_image(np.array([[0, 128, 129, 65535]], dtype=np.uint16))
    assert prepared.rgb[0, :, 0].tolist() == [0, 0, 1, 255] and NOTE_16_BIT in prepared.notes
    prepared = load_image(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert prepared.rgb[0, :, 0].tolist() == [0, 128, 255] and prepared.notes
    prepared = load_image(np.array([[True, False]]))
    assert prepared.rgb[0, :, 0].tolist() == [255, 0]


@pytest.mark.parametrize(
    ("array", "match"),
    [(np.zeros((4, 4, 5), np.uint8), r"\(4, 4, 5\)"), (np.zeros(4, np.uint8), r"\(4,\)"),
     (np.zeros((0, 4, 3), np.uint8), r"\(0, 4, 3\)"), (np.zeros((2, 2, 2, 3), np.uint8), r"\(2, 2, 2, 3\)"),
     (np.zeros((4, 4, 3), np.int32), "int32"), (np.full((2, 2), 1.5), r"\[0, 1\].*1\.5"),
     (np.full((2, 2), np.nan), "NaN"), (np.zeros((2, 2), np.complex64), "complex64")],
)  # fmt: skip
def test_numpy_refusals_name_shape_and_dtype(array: np.ndarray, match: str) -> None:
    with pytest.raises(UnsupportedImageError, match=match):
        load_image(array)


# ------------------------------------------------------------------------------------------ to_pil / save


def test_to_pil_modes_and_gray_mean() -> None:
    rgb = np.array([[[10, 20, 31], [7, 7, 7]]], dtype=np.uint8)
    assert to_pil(rgb).mode == "RGB"
    gray = to_pil(rgb, color="L")
    assert gray.mode == "L" and np.asarray(gray).tolist() == [[20, 7]]  # (10 + 20 + 31) / 3 = 20.33
    alpha = np.array([[0, 255]], dtype=np.uint8)
    assert to_pil(rgb, alpha=alpha).mode == "RGBA" and to_pil(rgb, color="L", alpha=alpha).mode == "LA"


def test_to_pil_refuses_bad_planes() -> None:
    with pytest.raises(ValueError):
        to_pil(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError):
        to_pil(np.zeros((2, 2, 3), np.uint8), alpha=np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError):
        to_pil(np.zeros((2, 2, 3), np.uint8), color="CMYK")
    with pytest.raises(ValueError):
        PreparedImage(np.zeros((2, 2, 3), np.float32))


def _prepared_with_metadata(color: str, with_alpha: bool) -> PreparedImage:
    source = make_rgba(9, 5, kind="noise", alpha="gradient") if with_alpha else make_rgb(9, 5, "noise")
    if color == "L":
        source = source.convert("LA" if with_alpha else "L")
    return PreparedImage(
        **{
            **load_image(source).__dict__,
            "icc": srgb_icc(),
            "exif": exif_bytes(orientation=1),
            "xmp": xmp_packet(),
        }
    )


@pytest.mark.parametrize("color", ["RGB", "L"])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_png_round_trip_keeps_pixels_alpha_and_metadata(tmp_path, color: str, with_alpha: bool) -> None:  # noqa: ANN001
    prepared = _prepared_with_metadata(color, with_alpha)
    path = tmp_path / "out.png"
    save_image(
        to_pil(prepared.rgb, color=color, alpha=prepared.alpha, icc=prepared.icc, exif=prepared.exif, xmp=prepared.xmp),
        path,
    )
    again = load_image(path)
    assert np.array_equal(again.rgb, prepared.rgb) and again.color == color
    assert (again.alpha is None and prepared.alpha is None) or np.array_equal(again.alpha, prepared.alpha)
    assert (again.icc, again.exif, again.xmp) == (prepared.icc, prepared.exif, prepared.xmp)
    with Image.open(path) as im:
        assert im.mode == ("L" if color == "L" else "RGB") + ("A" if with_alpha else "")


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_jpeg_and_webp_keep_icc_exif_xmp(tmp_path, suffix: str) -> None:  # noqa: ANN001
    prepared = _prepared_with_metadata("RGB", False)
    path = tmp_path / f"out{suffix}"
    save_image(to_pil(prepared.rgb, icc=prepared.icc, exif=prepared.exif, xmp=prepared.xmp), path)
    again = load_image(path)
    assert (again.icc, again.exif, again.xmp) == (prepared.icc, prepared.exif, prepared.xmp)


def test_tiff_keeps_icc_xmp_and_writes_exif_tags(tmp_path) -> None:  # noqa: ANN001
    prepared = _prepared_with_metadata("RGB", False)
    path = tmp_path / "out.tiff"
    save_image(to_pil(prepared.rgb, icc=prepared.icc, exif=prepared.exif, xmp=prepared.xmp), path)
    again = load_image(path)
    assert (again.icc, again.xmp) == (prepared.icc, prepared.xmp)
    assert again.exif is None  # a TIFF's tags are its IFD0, not an EXIF block: not extracted
    with Image.open(path) as im:
        assert im.getexif()[0x010F] == "lcf-tests"


def test_load_image_of_to_pil_round_trips_in_memory() -> None:
    prepared = _prepared_with_metadata("RGB", True)
    image = to_pil(prepared.rgb, alpha=prepared.alpha, icc=prepared.icc, exif=prepared.exif, xmp=prepared.xmp)
    again = load_image(image)
    assert np.array_equal(again.rgb, prepared.rgb) and np.array_equal(again.alpha, prepared.alpha)
    assert (again.icc, again.exif, again.xmp) == (prepared.icc, prepared.exif, prepared.xmp)


@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.sampled_from(["RGB", "L"]),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_png_round_trip_property(width: int, height: int, color: str, with_alpha: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if color == "L":
        rgb[:] = rgb[..., :1]
    alpha = rng.integers(0, 256, (height, width), dtype=np.uint8) if with_alpha else None
    buffer = io.BytesIO()
    to_pil(rgb, color=color, alpha=alpha).save(buffer, "PNG")
    again = load_image(buffer.getvalue())
    assert np.array_equal(again.rgb, rgb) and again.color == color
    assert (alpha is None and again.alpha is None) or np.array_equal(again.alpha, alpha)


def test_save_is_atomic_and_cleans_up_on_error(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "out.jpg"
    path.write_bytes(b"previous")
    with pytest.raises(UsageError, match="RGBA"):
        save_image(make_rgba(4, 4), path)  # JPEG cannot hold alpha
    assert path.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg"]
    save_image(make_rgb(4, 4), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg"]
    with Image.open(path) as im:
        assert im.format == "JPEG"


def test_save_gives_new_files_normal_permissions(tmp_path) -> None:  # noqa: ANN001
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "out.png"
    save_image(make_rgb(2, 2), path)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_errors(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(UsageError, match="extension"):
        save_image(make_rgb(2, 2), tmp_path / "out.unknown")
    with pytest.raises(LcfIOError, match="no such folder"):
        save_image(make_rgb(2, 2), tmp_path / "missing" / "out.png")
    save_image(make_rgb(2, 2), tmp_path / "noext", format="png")
    with Image.open(tmp_path / "noext") as im:
        assert im.format == "PNG"


def test_make_alpha_kinds_cover_the_range() -> None:  # the shared helper itself
    assert make_alpha(16, 16, "gradient").min() == 0 and make_alpha(16, 16, "gradient").max() == 255
    assert set(np.unique(make_alpha(16, 16, "binary")).tolist()) == {0, 255}


# --------------------------------------------------------------------------------------------- notes (issue 21)


def test_palette_notes_say_rgb_or_rgba() -> None:
    plain = load_image(to_bytes(make_palette(15, 9), "PNG"))
    transparent = load_image(to_bytes(make_palette(15, 9, transparency=True), "PNG", transparency=0))
    assert plain.notes == ("palette input converted to RGB",)
    assert transparent.notes == ("palette input converted to RGBA",)


def test_icc_profile_kept_or_dropped_is_a_note_only_when_the_pixels_change() -> None:
    palette = make_palette(15, 9)
    kept = load_image(to_bytes(palette, "PNG", icc_profile=srgb_icc()))
    assert kept.icc == srgb_icc() and kept.notes == (
        "palette input converted to RGB",
        "ICC profile kept: it still describes the converted pixels",
    )
    cmyk = make_rgb(10, 6, "gradient").convert("CMYK")
    cmyk.info["icc_profile"] = srgb_icc()
    dropped = load_image(cmyk)
    assert dropped.icc is None
    assert dropped.notes[-1] == "ICC profile dropped: it describes the CMYK input, not the RGB pixels coded"
    assert load_image(to_bytes(make_rgb(6, 4), "PNG", icc_profile=srgb_icc())).notes == ()  # nothing changed


def test_one_bit_and_boolean_inputs_have_a_note() -> None:
    assert load_image(make_rgb(8, 8, "checker").convert("1")).notes == ("1-bit input converted to 8-bit gray",)
    assert load_image(np.eye(4, dtype=bool)).notes == ("boolean input converted to 8 bits (0 and 255)",)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_note(orientation: int) -> None:
    data = to_bytes(make_rgb(7, 4, "noise"), "PNG", exif=exif_bytes(orientation=orientation))
    notes = load_image(data).notes
    if orientation == 1:
        assert notes == ()
    else:
        assert len(notes) == 1 and notes[0].startswith(f"EXIF orientation {orientation} applied: the pixels are ")
        assert notes[0].endswith("and the orientation stored is 1")


def test_unchanged_inputs_have_no_notes() -> None:
    for image in (make_rgb(6, 4), make_rgba(6, 4), make_rgb(6, 4).convert("L"), make_mode("LA", 6, 4)):
        assert load_image(to_bytes(image, "PNG")).notes == (), image.mode


def _tiff_rgb16(samples: np.ndarray) -> bytes:
    """An uncompressed little-endian 16-bit RGB TIFF (Pillow cannot write one)."""
    h, w, _ = samples.shape
    tags = [
        (256, 3, 1, w),
        (257, 3, 1, h),
        (258, 3, 3, 8 + 2 + 10 * 12 + 4),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, 8 + 2 + 10 * 12 + 4 + 6),
        (277, 3, 1, 3),
        (278, 3, 1, h),
        (279, 4, 1, samples.size * 2),
        (284, 3, 1, 1),
    ]
    ifd = (
        struct.pack("<H", len(tags))
        + b"".join(
            struct.pack("<HHIHH", t, k, n, v, 0) if k == 3 and n == 1 else struct.pack("<HHII", t, k, n, v)
            for t, k, n, v in tags
        )
        + struct.pack("<I", 0)
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<3H", 16, 16, 16) + samples.astype("<u2").tobytes()


def test_bit_depth_that_pillow_reduces_itself_has_the_note() -> None:
    samples = np.random.default_rng(4).integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    tiff = load_image(_tiff_rgb16(samples))
    assert tiff.notes == (NOTE_16_BIT,) and np.array_equal(tiff.rgb, samples >> 8)  # Pillow's pixels, unchanged
    header = b"P6\n5 3\n65535\n"
    ppm = load_image(header + samples.astype(">u2").tobytes())
    assert ppm.notes == (NOTE_16_BIT,) and ppm.rgb.shape == (3, 5, 3)
    for fmt in ("TIFF", "PPM"):  # 8-bit files of the same formats: nothing to say
        assert load_image(to_bytes(make_rgb(5, 3, "noise"), fmt)).notes == ()
