"""Issue 21, as a user types it: `lcf encode` says what it changed in the image, `--effort` is described in terms a
user can check, and `lcf bench` without matplotlib warns first and still writes the table and CSV files.

The first test of each kind runs the command in a subprocess (``python -m lcf_cli.main`` is the ``lcf`` entry point),
with the small test weights; the variations run the same command through Typer's CliRunner, which is much faster
(no new interpreter, PyTorch and weights loaded once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from images import exif_bytes, make_palette, make_rgb, make_rgb_array, png_16bit
from PIL import Image
from typer.testing import CliRunner

from lcf_cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # many tiny-model runs: one thread is faster


def lcf(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "lcf_cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def lcf_in_process(*args: str | Path):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _sixteen_bit(path: Path) -> None:
    samples = np.random.default_rng(0).integers(0, 65536, (24, 32, 3)).astype(np.uint16)
    path.write_bytes(png_16bit(samples))


def _cmyk(path: Path) -> None:
    make_rgb(32, 24, "mixed").convert("CMYK").save(path)


def _palette(path: Path) -> None:
    make_palette(32, 24).save(path)


def _rotated(path: Path) -> None:
    make_rgb(32, 24, "mixed").save(path, quality=95, exif=exif_bytes(orientation=6))


def test_encode_of_a_16_bit_png_says_so(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "deep.png"
    _sixteen_bit(src)
    result = lcf("encode", src, "-o", tmp_path / "out.lcf", "--weights", tiny_weights, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"note: {src}: 16-bit input reduced to 8 bits"]
    report = json.loads(result.stdout)
    assert report["notes"] == ["16-bit input reduced to 8 bits"]
    assert report["bytes"] == (tmp_path / "out.lcf").stat().st_size and report["psnr"] is None


def test_batch_says_what_it_changed_per_file(tmp_path: Path, tiny_weights: Path) -> None:
    src, out = tmp_path / "photos", tmp_path / "encoded"
    src.mkdir()
    _sixteen_bit(src / "deep.png")
    make_rgb(32, 24, "mixed").save(src / "plain.png")
    result = lcf("batch", src, out, "--weights", tiny_weights, "--json")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: {src / 'deep.png'}: 16-bit input reduced to 8 bits"]
    files = {Path(f["src"]).name: f["notes"] for f in json.loads(result.stdout)["files"]}
    assert files == {"deep.png": ["16-bit input reduced to 8 bits"], "plain.png": []}


@pytest.mark.parametrize("name, make, note", [
    ("print.tif", _cmyk, "CMYK input converted to RGB without a colour profile; colours may shift"),
    ("palette.png", _palette, "palette input converted to RGB"),
    ("phone.jpg", _rotated, "EXIF orientation 6 applied: the pixels are rotated by 90 degrees clockwise"),
])  # fmt: skip
def test_encode_says_what_it_changed(tmp_path: Path, tiny_weights: Path, name: str, make, note: str) -> None:  # noqa: ANN001
    src = tmp_path / name
    make(src)
    result = lcf_in_process("encode", src, "-o", tmp_path / "out.lcf", "--weights", tiny_weights, "--json")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith(f"note: {src}: {note}")
    assert [n[: len(note)] for n in json.loads(result.stdout)["notes"]] == [note]


def test_an_unchanged_image_has_no_note_and_the_plain_output_is_unchanged(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "photo.png"
    make_rgb(32, 24, "mixed").save(src)
    result = lcf_in_process("encode", src, "-o", tmp_path / "photo.lcf", "--weights", tiny_weights)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


def test_effort_help_says_what_it_buys_in_checkable_terms() -> None:
    result = lcf("encode", "--help")
    text = " ".join(result.stdout.replace("│", " ").split())
    assert result.returncode == 0
    assert "smaller file at the same quality" not in text
    assert "At equal PSNR the file is smaller" in text and "at the same --quality both size and PSNR change" in text


def test_verbose_shows_size_psnr_and_effort(tmp_path: Path, tiny_weights: Path) -> None:
    src = tmp_path / "photo.png"
    make_rgb(32, 24, "mixed").save(src)
    result = lcf_in_process(
        "encode", src, "-o", tmp_path / "photo.lcf", "--weights", tiny_weights, "--effort", "1", "-v"
    )
    assert result.exit_code == 0, result.output
    size = (tmp_path / "photo.lcf").stat().st_size
    assert f"32x24, {size} bytes" in result.stderr and " dB, effort 1, " in result.stderr


def test_bench_without_matplotlib_warns_first_and_keeps_table_and_csv(tmp_path: Path, tiny_weights: Path) -> None:
    hide = tmp_path / "no-matplotlib"  # a sitecustomize that makes `import matplotlib` fail, as if not installed
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['matplotlib'] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))}
    images, out = tmp_path / "photos", tmp_path / "results"
    images.mkdir()
    Image.fromarray(make_rgb_array(64, 48, kind="mixed")).save(images / "0.png")
    result = lcf("bench", images, "--codecs", "none", "--quick", "--out", out, "--weights", tiny_weights, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    warning = next(i for i, line in enumerate(lines) if "matplotlib is not installed" in line)
    measured = next(i for i, line in enumerate(lines) if line.startswith("[1/1]"))
    assert warning < measured and 'pip install "lcf[bench]"' in lines[warning]
    assert sum("matplotlib is not installed" in line for line in lines) == 1  # said once
    assert "BD-rate of lcf" in result.stdout + result.stderr and "lcf" in result.stdout + result.stderr
    for name in ("photos_per_image.csv", "photos_rd.csv", "photos_bd.csv", "photos.md"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "photos_rd.png").exists() and "photos_rd.png" not in (out / "photos.md").read_text()


def test_bench_help_names_the_extra() -> None:
    text = " ".join(lcf("bench", "--help").stdout.replace("│", " ").split())
    assert 'pip install "lcf[bench]"' in text
