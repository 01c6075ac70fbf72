"""Conformance vectors (spec/lcf.md, "Conformance vectors"): the files in spec/vectors/ pin the format.

For every vector: the file is unchanged; its header and chunk table are as recorded; it decodes (with the vectors'
own weights) to exactly the pinned symbols; those symbols code back to exactly its streams; the encoder turns the
pinned source image into exactly its bytes; the pixels are within ±1 of the reference PNG (pixels are float and are
not required to be bit-exact); alpha and metadata come back byte for byte.

After an intended format change, regenerate everything (weights, files, PNGs, vectors.json) with

    LCF_REGENERATE_VECTORS=1 python -m pytest tests/test_vectors.py

and commit the result together with the change that needed it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest

VECTORS_DIR = Path(__file__).resolve().parents[1] / "spec" / "vectors"
REGENERATE = os.environ.get("LCF_REGENERATE_VECTORS") == "1"
HOW_TO_REGENERATE = (
    "If this change of the format is intended, regenerate the vectors with "
    "`LCF_REGENERATE_VECTORS=1 python -m pytest tests/test_vectors.py` and commit them with the change."
)


def _load_generator():
    spec = importlib.util.spec_from_file_location("lcf_make_vectors", VECTORS_DIR / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


mv = _load_generator()
NAMES = [v.name for v in mv.VECTORS]
BY_NAME = {v.name: v for v in mv.VECTORS}


@pytest.fixture(scope="module")
def index() -> dict:
    if REGENERATE:
        mv.generate()
    return json.loads((VECTORS_DIR / "vectors.json").read_text())


@pytest.fixture(scope="module")
def codec(index):
    from lcf.codec import Codec

    return Codec(VECTORS_DIR / index["weights"]["folder"])


@pytest.fixture(scope="module")
def decode(codec):
    @cache
    def run(name: str):
        return codec.decode((VECTORS_DIR / f"{name}.lcf").read_bytes())

    return run


def _entry(index: dict, name: str) -> dict:
    entries = {v["name"]: v for v in index["vectors"]}
    assert name in entries, f"vectors.json has no entry {name!r}. {HOW_TO_REGENERATE}"
    return entries[name]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_index_lists_exactly_the_generator_vectors(index) -> None:
    assert [v["name"] for v in index["vectors"]] == NAMES, HOW_TO_REGENERATE


def test_weights_are_the_recorded_model_and_small(index, codec) -> None:
    assert codec.weights.model_id.hex() == index["weights"]["model_id"], HOW_TO_REGENERATE
    assert codec.weights.manifest.model_config.to_dict() == index["weights"]["model_config"]
    folder = VECTORS_DIR / index["weights"]["folder"]
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    tables = codec.weights.entropy["tables.family.pmf"].nbytes
    assert sum(sizes.values()) - tables < 1_000_000, f"the vectors' weights grew: {sizes}"


@pytest.mark.parametrize("name", NAMES)
def test_source_image_is_the_pinned_one(index, name) -> None:
    """The generator still builds the same source image (else the encoder comparison below means nothing)."""
    src, pinned = BY_NAME[name].source(), _entry(index, name)["source"]
    assert mv.sha256(src.rgb) == pinned["rgb_sha256"], HOW_TO_REGENERATE
    for key, value in (("alpha", src.alpha), ("icc", src.icc), ("exif", src.exif), ("xmp", src.xmp)):
        assert (None if value is None else mv.sha256(value)) == pinned[f"{key}_sha256"], key


@pytest.mark.parametrize("name", NAMES)
def test_file_is_unchanged_and_its_structure_as_recorded(index, name) -> None:
    from lcf.container import read_container

    entry = _entry(index, name)
    data = (VECTORS_DIR / entry["file"]).read_bytes()
    assert _sha256(data) == entry["sha256"] and len(data) == entry["bytes"], HOW_TO_REGENERATE
    header = read_container(data).header
    assert header.as_dict() | {"quality_u16": round(header.quality * 256)} == entry["header"]
    assert mv.chunk_table(data) == entry["chunks"]


@pytest.mark.parametrize("name", NAMES)
def test_decodes_to_the_pinned_symbols(index, decode, name) -> None:
    got = mv.symbol_digests(decode(name).symbols)
    assert got == _entry(index, name)["symbols"], (
        f"{name}: the decoded symbols differ from the pinned ones. Bytes -> symbols is integer arithmetic, the same "
        f"on every machine (spec/lcf.md, 'What is exact'), so this is a change of the format or a bug. "
        f"{HOW_TO_REGENERATE}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_pinned_symbols_code_to_the_file_streams(codec, decode, name) -> None:
    """Symbols -> stream bytes: integer arithmetic only, independent of g_a's floats."""
    from lcf.container import read_container

    container = read_container((VECTORS_DIR / f"{name}.lcf").read_bytes())
    hyper, anchor, nonanchor, _ = codec.code_symbols(decode(name).symbols)
    assert (hyper, anchor, nonanchor) == (container.hyper, container.anchor, container.nonanchor), (
        f"{name}: coding the decoded symbols again gives other stream bytes. {HOW_TO_REGENERATE}"
    )


