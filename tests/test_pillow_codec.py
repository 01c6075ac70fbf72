"""lcf.pillow through the real container and codec, with the small random-initialised test model.

The plugin's own logic is tested without the codec in test_pillow.py. Pixel quality is not asserted here (the test
model is untrained): decoding through Pillow must give exactly what the API decodes.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from images import exif_bytes, make_mode, make_rgb, make_rgba, srgb_icc, xmp_packet
from PIL import Image, UnidentifiedImageError

import lcf.errors
import lcf.pillow
from lcf import api
from lcf.errors import LcfError
from lcf.image import load_image, to_pil


@pytest.fixture(autouse=True)
def _plugin_uses_tiny_weights(tiny_weights):
    """Route the plugin to the small test model (the shipped weights may not exist on a fresh checkout)."""
    lcf.pillow.register(weights=str(tiny_weights))
    yield
    lcf.pillow.register()


def _lcf_bytes(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="LCF", **params)
    return buffer.getvalue()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_rgb_round_trip_through_pillow() -> None:
    source = make_rgb(64, 48, "mixed")
    data = _lcf_bytes(source, quality=7)
    assert data.startswith(lcf.pillow.SIGNATURE)
    with Image.open(io.BytesIO(data)) as im:
        assert (im.format, im.size, im.mode) == ("LCF", (64, 48), "RGB")
        assert im.info["lcf_quality"] == 7.0
        expected = api.decode_bytes(data, weights=lcf.pillow._options["weights"])
        np.testing.assert_array_equal(np.asarray(im), np.asarray(expected))


@pytest.mark.parametrize("size", [(1, 1), (1, 17), (17, 1), (65, 33)])
def test_odd_sizes_round_trip(size: tuple[int, int]) -> None:
    with Image.open(io.BytesIO(_lcf_bytes(make_rgb(*size, "gradient")))) as im:
        im.load()
        assert im.size == size


def test_gray_comes_back_gray_and_alpha_exactly() -> None:
    with Image.open(io.BytesIO(_lcf_bytes(make_mode("L", 20, 12)))) as im:
        assert im.mode == "L"
        im.load()
    source = make_rgba(20, 12, kind="edges", alpha="noise")
    with Image.open(io.BytesIO(_lcf_bytes(source))) as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3], np.asarray(source)[..., 3])
    source = make_mode("LA", 20, 12)
    with Image.open(io.BytesIO(_lcf_bytes(source))) as im:
        assert im.mode == "LA"
        assert np.array_equal(np.asarray(im)[..., 1], np.asarray(source)[..., 1])


def test_metadata_survives_save_and_open() -> None:
    icc, exif, xmp = srgb_icc(), exif_bytes(orientation=1), xmp_packet()
    image = to_pil(np.asarray(make_rgb(16, 16, "noise")), icc=icc, exif=exif, xmp=xmp)
    with Image.open(io.BytesIO(_lcf_bytes(image))) as im:
        assert (im.info.get("icc_profile"), im.info.get("exif"), im.info.get("xmp")) == (icc, exif, xmp)


def test_open_does_not_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _lcf_bytes(make_rgb(24, 8, "noise"))

    def refuse(*args: object, **kwargs: object) -> Image.Image:
        raise AssertionError("decoded during open")

    monkeypatch.setattr(api, "decode_bytes", refuse)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (24, 8)


def test_damaged_files_give_lcf_errors_not_tracebacks() -> None:
    data = _lcf_bytes(make_rgb(16, 16, "noise"))
    for damaged in (data[: len(data) // 2], data[:8] + b"\xff" + data[9:]):
        with pytest.raises((LcfError, UnidentifiedImageError)):
            Image.open(io.BytesIO(damaged)).load()


def test_load_image_reads_lcf_files(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "x.lcf"
    make_rgb(16, 8, "gradient").save(path, quality=4)
    prepared = load_image(path)
    assert (prepared.width, prepared.height) == (16, 8)


def test_a_truncated_lcf_is_handled_like_any_bad_image(tmp_path) -> None:  # noqa: ANN001
    """The loop a Pillow user writes over a folder of images, with one truncated .lcf file in it."""
    good, bad = tmp_path / "good.lcf", tmp_path / "bad.lcf"
    make_rgb(16, 16, "noise").save(good, quality=4)
    bad.write_bytes(good.read_bytes()[:-40])
    loaded, skipped = [], []
    for path in (good, bad):
        try:
            with Image.open(path) as im:
                im.load()
                loaded.append(path.name)
        except (UnidentifiedImageError, OSError) as exc:
            skipped.append((path.name, type(exc).__name__))
    assert loaded == ["good.lcf"] and skipped == [("bad.lcf", "CorruptDataError")]


def test_saving_a_16_bit_image_warns(tmp_path) -> None:  # noqa: ANN001
    image = make_mode("I;16", 8, 8)
    with pytest.warns(lcf.errors.ConversionWarning, match="16-bit input reduced to 8 bits"):
        image.save(tmp_path / "deep.lcf")
    with Image.open(tmp_path / "deep.lcf") as im:
        assert im.mode == "L" and im.size == (8, 8)
