"""A file that recommends a decoder the weights lack decodes with their default, and says so (spec/lcf.md, "decoder":
a decoder SHOULD fall back to its default and say so). Issue 20: it fell back silently."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
from images import make_rgb
from typer.testing import CliRunner

import lcf
from lcf import api
from lcf.container import read_container, write_container
from lcf.errors import DecoderFallbackWarning
from lcf_cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def files(tiny_codec, tmp_path_factory) -> tuple[Path, Path]:
    """(a file recommending the weights' default decoder, the same file recommending 'gone')."""
    data = tiny_codec.encode(make_rgb(40, 24, "mixed"), 4.0)
    container = read_container(data)
    assert container.header.decoder == tiny_codec.weights.default_decoder
    header = dataclasses.replace(container.header, decoder="gone")
    folder = tmp_path_factory.mktemp("fallback")
    (folder / "ok.lcf").write_bytes(data)
    (folder / "gone.lcf").write_bytes(write_container(header, list(container.chunks)))
    return folder / "ok.lcf", folder / "gone.lcf"


def test_codec_falls_back_to_the_default_and_notes_it(tiny_codec, files) -> None:
    ok, gone = (tiny_codec.decode(path.read_bytes()) for path in files)
    default = tiny_codec.weights.default_decoder
    assert gone.decoder == default and np.array_equal(gone.rgb, ok.rgb)
    assert len(gone.notes) == 1 and "'gone'" in gone.notes[0] and repr(default) in gone.notes[0]
    assert ok.notes == ()
    assert tiny_codec.decode(files[1].read_bytes(), default).notes == ()  # asked for: nothing to say


def test_api_reports_and_warns(tiny_weights, files, tmp_path) -> None:
    report = api.decode_file(files[1], tmp_path / "gone.png", weights=tiny_weights)
    assert len(report.notes) == 1 and "'gone'" in report.notes[0]
    assert api.decode_file(files[0], tmp_path / "ok.png", weights=tiny_weights).notes == ()
    with pytest.warns(DecoderFallbackWarning, match="recommends the decoder 'gone'"):
        lcf.decode(files[1], weights=tiny_weights)
    with pytest.warns(DecoderFallbackWarning):
        api.decode_array(files[1].read_bytes(), weights=tiny_weights)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DecoderFallbackWarning)
        lcf.decode(files[0], weights=tiny_weights)
        lcf.decode(files[1], weights=tiny_weights, decoder="teacher")


def test_cli_prints_a_warning(tiny_weights, files, tmp_path) -> None:
    runner = CliRunner()
    gone = runner.invoke(app, ["decode", str(files[1]), "-o", str(tmp_path / "a.png"), "--weights", str(tiny_weights)])
    assert gone.exit_code == 0, gone.output
    assert "warning:" in gone.stderr and "'gone'" in gone.stderr and gone.stdout == ""
    ok = runner.invoke(app, ["decode", str(files[0]), "-o", str(tmp_path / "b.png"), "--weights", str(tiny_weights)])
    assert ok.exit_code == 0 and "warning" not in ok.stderr