@pytest.mark.parametrize("name", NAMES)
def test_encoder_reproduces_the_file_bytes(index, codec, decode, name) -> None:
    vector = BY_NAME[name]
    data = codec.encode(vector.source(), vector.quality)
    if data != (VECTORS_DIR / f"{name}.lcf").read_bytes():
        _, _, symbols = codec.analyse(vector.source(), vector.quality)
        same = mv.symbol_digests(symbols) == _entry(index, name)["symbols"]
        pytest.fail(
            f"{name}: the encoder no longer writes the pinned bytes "
            + (
                "although g_a gives the pinned symbols: the coding or the container changed. "
                if same
                else "because g_a/h_a give other symbols (the analysis floats changed). "
            )
            + HOW_TO_REGENERATE
        )


@pytest.mark.parametrize("name", NAMES)
def test_pixels_match_the_reference_png_within_one(index, decode, name) -> None:
    from PIL import Image

    entry = _entry(index, name)["decoded"]
    decoded = decode(name)
    out = np.asarray(mv.output_image(decoded), dtype=np.int16)
    with Image.open(VECTORS_DIR / entry["png"]) as ref_img:
        assert ref_img.mode == entry["mode"]
        ref = np.asarray(ref_img, dtype=np.int16)
    assert out.shape == ref.shape
    diff = int(np.abs(out - ref).max())
    assert diff <= 1, f"{name}: decoded pixels differ from {entry['png']} by up to {diff} (allowed: 1)"
    assert decoded.decoder == entry["decoder"]
    # alpha is lossless: exact
    assert (None if decoded.alpha is None else mv.sha256(decoded.alpha)) == entry["alpha_sha256"]


def test_metadata_comes_back_byte_for_byte(decode) -> None:
    """iCCP and xMPd unchanged; eXIf is stored without "Exif\\0\\0" and handed back with it."""
    from lcf.container import read_container

    name = "rgba-40x30-q6"
    src, decoded = BY_NAME[name].source(), decode(name)
    assert (decoded.icc, decoded.exif, decoded.xmp) == (src.icc, src.exif, src.xmp)
    stored = read_container((VECTORS_DIR / f"{name}.lcf").read_bytes()).exif
    assert stored == src.exif[len(b"Exif\0\0") :] and stored[:4] in (b"MM\0*", b"II*\0")


def test_vectors_cover_the_edge_cases(index) -> None:
    """What the set is for: no channel coded, some skipped, all coded, escapes in z, unused CMAP bits, padding."""
    by_name = {v["name"]: v for v in index["vectors"]}
    m = index["weights"]["model_config"]["M"]
    coded = {name: len(v["symbols"]["coded_channels"]) for name, v in by_name.items()}
    assert coded["gradient-64x48-q1"] == 0 and coded["gradient-64x48-q7"] == m
    assert any(0 < n < m for n in coded.values())
    assert m % 8, "M should leave unused bits in CMAP"
    assert max(v["symbols"]["z_hat_abs_max"] for v in by_name.values()) > 32, "no z escape (|ẑ| > Lz = 32)"
    assert any(v["header"]["width"] % 64 and v["header"]["height"] % 64 for v in by_name.values())
    assert any(v["symbols"]["z_hat_shape"][1] > 1 and v["symbols"]["z_hat_shape"][2] > 1 for v in by_name.values())
