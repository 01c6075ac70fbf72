"""The lcf command through Typer's CliRunner: success and failure paths, exit codes, stdout vs stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lcf
from lcf import api
from lcf.container.header import pack_header
from lcf.container.samples import sample_file, sample_header
from lcf.container.writer import encode_chunk
from lcf_cli.main import app

runner = CliRunner()


def lcf_cli(*args: str | Path):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.lcf"
    path.write_bytes(sample_file(alpha=True, metadata=True, unknown=True))
    return path


@pytest.fixture
def corrupt(tmp_path: Path) -> Path:
    data = bytearray(sample_file())
    data[100] ^= 0x10  # inside HYPR
    path = tmp_path / "corrupt.lcf"
    path.write_bytes(data)
    return path


@pytest.fixture
def huge(tmp_path: Path) -> Path:
    header = pack_header(sample_header(width=100_000, height=100_000))
    body = [encode_chunk("HEAD", header), encode_chunk("CMAP", b"\x92\x40")]
    body += [encode_chunk(t, b"") for t in ("HYPR", "ANCH", "NANC", "LEND")]
    path = tmp_path / "huge.lcf"
    path.write_bytes(b"\x8bLCF\r\n\x1a\n\x00\x01" + b"".join(body))
    return path


@pytest.fixture
def image(tmp_path: Path) -> Path:
    from images import make_rgb

    path = tmp_path / "in.png"
    make_rgb(70, 45, "mixed").save(path)
    return path


# -- help and version ----------------------------------------------------------------------------------------------


def test_version() -> None:
    result = lcf_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"lcf {lcf.__version__}"


def test_help_teaches() -> None:
    result = lcf_cli("--help")
    assert result.exit_code == 0
    for word in ("encode", "decode", "info", "validate", "batch", "lcf encode photo.png -o photo.lcf", "Exit codes"):
        assert word in result.stdout


@pytest.mark.parametrize(
    "command, example",
    [
        ("encode", "lcf encode photo.png -o photo.lcf"),
        ("decode", "lcf decode photo.lcf -o photo.png"),
        ("info", "lcf info photo.lcf"),
        ("validate", "lcf validate archive/ --recursive"),
        ("batch", "lcf batch photos/ encoded/ --quality 5"),
    ],
)
def test_command_help_has_examples(command: str, example: str) -> None:
    result = lcf_cli(command, "--help")
    assert result.exit_code == 0
    assert "Examples" in result.stdout and example in result.stdout


def test_unknown_option_is_a_usage_error(good: Path) -> None:
    assert lcf_cli("info", good, "--bogus").exit_code == 2
    assert lcf_cli("frobnicate").exit_code == 2


# -- info ----------------------------------------------------------------------------------------------------------


def test_info_prints_header_and_chunk_table(good: Path) -> None:
    result = lcf_cli("info", good)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "100 x 50, RGB8" in out and "teacher" in out and "000102030405060708090a0b0c0d0e0f" in out
    assert "padded 128 x 64" in out and "4.25" in out
    for chunk_type in ("HEAD", "CMAP", "iCCP", "eXIf", "xMPd", "HYPR", "ANCH", "NANC", "ALPH", "teSt", "LEND"):
        assert chunk_type in out
    assert "NO" not in out
    assert result.stderr == ""


def test_info_json(good: Path) -> None:
    result = lcf_cli("info", good, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["valid"] is True and doc["error"] is None
    assert doc["header"]["width"] == 100 and doc["header"]["quality"] == 4.25
    assert [c["type"] for c in doc["chunks"]][:3] == ["HEAD", "CMAP", "iCCP"]
    assert doc["chunks"][0] == {"type": "HEAD", "offset": 10, "length": 48, "crc_ok": True}


def test_info_on_a_corrupt_file_lists_chunks_then_fails(corrupt: Path) -> None:
    result = lcf_cli("info", corrupt)
    assert result.exit_code == 4
    assert "HYPR" in result.stdout and "NO" in result.stdout and "LEND" in result.stdout
    assert "error: CRC mismatch" in result.stderr and "chunk HYPR" in result.stderr
    doc = json.loads(lcf_cli("info", corrupt, "--json").stdout)
    assert doc["valid"] is False and doc["error"]["type"] == "CorruptDataError" and doc["error"]["exit_code"] == 4
    assert [c["crc_ok"] for c in doc["chunks"]] == [True, True, False, True, True, True]


def test_info_failures(tmp_path: Path, image: Path, huge: Path) -> None:
    missing = lcf_cli("info", tmp_path / "missing.lcf")
    assert missing.exit_code == 8 and "No such file" in missing.stderr and missing.stdout == ""
    not_lcf = lcf_cli("info", image)
    assert not_lcf.exit_code == 3 and "looks like a PNG image" in not_lcf.stderr
    assert lcf_cli("info", tmp_path).exit_code == 8
    limited = lcf_cli("info", huge)
    assert limited.exit_code == 5 and "--max-pixels" in limited.stderr
    assert lcf_cli("info", huge, "--max-pixels", "0").exit_code == 0
    assert lcf_cli("info", huge, "--max-pixels", "-1").exit_code == 2


# -- validate ------------------------------------------------------------------------------------------------------


def test_validate_files_and_folders(tmp_path: Path, good: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deeper.lcf").write_bytes(sample_file())
    (tmp_path / "notes.txt").write_text("not checked")
    result = lcf_cli("validate", good)
    assert result.exit_code == 0 and result.stdout == f"ok    {good}\n"
    flat = lcf_cli("validate", tmp_path)
    assert flat.exit_code == 0 and flat.stdout.splitlines() == [f"ok    {good}"]
    deep = lcf_cli("validate", tmp_path, "--recursive")
    assert deep.exit_code == 0 and len(deep.stdout.splitlines()) == 2 and "deeper.lcf" in deep.stdout


def test_validate_reports_every_file_and_exits_with_the_first_failure(
    tmp_path: Path, good: Path, corrupt: Path, huge: Path
) -> None:
    missing = tmp_path / "missing.lcf"
    result = lcf_cli("validate", good, huge, corrupt, missing)
    lines = result.stdout.splitlines()
    assert result.exit_code == 5
    assert lines[0] == f"ok    {good}"
    assert lines[1].startswith(f"FAIL  {huge}: image of 100000x100000")
    assert lines[2].startswith(f"FAIL  {corrupt}: CRC mismatch")
    assert lines[3].startswith(f"FAIL  {missing}: ") and "No such file" in lines[3]
    assert lcf_cli("validate", huge, "--max-pixels", "0").exit_code == 0


def test_validate_json(good: Path, corrupt: Path) -> None:
    result = lcf_cli("validate", good, corrupt, "--json")
    assert result.exit_code == 4
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    assert [f["valid"] for f in doc["files"]] == [True, False]
    assert doc["files"][1]["error"]["chunk"] == "HYPR" and doc["files"][1]["error"]["offset"] is not None


def test_validate_empty_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = lcf_cli("validate", tmp_path)
    assert result.exit_code == 2 and "no .lcf files" in result.stderr and "--recursive" in result.stderr


def test_validate_deep_decodes_the_streams(tmp_path: Path, image: Path, tiny_weights: Path) -> None:
    real = tmp_path / "real.lcf"
    assert lcf_cli("encode", image, "-o", real, "-q", "7", "--weights", tiny_weights).exit_code == 0
    assert lcf_cli("validate", real, "--deep", "--weights", tiny_weights).exit_code == 0
    # a damaged anchor stream with a repaired CRC passes the structural checks but not --deep
    from lcf.container import Chunk, read_container, write_container

    container = read_container(real.read_bytes())
    chunks = [Chunk(c.type, c.payload[:-4] if c.type == "ANCH" else c.payload) for c in container.chunks]
    damaged = tmp_path / "damaged.lcf"
    damaged.write_bytes(write_container(container.header, chunks))
    assert lcf_cli("validate", damaged).exit_code == 0
    result = lcf_cli("validate", damaged, "--deep", "--weights", tiny_weights)
    assert result.exit_code == 4 and "FAIL" in result.stdout
    # the container-only sample was not made with these weights: --deep says so
    sample = tmp_path / "sample.lcf"
    sample.write_bytes(sample_file())
    assert lcf_cli("validate", sample, "--deep", "--weights", tiny_weights).exit_code == 6


def test_validate_every_bit_flip_and_truncation(tmp_path: Path) -> None:
    """Every single-bit change and every truncation of a valid file fails cleanly in `lcf validate` (the reader's
    own test covers all 255 values of every byte)."""
    data = sample_file(metadata=True)
    folder = tmp_path / "damaged"
    folder.mkdir()
    for i in range(len(data)):
        for bit in range(8):
            (folder / f"flip-{i:04d}-{bit}.lcf").write_bytes(data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :])
        (folder / f"cut-{i:04d}.lcf").write_bytes(data[:i])
    result = lcf_cli("validate", folder)
    lines = result.stdout.splitlines()
    assert len(lines) == 9 * len(data)
    assert all(line.startswith("FAIL  ") for line in lines), [x for x in lines if not x.startswith("FAIL")][:3]
    assert result.exit_code in (3, 4, 5)


# -- encode / decode / batch (the codec is not built in yet) -------------------------------------------------------


def no_outputs(folder: Path, *expected: str) -> bool:
    return sorted(p.name for p in folder.iterdir()) == sorted(expected)


def test_encode_then_decode(image: Path, tiny_weights: Path) -> None:
    folder = image.parent
    result = lcf_cli("encode", image, "-o", folder / "out.lcf", "--quality", "5.5", "-v", "--weights", tiny_weights)
    assert result.exit_code == 0, result.stderr
    assert "bpp" in result.stderr and "PSNR" in result.stderr
    assert (folder / "out.lcf").read_bytes().startswith(lcf.container.SIGNATURE)
    result = lcf_cli("decode", folder / "out.lcf", "-o", folder / "back.png", "--weights", tiny_weights)
    assert result.exit_code == 0, result.stderr
    from PIL import Image

    with Image.open(folder / "back.png") as back, Image.open(image) as src:
        assert back.size == src.size
    assert sorted(p.name for p in folder.iterdir()) == ["back.png", "in.png", "out.lcf"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--quality", "9"], 2, "quality"),
        (["--quality", "0.5"], 2, "quality"),
        (["--device", "tpu"], 2, "device must be"),
    ],
)
def test_encode_usage_errors(image: Path, args: list[str], code: int, message: str) -> None:
    result = lcf_cli("encode", image, "-o", image.parent / "out.lcf", *args)
    assert result.exit_code == code and message in result.stderr
    assert no_outputs(image.parent, "in.png")


def test_encode_io_errors(tmp_path: Path, image: Path) -> None:
    missing = lcf_cli("encode", tmp_path / "nope.png", "-o", tmp_path / "out.lcf")
    assert missing.exit_code == 8 and "no such file" in missing.stderr
    no_folder = lcf_cli("encode", image, "-o", tmp_path / "no" / "out.lcf")
    assert no_folder.exit_code == 8 and "does not exist" in no_folder.stderr
    assert lcf_cli("encode", image).exit_code == 2  # -o is required


def test_decode_with_other_weights_fails_cleanly_without_output(good: Path, tiny_weights: Path) -> None:
    result = lcf_cli("decode", good, "-o", good.parent / "out.png", "--decoder", "teacher", "--weights", tiny_weights)
    assert result.exit_code == 6 and "encoded with model" in result.stderr
    assert no_outputs(good.parent, "good.lcf")
    result = lcf_cli("decode", good, "-o", good.parent / "out.png", "--decoder", "nope", "--weights", tiny_weights)
    assert result.exit_code == 6 and "encoded with model" in result.stderr  # the model comes first
    assert no_outputs(good.parent, "good.lcf")


def test_decode_failures(tmp_path: Path, corrupt: Path, huge: Path, image: Path) -> None:
    out = tmp_path / "out.png"
    assert lcf_cli("decode", corrupt, "-o", out).exit_code == 4
    assert lcf_cli("decode", huge, "-o", out).exit_code == 5
    assert lcf_cli("decode", image, "-o", out).exit_code == 3
    assert lcf_cli("decode", tmp_path / "missing.lcf", "-o", out).exit_code == 8
    assert lcf_cli("decode", corrupt, "-o", out, "--device", "gpu").exit_code == 2
    assert not out.exists()


def test_batch_lists_a_file_of_other_weights_as_failed(tmp_path: Path, good: Path, tiny_weights: Path) -> None:
    result = lcf_cli(
        "batch", good.parent, tmp_path / "out", "--to", "png", "--include", "*.lcf", "--weights", tiny_weights, "--json"
    )
    assert result.exit_code == 6
    assert not list((tmp_path / "out").rglob("*.png")) if (tmp_path / "out").exists() else True


def test_batch_passes_every_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = {}

    def fake_batch(src, dst, **kwargs):
        seen.update(kwargs, src=src, dst=dst)
        item = api.BatchItem(src=Path("a.png"), dst=Path("a.lcf"), status="failed", error="bad", exit_code=7)
        return api.BatchReport(items=(item, api.BatchItem(Path("b.png"), Path("b.lcf"), "ok")), seconds=1.0)

    monkeypatch.setattr(api, "batch", fake_batch)
    result = lcf_cli(
        "batch",
        tmp_path,
        tmp_path / "out",
        "-q",
        "6",
        "--include",
        "*.png",
        "--include",
        "*.jpg",
        "--exclude",
        "raw/*",
        "-j",
        "3",
        "--overwrite",
        "--max-pixels",
        "0",
        "--json",
    )
    assert result.exit_code == 7
    assert seen["quality"] == 6.0 and seen["to"] == "lcf" and seen["include"] == ("*.png", "*.jpg")
    assert seen["exclude"] == ("raw/*",) and seen["workers"] == 3 and seen["overwrite"] is True
    assert seen["limits"].max_pixels is None
    doc = json.loads(result.stdout)
    assert [f["status"] for f in doc["files"]] == ["failed", "ok"]
    text = lcf_cli("batch", tmp_path, tmp_path / "out")
    assert "1 done, 0 skipped, 1 failed" in text.stderr and "FAIL  a.png: bad" in text.stderr


@pytest.mark.parametrize(
    "args, code",
    [
        (["--to", "PNG!"], 2),
        (["--workers", "0"], 2),
        (["--quality", "8"], 2),
    ],
)
def test_batch_usage_errors(tmp_path: Path, args: list[str], code: int) -> None:
    assert lcf_cli("batch", tmp_path, tmp_path / "out", *args).exit_code == code


def test_batch_missing_source(tmp_path: Path) -> None:
    result = lcf_cli("batch", tmp_path / "nope", tmp_path / "out")
    assert result.exit_code == 8 and "not a folder" in result.stderr


# -- error plumbing ------------------------------------------------------------------------------------------------


def test_os_errors_become_exit_8(monkeypatch: pytest.MonkeyPatch, good: Path) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(good))

    monkeypatch.setattr(api, "inspect_file", denied)
    result = lcf_cli("info", good)
    assert result.exit_code == 8 and f"{good}: Permission denied" in result.stderr


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, good: Path) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "validate_file", interrupted)
    result = lcf_cli("validate", good)
    assert result.exit_code == 130 and "interrupted" in result.stderr


def test_error_messages_with_brackets_are_printed_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "[red]x[/].lcf"
    result = lcf_cli("info", path)
    assert result.exit_code == 8 and "[red]x[/].lcf" in result.stderr


def test_bench_measures_lcf_and_a_classical_codec(tmp_path: Path, tiny_weights: Path) -> None:
    from images import make_rgb_array
    from PIL import Image

    images = tmp_path / "photos"
    images.mkdir()
    for i in range(2):
        Image.fromarray(make_rgb_array(64, 48, kind="mixed", seed=i)).save(images / f"{i}.png")
    out = tmp_path / "results"
    result = lcf_cli("bench", images, "--codecs", "jpeg420", "--quick", "--out", out, "--weights", tiny_weights)
    assert result.exit_code == 0, result.output
    assert "BD-rate of lcf" in result.output
    for name in ("photos_per_image.csv", "photos_rd.csv", "photos_rd.png", "photos.md"):
        assert (out / name).stat().st_size > 0, name
    stamp = json.loads((out / "photos_lcf.json").read_text())
    weights = api.get_codec(tiny_weights).weights
    assert stamp == {"decoder": "teacher", "model_id": weights.model_id.hex(), "encoder_id": weights.encoder_id().hex()}
    assert lcf_cli("bench", tmp_path / "nowhere", "--weights", tiny_weights).exit_code != 0


def test_bench_measures_several_efforts_as_curves(tmp_path: Path, tiny_weights: Path) -> None:
    from images import make_rgb_array
    from PIL import Image

    images = tmp_path / "photos"
    images.mkdir()
    Image.fromarray(make_rgb_array(64, 64, kind="mixed", seed=7)).save(images / "0.png")
    out = tmp_path / "results"
    result = lcf_cli(
        "bench", images, "--codecs", "none", "--quick", "--out", out, "--weights", tiny_weights, "--effort", "0,1"
    )
    assert result.exit_code == 0, result.output
    assert "lcf-e1" in result.output
    assert json.loads((out / "photos_lcf-e1.json").read_text())["effort"] == 1
    assert "effort" not in json.loads((out / "photos_lcf.json").read_text())
    for bad in ("0,0", "5", "x"):
        failed = lcf_cli("bench", images, "--out", out, "--weights", tiny_weights, "--effort", bad)
        assert failed.exit_code == 2 and "effort" in failed.output and "Traceback" not in failed.output


def test_long_single_steps_show_a_transient_spinner_on_a_terminal_only(monkeypatch):
    """lcf encode (effort 0) and lcf decode run under lcf_cli.common.working: a spinner naming the file on a
    terminal's stderr, cleared at the end; nothing at all when stderr is a pipe or a file."""
    import io
    import time

    from rich.console import Console

    from lcf_cli import common

    shown = io.StringIO()
    monkeypatch.setattr(common, "err_console", Console(file=shown, force_terminal=True, width=80))
    with common.working("decoding big.lcf"):
        time.sleep(0.3)
    assert "decoding big.lcf" in shown.getvalue() and shown.getvalue().endswith("\x1b[2K")
    piped = io.StringIO()
    monkeypatch.setattr(common, "err_console", Console(file=piped, force_terminal=False))
    with common.working("decoding big.lcf"):
        time.sleep(0.1)
    assert piped.getvalue() == ""
