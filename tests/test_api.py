"""The public API (lcf.encode / lcf.decode / lcf.Codec / Pillow registration on import) and deep validation
(lcf.api.validate_deep, lcf validate --deep)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from images import make_rgba, to_bytes
from PIL import Image
from typer.testing import CliRunner

import lcf
from lcf import api
from lcf.container import Chunk, Header, read_container, write_container
from lcf.errors import CorruptDataError, LcfError, ModelMismatchError
from lcf_cli.main import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def encoded(tiny_weights: Path) -> bytes:
    return lcf.encode(make_rgba(20, 14, kind="mixed", alpha="binary"), 5.5, weights=tiny_weights)


def _with_stream(data: bytes, kind: str, change) -> bytes:
    """``data`` with the payload of chunk ``kind`` changed (CRCs stay valid: the damage reaches the codec)."""
    container = read_container(data)
    chunks = [Chunk(c.type, change(c.payload) if c.type == kind else c.payload) for c in container.chunks]
    return write_container(container.header, chunks)


# -- lcf ---------------------------------------------------------------------------------------------------------


def test_import_is_cheap_and_has_no_side_effects() -> None:
    """``import lcf`` imports no PyTorch, registers nothing with Pillow and sets no environment variable (issue 22);
    ``import lcf.pillow`` registers the plugin, and a codec asks for huge pages (lcf.resources.use_huge_pages)."""
    code = (
        "import os, sys; before = dict(os.environ); import lcf; from PIL import Image; Image.init(); "
        "assert 'torch' not in sys.modules and 'lcf.codec' not in sys.modules, sorted(sys.modules); "
        "assert dict(os.environ) == before, set(os.environ) ^ set(before); "
        "assert 'LCF' not in Image.OPEN and 'lcf.pillow' not in sys.modules; "
        "import lcf.pillow; "
        "assert 'LCF' in Image.OPEN and 'LCF' in Image.SAVE and Image.registered_extensions()['.lcf'] == 'LCF'; "
        "assert callable(lcf.encode) and callable(lcf.decode) and callable(lcf.register); "
        "assert 'torch' not in sys.modules"
    )
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode == 0, result.stderr


def test_an_lcf_file_is_an_image_input_without_importing_the_plugin(tiny_weights: Path, tmp_path: Path) -> None:
    """Encoding an .lcf file decodes it through the Pillow plugin, which lcf.image registers before it opens a file:
    as before issue 22, when ``import lcf`` registered it (a fresh process that never imports lcf.pillow itself)."""
    make_rgba(20, 14, kind="mixed", alpha="binary").convert("RGB").save(tmp_path / "a.png")
    code = (
        "import sys; from lcf import api; "
        f"api.encode_file({str(tmp_path / 'a.png')!r}, {str(tmp_path / 'a.lcf')!r}, quality=5.0); "
        f"report = api.encode_file({str(tmp_path / 'a.lcf')!r}, {str(tmp_path / 'b.lcf')!r}); "
        "assert (report.width, report.height) == (20, 14), report"
    )
    env = {**os.environ, "LCF_WEIGHTS": str(tiny_weights)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b.lcf").read_bytes().startswith(b"\x8bLCF")


def test_encode_decode_round_trip(encoded: bytes, tiny_weights: Path, tmp_path: Path) -> None:
    original = make_rgba(20, 14, kind="mixed", alpha="binary")
    image = lcf.decode(encoded, weights=tiny_weights)
    assert (image.mode, image.size) == ("RGBA", (20, 14))
    assert np.array_equal(np.asarray(image)[..., 3], np.asarray(original)[..., 3])
    path = tmp_path / "x.lcf"
    path.write_bytes(encoded)
    assert np.array_equal(np.asarray(lcf.decode(path, weights=tiny_weights)), np.asarray(image))
    assert lcf.encode(to_bytes(original, "PNG"), 5.5, weights=tiny_weights) == encoded  # bytes of a PNG file, too
    from lcf.codec import Codec

    codec = lcf.Codec(tiny_weights)
    assert lcf.Codec is Codec and np.array_equal(np.asarray(codec.decode(encoded).to_pil()), np.asarray(image))


def test_decode_errors_are_lcf_errors(encoded: bytes, tiny_weights: Path, tmp_path: Path) -> None:
    with pytest.raises(LcfError):
        lcf.decode(b"not an lcf file", weights=tiny_weights)
    with pytest.raises(LcfError, match="no such file|No such file"):
        lcf.decode(tmp_path / "missing.lcf", weights=tiny_weights)
    with pytest.raises(AttributeError):
        lcf.no_such_name  # noqa: B018


def test_pillow_plugin_is_registered_by_lcf_register(encoded: bytes, tiny_weights: Path, tmp_path: Path) -> None:
    path = tmp_path / "x.lcf"
    path.write_bytes(encoded)
    lcf.register(weights=str(tiny_weights))
    try:
        with Image.open(path) as im:
            assert im.format == "LCF" and im.size == (20, 14) and im.mode == "RGBA"
            im.load()
    finally:
        lcf.register()


# -- validate_deep -------------------------------------------------------------------------------------------------


def test_validate_deep_accepts_a_good_file(encoded: bytes, tiny_weights: Path) -> None:
    api.validate_deep(encoded, tiny_weights)


@pytest.mark.parametrize("kind", ["HYPR", "ANCH", "NANC"])
def test_validate_deep_finds_streams_that_do_not_end_with_their_chunk(
    encoded: bytes, tiny_weights: Path, kind: str
) -> None:
    longer = _with_stream(encoded, kind, lambda p: p + b"\x01\0\0\0")
    read_container(longer)  # structurally fine: only decoding the stream finds it
    with pytest.raises(CorruptDataError, match="stream"):
        api.validate_deep(longer, tiny_weights)
    if len(read_container(encoded).get(kind).payload) >= 4:
        with pytest.raises(CorruptDataError):
            api.validate_deep(_with_stream(encoded, kind, lambda p: p[:-4]), tiny_weights)


def test_validate_deep_checks_the_model(encoded: bytes, tiny_weights: Path) -> None:
    container = read_container(encoded)
    other = Header(**{**vars(container.header), "model_id": bytes(16)})
    with pytest.raises(ModelMismatchError, match="model"):
        api.validate_deep(write_container(other, container.chunks), tiny_weights)
    wider = Header(**{**vars(container.header), "latent_channels": container.header.latent_channels + 8})
    cmap = Chunk("CMAP", container.bitmap + b"\0")
    chunks = [cmap if c.type == "CMAP" else c for c in container.chunks]
    with pytest.raises(ModelMismatchError, match="latent"):
        api.validate_deep(write_container(wider, chunks), tiny_weights)


def test_cli_validate_deep(encoded: bytes, tiny_weights: Path, tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    (folder / "sub").mkdir(parents=True)
    (folder / "a-good.lcf").write_bytes(encoded)
    (folder / "sub" / "b-leftover.lcf").write_bytes(_with_stream(encoded, "NANC", lambda p: p + b"\x07\0\0\0"))
    (folder / "sub" / ".c.lcf.lcf-tmp-123-abcd").write_bytes(encoded[:20])  # a batch's temporary file: not checked
    shallow = runner.invoke(app, ["validate", str(folder), "-r"])
    assert shallow.exit_code == 0, shallow.output  # structure and CRCs are fine
    assert "2 valid, 0 invalid" in shallow.stderr
    deep = runner.invoke(app, ["validate", str(folder), "-r", "--deep", "--weights", str(tiny_weights), "--json"])
    assert deep.exit_code == 4, deep.output
    doc = json.loads(deep.stdout)
    assert [f["valid"] for f in doc["files"]] == [True, False]
    error = doc["files"][1]["error"]
    assert error["type"] == "CorruptDataError" and "non-anchor stream" in error["message"]
    missing = runner.invoke(app, ["validate", str(folder), "-r", "--deep", "--weights", str(tmp_path / "none")])
    assert missing.exit_code == 8 and missing.stdout == "" and missing.stderr.count("manifest.json missing") == 1


def test_crc_of_written_files_is_right(encoded: bytes) -> None:
    """The helper above keeps files structurally valid (otherwise the deep tests would test the CRC check)."""
    data = _with_stream(encoded, "ANCH", lambda p: p + b"\0\0\0\0")
    lend = data[-12:]
    assert lend[4:8] == b"LEND" and int.from_bytes(lend[8:], "big") == zlib.crc32(b"LEND")
