"""Weights folders are untrusted input (issue 20): every hostile folder fails fast with a typed LcfError naming the
file and the field, reads nothing outside the folder, never blocks, and stays far below 1 GiB of memory.

The folders are copies of the conformance vectors' small weights (spec/vectors/weights: N=8, M=20, Mz=12) with one
thing changed. Cases that could hang or allocate gigabytes on a regression run in a subprocess with a timeout and an
address-space limit, so that the suite cannot hang or exhaust the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from lcf.errors import FormatError, LcfIOError, ModelMismatchError
from lcf.weights import load_weights, model_id_of

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "spec" / "vectors" / "weights"
SHIPPED = ROOT / "weights"
VECTOR_FILE = ROOT / "spec" / "vectors" / "gradient-64x48-q1.lcf"
ONE_GIB = 1 << 30


def copy_weights(dst: Path, edit=None) -> Path:
    """A copy of the vectors' weights folder, its manifest passed through ``edit(manifest) -> manifest``."""
    shutil.copytree(VECTORS, dst)
    if edit is not None:
        manifest = edit(json.loads((dst / "manifest.json").read_text()))
        (dst / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
    return dst


def with_entropy(dst: Path, change) -> Path:
    """A copy whose entropy.safetensors is ``change(tensors)``, the manifest's model id updated to match (so the
    checks behind the model id are reached)."""
    folder = copy_weights(dst)
    tensors = change(load_file(str(folder / "entropy.safetensors")))
    save_file(tensors, str(folder / "entropy.safetensors"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model_id"] = model_id_of(tensors).hex()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


_PROGRAM = """\
import json, resource, sys
import lcf.codec
try:  # an address-space limit: what the interpreter has now + 2 GiB, so a regression fails instead of swapping
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), resource.RLIM_INFINITY))
except (OSError, ValueError, StopIteration):
    pass
results = {}
for name, (folder, decode) in json.loads(sys.argv[1]).items():
    try:
        codec = lcf.codec.Codec(folder)
        if decode:
            codec.decode(open(decode, "rb").read())
        results[name] = {"error": None}
    except lcf.errors.LcfError as exc:
        results[name] = {"error": type(exc).__name__, "message": str(exc)}
    except BaseException as exc:
        results[name] = {"error": "untyped " + type(exc).__name__, "message": str(exc)[:300]}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(json.dumps({"results": results, "peak_rss": peak}))
"""


def run_isolated(cases: dict[str, tuple[Path, Path | None]], timeout: float = 120) -> tuple[dict, int]:
    """``Codec(folder)``, then decoding ``decode`` (a file) when given, for each case, in one fresh interpreter
    (lcf.codec imported, an address-space limit set) with a timeout. Returns ({case: {"error": LcfError type name or
    None, "message"}}, the process's peak RSS in bytes); ``subprocess.TimeoutExpired`` if it hangs."""
    arg = json.dumps({k: (str(f), None if d is None else str(d)) for k, (f, d) in cases.items()})
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, arg],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tempfile.gettempdir(),
    )  # not the repository: the lcf that pytest imports
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out["results"], out["peak_rss"]


# -- file names: plain names inside the folder --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../other/entropy.safetensors",
        "sub/entropy.safetensors",
        "..",
        ".",
        "entropy.safetensors\x00",
        "C:entropy.safetensors",
        "..\\entropy.safetensors",
    ],
)
def test_file_names_with_a_directory_part_are_refused(tmp_path, name):
    copy_weights(tmp_path / "other")  # a valid entropy file that "../other/entropy.safetensors" reaches
    folder = copy_weights(tmp_path / "w", lambda m: {**m, "files": {**m["files"], "entropy": name}})
    (folder / "sub").symlink_to(tmp_path / "other")
    with pytest.raises(FormatError, match=r"files\.entropy must be a plain file name"):
        load_weights(folder)


def test_an_absolute_path_is_refused(tmp_path):
    other = copy_weights(tmp_path / "other")
    absolute = str(other / "entropy.safetensors")
    folder = copy_weights(tmp_path / "w", lambda m: {**m, "files": {**m["files"], "entropy": absolute}})
    with pytest.raises(FormatError, match=r"manifest\.json: files\.entropy must be a plain file name"):
        load_weights(folder)


def test_etc_passwd_never_reaches_a_parser(tmp_path):
    folder = copy_weights(
        tmp_path / "w", lambda m: {**m, "decoders": {"teacher": {**m["decoders"]["teacher"], "file": "/etc/passwd"}}}
    )
    with pytest.raises(FormatError, match=r"decoders\.teacher\.file must be a plain file name"):
        load_weights(folder)


