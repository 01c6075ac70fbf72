"""spec/lcf.md, "Weights": the model identifier and the tensors of entropy.safetensors, checked from the spec's text.

The model identifier is recomputed here from the raw bytes of the safetensors file (parsed by hand, not by lcf or
the safetensors package), exactly as the spec describes it; the key/shape table is checked against the vectors'
weights. Plus the spec's own hygiene: no placeholder left, every cross-reference resolves.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[1] / "spec"
VECTORS = SPEC / "vectors"
INDEX = json.loads((VECTORS / "vectors.json").read_text())
WEIGHTS = VECTORS / INDEX["weights"]["folder"]
DTYPE_NAMES = {"F32": "float32", "F16": "float16", "I16": "int16", "I32": "int32", "I64": "int64"}


def raw_tensors(path: Path) -> dict[str, tuple[str, list[int], bytes]]:
    """safetensors by hand: u64 LE header length, JSON header, then the data; key -> (dtype name, shape, bytes)."""
    data = path.read_bytes()
    (n,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        start, stop = meta["data_offsets"]
        out[key] = (DTYPE_NAMES[meta["dtype"]], meta["shape"], body[start:stop])
    return out


def spec_model_id(tensors: dict[str, tuple[str, list[int], bytes]]) -> str:
    """lcf.md, "Weights", "The model identifier"."""
    digest = hashlib.sha256()
    for key in sorted(tensors, key=lambda k: k.encode("utf-8")):
        dtype, shape, data = tensors[key]
        for part in (key.encode("utf-8"), dtype.encode("ascii"), struct.pack(f"<{len(shape)}Q", *shape), data):
            digest.update(struct.pack("<Q", len(part)))
            digest.update(part)
    return digest.hexdigest()[:32]


@pytest.fixture(scope="module")
def entropy() -> dict[str, tuple[str, list[int], bytes]]:
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    return raw_tensors(WEIGHTS / manifest["files"]["entropy"])


def test_model_id_as_the_spec_defines_it(entropy) -> None:
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    model_id = spec_model_id(entropy)
    assert model_id == manifest["model_id"] == INDEX["weights"]["model_id"]
    for vector in INDEX["vectors"]:
        assert vector["header"]["model_id"] == model_id


def test_model_id_agrees_with_lcf_weights(entropy) -> None:
    from lcf.weights import load_weights

    assert load_weights(WEIGHTS).model_id.hex() == spec_model_id(entropy)


def _layer(key: str, shape: list[int]) -> dict[str, tuple[str, list[int]]]:
    """One integer layer of the table in lcf.md, "Weights": int16 weight, int64 bias, int32 shift."""
    return {f"{key}.weight": ("int16", shape), f"{key}.bias": ("int64", [shape[0]]), f"{key}.shift": ("int32", [1])}


def test_entropy_tensors_have_the_keys_and_shapes_of_the_spec(entropy) -> None:
    cfg = INDEX["weights"]["model_config"]
    N, M, Mz = cfg["N"], cfg["M"], cfg["Mz"]
    n2 = 3 * N // 2
    levels = len(cfg["levels"])
    expected = {
        "gain.log_gain": ("float32", [levels, M]),
        "gain.log_inv_gain": ("float32", [levels, M]),
        **_layer("h_s.0", [N, Mz, 3, 3]),
        **_layer("h_s.2.0", [4 * N, N, 3, 3]),
        **_layer("h_s.4", [n2, N, 3, 3]),
        **_layer("h_s.6.0", [4 * n2, n2, 3, 3]),
        **_layer("h_s.8", [2 * M, n2, 3, 3]),
        **_layer("ctx.conv", [2 * M, M, 5, 5]),
        **_layer("pen_anchor.net.0", [3 * M, 2 * M, 1, 1]),
        **_layer("pen_anchor.net.2", [3 * M, 3 * M, 1, 1]),
        **_layer("pen_anchor.net.4", [30 * M, 3 * M, 1, 1]),
        **_layer("pen_nonanchor.net.0", [3 * M, 4 * M, 1, 1]),
        **_layer("pen_nonanchor.net.2", [3 * M, 3 * M, 1, 1]),
        **_layer("pen_nonanchor.net.4", [9 * M, 3 * M, 1, 1]),
        "tables.family.format": ("int32", [4]),
        "tables.family.half_width": ("int32", [3, 64]),
        "tables.z.pmf": ("int32", [Mz, 2 * 32 + 2]),
    }
    got = {k: (dtype, shape) for k, (dtype, shape, _) in entropy.items()}
    pmf = got.pop("tables.family.pmf")
    assert pmf[0] == "int32" and len(pmf[1]) == 1
    assert got == expected
    assert struct.unpack("<4i", entropy["tables.family.format"][2]) == (1, 16, 64, 16)
    for key, (_dtype, _, data) in entropy.items():  # the weight rules of "Arithmetic of the integer networks"
        if key.endswith(".weight"):
            assert -32767 <= min(struct.unpack(f"<{len(data) // 2}h", data)), key
        elif key.endswith(".shift"):
            assert 1 <= struct.unpack("<i", data)[0] <= 40, key


def test_decoder_files_use_keys_relative_to_the_decoder() -> None:
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    for info in manifest["decoders"].values():
        keys = raw_tensors(WEIGHTS / info["file"])
        assert "0.trunk.0.conv.0.weight" in keys and "9.0.weight" in keys
        assert not any(k.startswith("decoders.") for k in keys)
        assert set(info["arch"]) <= {"kind", "N", "M", "attention", "residual"}


# -- the documents themselves ------------------------------------------------------------------------------------


def _headings(text: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", text, re.MULTILINE)}


def test_no_placeholder_is_left() -> None:
    for doc in ("lcf.md", "entropy.md"):
        text = (SPEC / doc).read_text(encoding="utf-8")
        assert "To be completed" not in text and "will be merged" not in text and "TODO" not in text, doc


def test_lcf_md_says_where_each_stream_is_decoded() -> None:
    text = (SPEC / "lcf.md").read_text(encoding="utf-8")
    section = text[text.index("## Entropy coding of the streams") : text.index("### Decoding procedure")]
    for chunk, where in (
        ("HYPR", "entropy.md section 9"),
        ("ANCH", "entropy.md section 8"),
        ("NANC", "entropy.md section 8"),
    ):
        row = next(line for line in section.splitlines() if line.startswith(f"| `{chunk}`"))
        assert where in row, chunk


def test_section_references_resolve() -> None:
    lcf_md = (SPEC / "lcf.md").read_text(encoding="utf-8")
    entropy_md = (SPEC / "entropy.md").read_text(encoding="utf-8")
    lcf_headings = _headings(lcf_md)
    # "entropy.md section N" and "entropy.md sections N..." must name a numbered heading of entropy.md
    numbers = {m.group(1) for m in re.finditer(r"^#+ (\d+(?:\.\d+)?)\.? ", entropy_md, re.MULTILINE)}
    for m in re.finditer(r"entropy\.md,? sections? (\d+(?:\.\d+)?)", lcf_md):
        assert m.group(1) in numbers, m.group(0)
    # quoted section names that lcf.md and entropy.md point at
    pattern = r'(?:see|in|as in|lcf\.md,|lcf\.md \(|and|of|step 1 of|"Weights",) "([A-Z][^"]+)"'
    quoted = {" ".join(q.split()) for q in re.findall(pattern, lcf_md + entropy_md)}  # names may wrap lines
    heading_names = lcf_headings | {h.split(":")[0] for h in lcf_headings} | {h.split(" (")[0] for h in lcf_headings}
    missing = {q for q in quoted if q not in heading_names and q not in {"The model identifier"}}
    assert not missing, f"references to sections that do not exist: {sorted(missing)}"
    assert "(entropy.md)" in lcf_md and "(lcf.md)" in entropy_md
