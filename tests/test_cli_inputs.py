"""What ``lcf encode`` and ``lcf decode`` take and write (issue 21): several inputs into a folder (-d), --to for
outputs without a known suffix, an existing folder as -o, --max-pixels on encode.

Most checks run the command in a subprocess, as a user types it (tests/run_lcf.py). Refusals are checked to come
before any work: the weights folder given is missing, so a check made after loading the weights would fail with exit
code 8 instead of 2.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from images import make_rgb, png_16bit, to_bytes
from PIL import Image
from run_lcf import lcf
from typer.testing import CliRunner

from lcf import api
from lcf_cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def in_process(*args: str | Path):
    """The command through Typer's CliRunner (no new process: for the checks that need no real terminal or pipe)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output and (result.exception is None or isinstance(result.exception, SystemExit))
    return result


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """a.png, b.png and c.jpg of different content and sizes."""
    paths = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.jpg"]
    for k, path in enumerate(paths):
        make_rgb(24 + 8 * k, 16 + 4 * k, "mixed", seed=k).save(path)
    return paths


# -- several inputs ------------------------------------------------------------------------------------------------


def test_encode_then_decode_several_files_in_one_call(
    tmp_path: Path, photos: list[Path], tiny_weights: Path, tiny_codec
) -> None:
    out = tmp_path / "out" / "sub"  # created, parents too
    result = lcf("encode", *photos, "-d", out, "--weights", tiny_weights)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"" and "3 encoded, 0 failed" in result.stderr
    assert tree(out) == {p.stem + ".lcf": tiny_codec.encode(p, 4.0) for p in photos}  # as one encode each
    back = tmp_path / "back"
    result = lcf("decode", *sorted(out.iterdir()), "-d", back, "--to", "ppm", "--weights", tiny_weights)
    assert result.returncode == 0, result.stderr
    assert "3 decoded, 0 failed" in result.stderr
    assert sorted(tree(back)) == ["a.ppm", "b.ppm", "c.ppm"]
    for photo in photos:
        with Image.open(back / (photo.stem + ".ppm")) as im, Image.open(photo) as src:
            assert im.format == "PPM" and im.size == src.size
    result = in_process("decode", out / "a.lcf", out / "b.lcf", "-d", back, "--weights", tiny_weights)  # png
    assert result.exit_code == 0 and {"a.png", "b.png"} <= set(tree(back))


def test_a_failing_file_is_reported_and_the_rest_are_converted(
    tmp_path: Path, photos: list[Path], tiny_weights: Path
) -> None:
    (tmp_path / "not-an-image.png").write_bytes(b"hello")
    inputs = [photos[0], tmp_path / "missing.png", tmp_path / "not-an-image.png", photos[1]]
    result = lcf("encode", *inputs, "-d", tmp_path / "out", "--weights", tiny_weights, "--json")
    assert result.returncode == 8, result.stderr  # the first failure's: no such file
    assert f"FAIL  {tmp_path / 'missing.png'}" in result.stderr
    assert f"FAIL  {tmp_path / 'not-an-image.png'}" in result.stderr
    assert "2 encoded, 2 failed" in result.stderr
    assert sorted(tree(tmp_path / "out")) == ["a.lcf", "b.lcf"]
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert [f["status"] for f in doc["files"]] == ["ok", "failed", "failed", "ok"]
    assert [f["error"]["exit_code"] for f in doc["files"] if f["status"] == "failed"] == [8, 7]
    assert doc["files"][0]["bytes"] == (tmp_path / "out" / "a.lcf").stat().st_size
    (tmp_path / "bad.lcf").write_bytes(b"\x8bLCF\r\n\x1a\n" + bytes(40))
    result = lcf(
        "decode", tmp_path / "bad.lcf", tmp_path / "out" / "a.lcf", "-d", tmp_path / "dec", "--weights", tiny_weights
    )
    assert result.returncode in (3, 4) and "FAIL" in result.stderr and "1 decoded, 1 failed" in result.stderr
    assert sorted(tree(tmp_path / "dec")) == ["a.png"]


def test_conversion_notes_for_every_input(tmp_path: Path, photos: list[Path], tiny_weights: Path) -> None:
    deep = tmp_path / "deep.png"
    deep.write_bytes(png_16bit(np.arange(12 * 10 * 3, dtype=np.uint16).reshape(10, 12, 3) * 50))
    result = lcf("encode", photos[0], deep, "-d", tmp_path / "out", "--weights", tiny_weights)
    assert result.returncode == 0, result.stderr
    assert f"note: {deep}: 16-bit input reduced to 8 bits" in result.stderr
    assert f"note: {photos[0]}" not in result.stderr


def test_the_weights_are_loaded_once(tmp_path: Path, photos: list[Path], tiny_weights: Path, monkeypatch) -> None:
    import lcf.codec
    import lcf.codec_cache

    made = []

    class Counting(lcf.codec.Codec):
        def __init__(self, *args, **kwargs) -> None:
            made.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lcf.codec, "Codec", Counting)
    lcf.codec_cache._codec_for.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["encode", *map(str, photos), "-d", str(tmp_path / "out"), "--weights", str(tiny_weights)]
        )
    finally:
        lcf.codec_cache._codec_for.cache_clear()
    assert result.exit_code == 0, result.output
    assert len(made) == 1 and len(list((tmp_path / "out").iterdir())) == 3