def test_a_symbolic_link_in_the_folder_is_refused(tmp_path):
    other = copy_weights(tmp_path / "other")
    folder = copy_weights(tmp_path / "w")
    (folder / "entropy.safetensors").unlink()
    (folder / "entropy.safetensors").symlink_to(other / "entropy.safetensors")
    with pytest.raises(LcfIOError, match="entropy.safetensors .*is a symbolic link"):
        load_weights(folder)


def test_a_folder_named_as_a_file_is_not_a_regular_file(tmp_path):
    folder = copy_weights(tmp_path / "w")
    (folder / "encoder.safetensors").unlink()
    (folder / "encoder.safetensors").mkdir()
    with pytest.raises(LcfIOError, match="encoder.safetensors .*not a regular file but a folder"):
        load_weights(folder).encoder()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_fails_at_once_instead_of_blocking(tmp_path):
    """Opening a FIFO for reading blocks until a writer comes; lcf opens without blocking and refuses it. The cases
    run in a subprocess with a timeout, so that a regression fails instead of hanging the suite."""
    cases = {}
    for target in ("manifest.json", "entropy.safetensors", "decoder-teacher.safetensors"):
        folder = copy_weights(tmp_path / target)
        (folder / target).unlink()
        os.mkfifo(folder / target)
        cases[target] = (folder, VECTOR_FILE)
    try:
        results, _ = run_isolated(cases, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("Codec blocked on a FIFO named in a weights folder")
    for target, result in results.items():
        assert result["error"] == "LcfIOError", (target, result)
        assert target in result["message"] and "FIFO" in result["message"], result


# -- malformed manifests -----------------------------------------------------------------------------------------


MALFORMED = {
    "no fields": ('{"format": "lcf-weights", "version": 1}', r"model_config is missing"),
    "a list": ("[1, 2, 3]", r"the top level must be a JSON object, got a list"),
    "files as a string": (None, r"files must be a JSON object, got a string"),
    "not JSON": ('{"format": ', r"is not valid JSON"),
    "NaN level": (None, r"not valid JSON: NaN is not a JSON number"),
    "infinite level": (None, r"not valid JSON: the number 1e400 is beyond the range of a float"),
    "negative level": (None, r"model_config\.levels must hold positive finite numbers, got -0\.5"),
    "a repeated key": ('{"format": "lcf-weights", "format": "lcf-weights", "version": 1}', r"appears twice"),
    "version true": ('{"format": "lcf-weights", "version": true}', r"format/version must be"),
    "deep nesting": (
        '{"format": "lcf-weights", "version": 1, "info": ' + "[" * 100_000 + "]" * 100_000 + "}",
        r"not valid JSON: nested too deeply",
    ),
    "unknown field": (None, r"has unknown fields \['extra'\]"),
    "bad model id": (None, r"model_id must be 32 lower-case hex digits"),
    "default decoder missing": (None, r"default_decoder must name one of the decoders"),
    "bad decoder name": (None, r"decoders has the name 'a/b'"),
    "arch M differs": (None, r"decoders\.teacher\.arch\.M is 22, but model_config\.M is 20"),
    "negative parameters": (None, r"decoders\.teacher\.parameters must be an integer from 0"),
}


def _malformed(case: str, manifest: dict) -> str | dict:
    text, _ = MALFORMED[case]
    if text is not None:
        return text
    if case == "files as a string":
        return {**manifest, "files": "entropy.safetensors"}
    if case == "negative level":
        return {**manifest, "model_config": {**manifest["model_config"], "levels": [-0.5]}}
    if case in ("NaN level", "infinite level"):
        return json.dumps(manifest).replace(
            '"levels": [0.0016', '"levels": [' + case.split()[0].replace("infinite", "1e400")
        )
    if case == "unknown field":
        return {**manifest, "extra": 1}
    if case == "bad model id":
        return {**manifest, "model_id": manifest["model_id"].upper()}
    if case == "default decoder missing":
        return {**manifest, "default_decoder": "cfg9"}
    if case == "bad decoder name":
        return {**manifest, "decoders": {"a/b": manifest["decoders"]["teacher"]}, "default_decoder": "a/b"}
    teacher = manifest["decoders"]["teacher"]
    if case == "arch M differs":
        return {**manifest, "decoders": {"teacher": {**teacher, "arch": {**teacher["arch"], "M": 22}}}}
    return {**manifest, "decoders": {"teacher": {**teacher, "parameters": -1}}}


@pytest.mark.parametrize("case", MALFORMED)
def test_a_malformed_manifest_is_a_format_error_naming_the_field(tmp_path, case):
    folder = copy_weights(tmp_path / "w", lambda m: _malformed(case, m))
    with pytest.raises(FormatError, match=MALFORMED[case][1]) as info:
        load_weights(folder)
    assert str(folder / "manifest.json") in str(info.value)


def test_an_oversized_manifest_is_refused_before_reading(tmp_path):
    folder = copy_weights(tmp_path / "w")
    with open(folder / "manifest.json", "r+b") as f:
        f.truncate(2 << 20)
    with pytest.raises(FormatError, match=r"manifest\.json \(the weights manifest\) is 2,097,152 bytes, more than"):
        load_weights(folder)


# -- sizes the model id does not cover -------------------------------------------------------------------------------


def test_n_beyond_the_bound_fails_before_anything_is_built(tmp_path):
    """N is not covered by the model id: ``N: 4096`` with a valid id built a 7.8 GB network before any check."""
    folder = copy_weights(tmp_path / "w", lambda m: {**m, "model_config": {**m["model_config"], "N": 4096}})
    with pytest.raises(FormatError, match=r"model_config\.N must be an even integer from 2 to 256, got 4096"):
        load_weights(folder)


def test_sizes_the_model_id_does_not_cover_fail_cleanly_in_little_memory(tmp_path):
    """``model_config.N`` beyond the bound or not the files' N, and a decoder arch whose N is beyond the bound or not
    its file's: each refused before anything is built from it (N: 4096 with a valid id built 7.8 GB before a
    RuntimeError; a decoder arch with N: 8192 reached 2.7 GB). All in one subprocess: its peak RSS, lcf.codec and
    torch included, stays under 1 GiB."""

    def model_n(n):
        return lambda m: {**m, "model_config": {**m["model_config"], "N": n}}

    def arch_n(n):
        def edit(m):
            teacher = m["decoders"]["teacher"]
            return {**m, "decoders": {"teacher": {**teacher, "arch": {**teacher["arch"], "N": n}}}}

        return edit

    edits = {
        "N 4096": model_n(4096),
        "N 64": model_n(64),
        "N 10": model_n(10),
        "arch N 8192": arch_n(8192),
        "arch N 256": arch_n(256),
    }
    results, peak = run_isolated(
        {name: (copy_weights(tmp_path / name.replace(" ", "-"), edit), VECTOR_FILE) for name, edit in edits.items()}
    )
    want = {
        "N 4096": ("FormatError", "model_config.N must be an even integer from 2 to 256, got 4096"),
        "N 64": ("ModelMismatchError", "entropy.safetensors: tensor 'h_s.0.weight' is I16 [8, 12, 3, 3], but "),
        "N 10": ("ModelMismatchError", "model_config (N=10, M=20, Mz=12, 7 levels) needs I16 [10, 12, 3, 3]"),
        "arch N 8192": ("FormatError", "decoders.teacher.arch.N must be an even integer from 2 to 256, got 8192"),
        "arch N 256": (
            "ModelMismatchError",
            "decoders.teacher.arch (N=256, M=20, attention=True, residual=True) needs F16/F32",
        ),
    }
    for name, (error, message) in want.items():
        assert results[name]["error"] == error and message in results[name]["message"], (name, results[name])
    assert peak < ONE_GIB, peak


# -- tensors that do not fit --------------------------------------------------------------------------------------


def test_an_encoder_tensor_of_the_wrong_shape_is_a_model_mismatch(tmp_path):
    from images import make_rgb_array

    from lcf.codec import Codec

    folder = copy_weights(tmp_path / "w")
    tensors = load_file(str(folder / "encoder.safetensors"))
    key = sorted(tensors)[0]
    tensors[key] = np.zeros((3, *tensors[key].shape), tensors[key].dtype)
    save_file(tensors, str(folder / "encoder.safetensors"))
    with pytest.raises(ModelMismatchError, match=rf"encoder\.safetensors: tensor '{key}' is F32 \[3, "):
        Codec(folder).encode(make_rgb_array(16, 16, seed=1), 4.0)


@pytest.mark.parametrize("dtype", [np.float64, np.uint8, np.int32])
def test_a_decoder_tensor_of_a_dtype_lcf_does_not_write_is_refused(tmp_path, dtype):
    from lcf.codec import Codec

    folder = copy_weights(tmp_path / "w")
    tensors = load_file(str(folder / "decoder-teacher.safetensors"))
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].astype(dtype)
    save_file(tensors, str(folder / "decoder-teacher.safetensors"))
    error = FormatError if dtype in (np.float64, np.uint8) else ModelMismatchError
    with pytest.raises(error, match=rf"decoder-teacher\.safetensors.*'{key}'"):
        Codec(folder).decode(VECTOR_FILE.read_bytes())


