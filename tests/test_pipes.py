"""``-`` as SRC or DST of ``lcf encode`` and ``lcf decode`` (issue 23): standard input and output, run in a subprocess
as a user types it (tests/run_lcf.py), with real pipes and, where it matters, a real terminal (a pty).

Standard output gets the bytes only once the whole encode or decode succeeded: an error leaves it empty. A terminal
is refused where binary data would go or come from. Refusals come before any work (a missing weights folder would
give exit code 8, not 2).
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
from pathlib import Path

import numpy as np
import pytest
from images import make_rgb, to_bytes
from PIL import Image
from run_lcf import ENV, command, lcf

from lcf.errors import LimitError
from lcf_cli import files

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture
def png(tmp_path: Path) -> Path:
    path = tmp_path / "a.png"
    make_rgb(40, 24, "mixed").save(path)
    return path


@pytest.fixture
def lcf_file(tmp_path: Path, png: Path, tiny_codec) -> Path:
    path = tmp_path / "a.lcf"
    path.write_bytes(tiny_codec.encode(png, 4.0))
    return path


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_encode_from_and_to_pipes(tmp_path: Path, png: Path, lcf_file: Path, tiny_weights: Path) -> None:
    expected = lcf_file.read_bytes()  # the bytes of a file-to-file encode
    both = lcf("encode", "-", "-o", "-", "--weights", tiny_weights, input=png.read_bytes())
    assert both.returncode == 0, both.stderr
    assert both.stdout == expected
    to_file = lcf("encode", "-", "-o", tmp_path / "in.lcf", "--weights", tiny_weights, "-v", input=png.read_bytes())
    assert to_file.returncode == 0 and to_file.stdout == b"", to_file.stderr
    assert (tmp_path / "in.lcf").read_bytes() == expected
    assert f"{tmp_path / 'in.lcf'}: 40x24" in to_file.stderr  # -v on stderr, never mixed into the data
    from_file = lcf("encode", png, "-o", "-", "--weights", tiny_weights, "-v")
    assert from_file.returncode == 0 and from_file.stdout == expected
    assert "standard output: 40x24" in from_file.stderr


def test_a_target_through_pipes_writes_the_files_target_encode(tmp_path: Path, png: Path, tiny_weights: Path) -> None:
    expected = tmp_path / "target.lcf"
    done = lcf("encode", png, "-o", expected, "--target-size", "0.17kB", "--weights", tiny_weights, "--json")
    assert done.returncode == 0, done.stderr
    both = lcf(
        "encode", "-", "-o", "-", "--target-size", "0.17kB", "--weights", tiny_weights, "-v", input=png.read_bytes()
    )
    assert both.returncode == 0, both.stderr
    assert both.stdout == expected.read_bytes() and len(both.stdout) <= 170
    quality = json.loads(done.stdout)["quality"]
    assert f"standard output: target 170 bytes met: quality {quality!r}" in both.stderr


def test_decode_from_and_to_pipes(tmp_path: Path, lcf_file: Path, tiny_weights: Path, tiny_codec) -> None:
    pixels = tiny_codec.decode(lcf_file.read_bytes()).rgb
    for fmt, pillow in (("png", "PNG"), ("ppm", "PPM")):
        result = lcf("decode", "-", "-o", "-", "--to", fmt, "--weights", tiny_weights, input=lcf_file.read_bytes())
        assert result.returncode == 0, result.stderr
        with Image.open(io.BytesIO(result.stdout)) as im:
            assert im.format == pillow and np.array_equal(np.asarray(im.convert("RGB")), pixels)
    result = lcf("decode", "-", "-o", tmp_path / "back.png", "--weights", tiny_weights, input=lcf_file.read_bytes())
    assert result.returncode == 0 and result.stdout == b"", result.stderr
    with Image.open(tmp_path / "back.png") as im:
        assert np.array_equal(np.asarray(im), pixels)


def test_an_error_leaves_standard_output_empty(tmp_path: Path, lcf_file: Path, tiny_weights: Path) -> None:
    damaged = bytearray(lcf_file.read_bytes())
    damaged[len(damaged) // 2] ^= 0x40
    result = lcf("decode", "-", "-o", "-", "--to", "png", "--weights", tiny_weights, input=bytes(damaged))
    assert result.returncode == 4 and result.stdout == b"", result.stderr
    result = lcf("encode", "-", "-o", "-", "--weights", tiny_weights, input=b"not an image")
    assert result.returncode == 7 and result.stdout == b"", result.stderr
    result = lcf("encode", "-", "-o", tmp_path / "x.lcf", "--weights", tiny_weights, input=b"")
    assert result.returncode == 7 and not (tmp_path / "x.lcf").exists()
    assert names(tmp_path) == ["a.lcf", "a.png"]  # no temporary file left either


@pytest.mark.parametrize(
    "args, message",
    [
        (["decode", "A.LCF", "-o", "-"], "--to FORMAT"),
        (["decode", "A.LCF", "-o", "-", "--to", "lcf"], "--reencode"),
        (["decode", "-", "-o", "A.LCF"], "--reencode"),
        (["encode", "A.PNG", "-o", "-", "--json"], "--json"),
        (["encode", "-", "-d", "out"], "-d DIR"),
        (["encode", "-", "-o", "."], "is a folder"),
        (["decode", "-", "A.LCF", "-d", "out"], "only be the one SRC"),
    ],
)
def test_what_pipes_refuse_before_any_work(
    tmp_path: Path, png: Path, lcf_file: Path, args: list[str], message: str
) -> None:
    args = [{"A.LCF": lcf_file, "A.PNG": png}.get(a, a) for a in args]
    before = names(tmp_path)
    result = lcf(*args, "--weights", tmp_path / "no-weights", cwd=tmp_path, input=lcf_file.read_bytes())
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stdout == b""
    assert names(tmp_path) == before


def test_a_terminal_is_refused_for_binary_data(tmp_path: Path, png: Path, lcf_file: Path) -> None:
    leader, terminal = pty.openpty()
    try:
        out = lcf("encode", png, "-o", "-", "--weights", tmp_path / "no-weights", stdout=terminal)
        assert out.returncode == 2 and "standard output is a terminal" in out.stderr
        into = lcf("encode", "-", "-o", tmp_path / "x.lcf", "--weights", tmp_path / "no-weights", stdin=terminal)
        assert into.returncode == 2 and "standard input is a terminal" in into.stderr
        for fmt in ("png", "ppm"):  # decoding: an image is binary data too, whatever its format
            out = lcf("decode", lcf_file, "-o", "-", "--to", fmt, "--weights", tmp_path / "no-weights", stdout=terminal)
            assert out.returncode == 2 and "standard output is a terminal" in out.stderr
        into = lcf("decode", "-", "-o", tmp_path / "x.png", "--weights", tmp_path / "no-weights", stdin=terminal)
        assert into.returncode == 2 and "standard input is a terminal" in into.stderr
    finally:
        os.close(leader)
        os.close(terminal)
    assert names(tmp_path) == ["a.lcf", "a.png"]


def test_a_redirection_onto_the_input_is_refused(tmp_path: Path, png: Path, lcf_file: Path) -> None:
    original = lcf_file.read_bytes()
    with open(lcf_file, "ab") as append:  # lcf decode a.lcf -o - --to png >> a.lcf
        result = lcf("decode", lcf_file, "-o", "-", "--to", "png", "--weights", tmp_path / "no-weights", stdout=append)
    assert result.returncode == 2 and "would destroy the input" in result.stderr
    with open(png, "rb") as source:  # lcf encode - -o a.png < a.png
        result = lcf("encode", "-", "-o", png, "--weights", tmp_path / "no-weights", stdin=source)
    assert result.returncode == 2 and "would destroy the input" in result.stderr
    assert lcf_file.read_bytes() == original and png.read_bytes() == to_bytes(make_rgb(40, 24, "mixed"), "PNG")


def test_a_closed_pipe_is_an_output_error(tmp_path: Path, tiny_weights: Path, tiny_codec) -> None:
    big = tmp_path / "big.lcf"  # its PPM (120 kB) is more than a pipe holds
    big.write_bytes(tiny_codec.encode(make_rgb(200, 200, "noise"), 4.0))
    run = subprocess.Popen(
        command("decode", big, "-o", "-", "--to", "ppm", "--weights", tiny_weights),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    run.stdout.close()  # as `| head -c 10` does
    stderr = run.stderr.read().decode()
    assert run.wait(timeout=300) == 8, stderr
    assert "closed the pipe" in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr


def test_standard_input_is_read_up_to_a_limit(monkeypatch) -> None:
    monkeypatch.setattr(files, "_stream", lambda name: io.BytesIO(b"x" * 11))
    assert files.read_stdin(11, "a test") == b"x" * 11
    with pytest.raises(LimitError, match="more than 10 bytes, the limit of a test"):
        files.read_stdin(10, "a test")
    assert files.MAX_STDIN_IMAGE == 1 << 30


@pytest.mark.parametrize(
    "command, words",
    [
        (
            "encode",
            ['"-" reads the image from standard input', "convert photo.tif png:- | lcf encode - -o - > photo.lcf"],
        ),
        ("decode", ['"-" reads the .lcf file from standard input', "| lcf decode - -o - --to png | display"]),
    ],
)
def test_help_teaches_pipes(command: str, words: list[str]) -> None:
    from typer.testing import CliRunner

    from lcf_cli.main import app

    result = CliRunner().invoke(app, [command, "--help"])
    text = " ".join(result.stdout.split())
    for word in words:
        assert word in text, word