@pytest.mark.parametrize("case", ["same name", "given twice", "output on an input", "-o", "both", "neither", "dash"])
def test_bad_sets_of_inputs_are_refused_before_any_work(tmp_path: Path, photos: list[Path], case: str) -> None:
    a = photos[0]
    (tmp_path / "a.jpg").write_bytes(to_bytes(make_rgb(8, 8), "JPEG"))
    os.link(photos[2], tmp_path / "a.lcf")  # a.png -> a.lcf would land on c.jpg, through this hard link
    args, message = {
        "same name": ([a, tmp_path / "a.jpg", "-d", tmp_path], "a.lcf  <-  "),
        "given twice": ([a, tmp_path / "sub" / ".." / "a.png", "-d", tmp_path / "out"], "more than one input"),
        "output on an input": ([a, photos[2], "-d", tmp_path], "is the input"),
        "-o": ([a, photos[1], "-o", tmp_path / "x.lcf"], "-d DIR"),
        "both": ([a, "-o", tmp_path / "x.lcf", "-d", tmp_path / "out"], "not both"),
        "neither": ([a], "-o DST"),
        "dash": ([a, "-", "-d", tmp_path / "out"], "only be the one SRC"),
    }[case]
    (tmp_path / "sub").mkdir()
    before = tree(tmp_path)
    result = lcf("encode", *args, "--weights", tmp_path / "no-weights")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert tree(tmp_path) == before and not (tmp_path / "out").exists()


# -- outputs without a known suffix, folders as -o ------------------------------------------------------------------


def test_decode_to_a_name_without_a_known_suffix_asks_for_to(
    tmp_path: Path, photos: list[Path], tiny_weights: Path, tiny_codec
) -> None:
    src = tmp_path / "x.lcf"
    src.write_bytes(tiny_codec.encode(photos[0], 4.0))
    before = tree(tmp_path)
    for name in ("out.xyz", "out"):
        result = lcf("decode", src, "-o", tmp_path / name, "--weights", tmp_path / "no-weights")
        assert result.returncode == 2, result.stderr
        assert "--to FORMAT" in result.stderr and "format=" not in result.stderr
    for args, message in (
        (["-o", tmp_path / "y.png", "--to", "jpeg"], "make them agree"),
        (["-o", tmp_path / "y.png", "--to", "nope"], "not an image format"),
    ):
        result = lcf("decode", src, *args, "--weights", tmp_path / "no-weights")
        assert result.returncode == 2 and message in result.stderr, result.stderr
    assert tree(tmp_path) == before
    result = in_process("decode", src, "-o", tmp_path / "out.xyz", "--to", "tiff", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out.xyz") as im:
        assert im.format == "TIFF" and im.size == (24, 16)


def test_an_existing_folder_as_output_gets_the_input_name(
    tmp_path: Path, photos: list[Path], tiny_weights: Path, tiny_codec
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    result = lcf("encode", photos[0], "-o", folder, "--weights", tiny_weights)
    assert result.returncode == 0, result.stderr
    assert tree(folder) == {"a.lcf": tiny_codec.encode(photos[0], 4.0)}
    result = in_process("decode", folder / "a.lcf", "-o", folder, "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    result = in_process("decode", folder / "a.lcf", "-o", folder, "--to", "bmp", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    assert sorted(tree(folder)) == ["a.bmp", "a.lcf", "a.png"]
    with Image.open(folder / "a.png") as png, Image.open(folder / "a.bmp") as bmp:
        assert png.format == "PNG" and bmp.format == "BMP" and np.array_equal(np.asarray(png), np.asarray(bmp))


# -- the pixel limit on encode -------------------------------------------------------------------------------------


def test_encode_has_max_pixels(tmp_path: Path, photos: list[Path], tiny_weights: Path) -> None:
    out = tmp_path / "a.lcf"
    result = lcf("encode", photos[0], "-o", out, "--max-pixels", "100", "--weights", tiny_weights)
    assert result.returncode == 5, result.stderr
    assert "over the limit of 100 pixels" in result.stderr and "--max-pixels" in result.stderr
    assert not out.exists()
    result = in_process("encode", photos[0], "-o", out, "--max-pixels", "0", "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    help_text = CliRunner().invoke(app, ["encode", "--help"], env={"COLUMNS": "200"}).output
    assert "--max-pixels" in help_text and "LCF_MAX_MEMORY" in help_text


def test_api_decode_file_takes_a_format(tmp_path: Path, photos: list[Path], tiny_weights: Path, tiny_codec) -> None:
    src = tmp_path / "x.lcf"
    src.write_bytes(tiny_codec.encode(photos[0], 4.0))
    report = api.decode_file(src, tmp_path / "x.data", format="ppm", weights=tiny_weights)
    assert report.dst == tmp_path / "x.data"
    with Image.open(io.BytesIO((tmp_path / "x.data").read_bytes())) as im:
        assert im.format == "PPM"