def test_an_entropy_tensor_of_the_wrong_dtype_or_shape_is_refused_before_loading(tmp_path):
    folder = with_entropy(tmp_path / "a", lambda t: {**t, "h_s.0.weight": t["h_s.0.weight"].astype(np.int32)})
    with pytest.raises(ModelMismatchError, match=r"tensor 'h_s.0.weight' is I32 \[8, 12, 3, 3\], but .*needs I16"):
        load_weights(folder)
    folder = with_entropy(tmp_path / "b", lambda t: {**t, "gain.log_gain": t["gain.log_gain"][:3]})
    with pytest.raises(ModelMismatchError, match=r"'gain.log_gain' is F32 \[3, 20\].*needs F16/F32 \[7, 20\]"):
        load_weights(folder)
    folder = with_entropy(tmp_path / "c", lambda t: {**t, "extra": np.zeros(1, np.float32)})
    with pytest.raises(ModelMismatchError, match=r"unexpected \['extra'\]"):
        load_weights(folder)


def test_damaged_entropy_tables_are_a_model_mismatch_not_a_value_error(tmp_path):
    from lcf.codec import Codec

    fmt = "tables.family.format"
    folder = with_entropy(tmp_path / "w", lambda t: {**t, fmt: t[fmt] + 1})
    with pytest.raises(ModelMismatchError, match=r"entropy\.safetensors: entropy tables: 'tables\.family\.format'"):
        Codec(folder)


# -- safetensors headers ----------------------------------------------------------------------------------------


def _raw_file(path: Path, header: bytes, data: bytes = b"", length: int | None = None) -> None:
    path.write_bytes((len(header) if length is None else length).to_bytes(8, "little") + header + data)


@pytest.mark.parametrize("length", [2**64 - 1, 2**40, (1 << 20) + 1])  # lcf.weights.MAX_HEADER_BYTES + 1
def test_a_huge_header_length_is_refused_before_reading(tmp_path, length):
    folder = copy_weights(tmp_path / "w")
    _raw_file(folder / "entropy.safetensors", b"{}", length=length)
    with pytest.raises(FormatError, match="the safetensors header length"):
        load_weights(folder)


def test_a_header_larger_than_lcf_allows_is_refused_even_when_valid(tmp_path):
    """A 2 MiB header (valid safetensors: JSON padded with spaces) is beyond what any lcf weights file needs."""
    folder = copy_weights(tmp_path / "w")
    path = folder / "entropy.safetensors"
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + n] + b" " * (2 << 20)
    _raw_file(path, header, data[8 + n :])
    with pytest.raises(FormatError, match=f"header length {len(header):,} is more than lcf allows"):
        load_weights(folder)


HEADERS = {
    "not an object": (b"[]", b"", "does not start with"),
    "bad JSON": (b"{", b"", "not valid JSON"),
    "bad dtype": (b'{"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}', b"\0\0", "dtype 'BF16'"),
    "size mismatch": (
        b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}',
        b"\0" * 4,
        "is 8 bytes, its data_offsets span 4",
    ),
    "gap": (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8, "expected 0"),
    "overlap": (
        b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
        b'"b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
        b"\0" * 4,
        "expected 4",
    ),
    "short data": (
        b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}',
        b"\0" * 8,
        "cover 4 bytes of data, the file holds 8",
    ),
    "huge shape": (
        b'{"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}}',
        b"\0" * 4,
        "data_offsets span 4",
    ),
    "negative dim": (
        b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}',
        b"\0" * 4,
        "a shape is at most",
    ),
    "extra field": (
        b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}',
        b"\0" * 4,
        "must be an object with dtype",
    ),
    "bad metadata": (b'{"__metadata__": {"a": 1}}', b"", "__metadata__"),
}


@pytest.mark.parametrize("case", HEADERS)
def test_a_damaged_safetensors_header_is_a_format_error(tmp_path, case):
    header, data, message = HEADERS[case]
    folder = copy_weights(tmp_path / "w")
    _raw_file(folder / "entropy.safetensors", header, data)
    with pytest.raises(FormatError, match=message) as info:
        load_weights(folder)
    assert "entropy.safetensors" in str(info.value)


def test_a_file_larger_than_lcf_allows_is_refused_without_reading_it(tmp_path):
    from lcf.weights import MAX_TENSOR_FILE_BYTES

    folder = copy_weights(tmp_path / "w")
    with open(folder / "decoder-teacher.safetensors", "r+b") as f:
        f.truncate(MAX_TENSOR_FILE_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(FormatError, match=r"decoder-teacher\.safetensors \(decoder 'teacher'\) is 268,435,457 bytes"):
        load_weights(folder).decoder("teacher")


# -- through the command line: the error's exit code and no traceback --------------------------------------------


def _cli(args: list[str], env: dict | None = None):
    from lcf_cli.main import app

    return CliRunner().invoke(app, args, env=env)


@pytest.mark.parametrize("case", ["no fields", "a list", "files as a string"])
def test_the_cli_reports_a_malformed_manifest_with_exit_code_3(tmp_path, case):
    from images import make_rgb_array
    from PIL import Image

    folder = copy_weights(tmp_path / "w", lambda m: _malformed(case, m))
    image = tmp_path / "in.png"
    Image.fromarray(make_rgb_array(16, 16, seed=1)).save(image)
    runs = {
        "info DIR": _cli(["info", str(folder)]),
        "info --weights": _cli(["info", "--weights", str(folder)]),
        "LCF_WEIGHTS": _cli(["info"], env={"LCF_WEIGHTS": str(folder)}),
        "encode": _cli(["encode", str(image), "-o", str(tmp_path / "out.lcf"), "--weights", str(folder)]),
        "decode": _cli(["decode", str(VECTOR_FILE), "-o", str(tmp_path / "out.png"), "--weights", str(folder)]),
    }
    for how, result in runs.items():
        assert result.exit_code == FormatError.exit_code, (how, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), (how, result.exception)
        assert "Traceback" not in result.output and "manifest.json" in result.output, (how, result.output)
    assert not (tmp_path / "out.lcf").exists() and not (tmp_path / "out.png").exists()


def test_the_cli_reports_a_link_with_exit_code_8(tmp_path):
    folder = copy_weights(tmp_path / "w")
    (folder / "entropy.safetensors").unlink()
    (folder / "entropy.safetensors").symlink_to(VECTORS / "entropy.safetensors")
    result = _cli(["info", str(folder)])
    assert result.exit_code == LcfIOError.exit_code and "symbolic link" in result.output, result.output


# -- the layout and the format stay what they were -----------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(8, 20, 12), (64, 96, 64), (6, 4, 2)])
def test_the_entropy_layout_is_the_networks(sizes):
    """``entropy_layout`` (torch-free, from the spec's table) has the shapes of lcf.nn's entropy networks."""
    from lcf.manifest import ModelConfig
    from lcf.nn import LcfModel
    from lcf.nn.integer import INTEGER_PREFIXES
    from lcf.weights import entropy_layout

    config = ModelConfig(*sizes)
    state = LcfModel(config).state_dict()
    layout = entropy_layout(config)
    for key, value in state.items():
        if key.startswith(("gain.", *INTEGER_PREFIXES)):
            assert layout[key].shape == tuple(value.shape), key
            if key.endswith(".weight") and not key.startswith("gain."):
                assert layout[key[: -len("weight")] + "shift"].shape == (1,)
    networks = {k for k in layout if not k.startswith("tables.") and not k.endswith(".shift")}
    assert networks == {k for k in state if k.startswith(("gain.", *INTEGER_PREFIXES))}


@pytest.mark.parametrize("kind", ["teacher", "cfg1", "cfg2", "cfg3", "cfg4"])
@pytest.mark.parametrize("sizes", [(16, 24), (64, 96), (6, 10)])
def test_the_decoder_layout_is_the_network(kind, sizes):
    """``decoder_layout`` (torch-free, from the spec's table) has the keys and shapes of ``build_decoder``."""
    from lcf.nn.students import build_decoder, student_arch
    from lcf.weights import decoder_layout

    arch = student_arch(kind, *sizes)
    state = build_decoder(arch).state_dict()
    layout = decoder_layout(arch)
    assert {k: v.shape for k, v in layout.items()} == {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("folder", [SHIPPED, VECTORS])
def test_the_shipped_manifests_load_unchanged_and_write_back_byte_for_byte(folder):
    from lcf.manifest import parse_manifest

    text = (folder / "manifest.json").read_text()
    manifest = parse_manifest(text.encode(), "manifest.json")
    assert manifest.dumps() == text
    weights = load_weights(folder)
    assert weights.model_id.hex() == json.loads(text)["model_id"]
    assert weights.manifest == manifest
