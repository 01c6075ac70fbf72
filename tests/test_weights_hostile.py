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


_PRELUDE = """\
import json, resource, sys
import lcf.codec
try:  # an address-space limit: what the interpreter has now + 2 GiB, so a regression fails instead of swapping
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), resource.RLIM_INFINITY))
except (OSError, ValueError, StopIteration):
    pass
result = {}
try:
"""
_EPILOGUE = """
except lcf.errors.LcfError as exc:
    result.update(error=type(exc).__name__, message=str(exc))
except BaseException as exc:
    result.update(error="untyped " + type(exc).__name__, message=str(exc)[:300])
result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
print(json.dumps(result))
"""


def run_isolated(code: str, timeout: float = 120) -> dict:
    """Run ``code`` in a fresh interpreter (lcf.codec imported, an address-space limit set) with a timeout; returns
    {"error": the exception's type name, "message", "peak_rss": bytes}. ``subprocess.TimeoutExpired`` if it hangs."""
    program = _PRELUDE + textwrap.indent(textwrap.dedent(code).strip(), "    ") + _EPILOGUE
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout,
                          cwd=tempfile.gettempdir())  # not the repository: the lcf that pytest imports
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- file names: plain names inside the folder --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../other/entropy.safetensors", "sub/entropy.safetensors", "..", ".",
                                  "entropy.safetensors\x00", "C:entropy.safetensors", "..\\entropy.safetensors"])
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
    folder = copy_weights(tmp_path / "w", lambda m: {**m, "decoders": {"teacher": {
        **m["decoders"]["teacher"], "file": "/etc/passwd"}}})
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
@pytest.mark.parametrize("which", ["manifest", "entropy", "decoder"])
def test_a_fifo_fails_at_once_instead_of_blocking(tmp_path, which):
    """Opening a FIFO for reading blocks until a writer comes; lcf opens without blocking and refuses it. The check
    runs in a subprocess with a timeout, so that a regression fails instead of hanging the suite."""
    folder = copy_weights(tmp_path / "w")
    target = {"manifest": "manifest.json", "entropy": "entropy.safetensors",
              "decoder": "decoder-teacher.safetensors"}[which]
    (folder / target).unlink()
    os.mkfifo(folder / target)
    try:
        result = run_isolated(f"""
            codec = lcf.codec.Codec({str(folder)!r})
            codec.decode(open({str(VECTOR_FILE)!r}, "rb").read())
        """, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"Codec blocked on a FIFO named as {target}")
    assert result["error"] == "LcfIOError", result
    assert target in result["message"] and "FIFO" in result["message"]


# -- malformed manifests -----------------------------------------------------------------------------------------


MALFORMED = {
    "no fields": ('{"format": "lcf-weights", "version": 1}', r"model_config is missing"),
    "a list": ('[1, 2, 3]', r"the top level must be a JSON object, got a list"),
    "files as a string": (None, r"files must be a JSON object, got a string"),
    "not JSON": ('{"format": ', r"is not valid JSON"),
    "NaN level": (None, r"not valid JSON: NaN is not a JSON number"),
    "infinite level": (None, r"model_config\.levels must hold positive finite numbers, got inf"),
    "a repeated key": ('{"format": "lcf-weights", "format": "lcf-weights", "version": 1}', r"appears twice"),
    "version true": ('{"format": "lcf-weights", "version": true}', r"format/version must be"),
    "deep nesting": ('{"format": "lcf-weights", "version": 1, "info": ' + "[" * 100_000 + "]" * 100_000 + "}",
                     r"not valid JSON: nested too deeply"),
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
    if case in ("NaN level", "infinite level"):
        return json.dumps(manifest).replace('"levels": [0.0016', '"levels": [' + case.split()[0].replace(
            "infinite", "1e400"))
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


@pytest.mark.parametrize("n", [4096, 64, 10])
def test_a_wrong_n_fails_cleanly_in_little_memory(tmp_path, n):
    """In bounds but not the files' N: the entropy model's h_s shapes, read from its header, refuse it before
    anything is built. Measured in a subprocess: the peak RSS (lcf.codec and torch included) stays under 1 GiB."""
    folder = copy_weights(tmp_path / "w", lambda m: {**m, "model_config": {**m["model_config"], "N": n}})
    result = run_isolated(f"lcf.codec.Codec({str(folder)!r})")
    want = "FormatError" if n > 256 else "ModelMismatchError"
    assert result["error"] == want, result
    if want == "ModelMismatchError":
        assert "entropy.safetensors: tensor 'h_s.0.weight' is I16 [8, 12, 3, 3]" in result["message"]
        assert f"model_config (N={n}, M=20, Mz=12" in result["message"]
    assert result["peak_rss"] < ONE_GIB, result


@pytest.mark.parametrize("n", [8192, 256])
def test_a_decoder_arch_that_does_not_fit_its_file_fails_before_it_is_built(tmp_path, n):
    """A decoder arch with ``N: 8192`` reached 2.7 GB; within the bound, its file's header refuses it (checked
    against the arch's layout) before the g_s is built."""
    def edit(m):
        teacher = m["decoders"]["teacher"]
        return {**m, "decoders": {"teacher": {**teacher, "arch": {**teacher["arch"], "N": n}}}}
    folder = copy_weights(tmp_path / "w", edit)
    result = run_isolated(f"""
        codec = lcf.codec.Codec({str(folder)!r})
        codec.decode(open({str(VECTOR_FILE)!r}, "rb").read())
    """)
    if n > 256:
        assert result["error"] == "FormatError", result
        assert "decoders.teacher.arch.N must be an even integer from 2 to 256, got 8192" in result["message"]
    else:
        assert result["error"] == "ModelMismatchError", result
        assert "decoder-teacher.safetensors: tensor" in result["message"]
        assert "decoders.teacher.arch (N=256" in result["message"]
    assert result["peak_rss"] < ONE_GIB, result


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
    header = data[8:8 + n] + b" " * (2 << 20)
    _raw_file(path, header, data[8 + n:])
    with pytest.raises(FormatError, match=f"header length {len(header):,} is more than lcf allows"):
        load_weights(folder)


HEADERS = {
    "not an object": (b"[]", b"", "does not start with"),
    "bad JSON": (b"{", b"", "not valid JSON"),
    "bad dtype": (b'{"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}', b"\0\0", "dtype 'BF16'"),
    "size mismatch": (b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}', b"\0" * 4,
                      "is 8 bytes, its data_offsets span 4"),
    "gap": (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8, "expected 0"),
    "overlap": (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                b'"b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4, "expected 4"),
    "short data": (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 8,
                   "cover 4 bytes of data, the file holds 8"),
    "huge shape": (b'{"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}}',
                   b"\0" * 4, "data_offsets span 4"),
    "negative dim": (b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', b"\0" * 4,
                     "a shape is at most"),
    "extra field": (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}', b"\0" * 4,
                    "must be an object with dtype"),
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


@pytest.mark.parametrize("sizes", [(8, 20, 12), (64, 96, 64), (6, 4, 2), (256, 512, 256)])
def test_the_entropy_layout_is_the_networks(sizes):
    """``entropy_layout`` (torch-free, from the spec's table) has the shapes of lcf.nn's entropy networks."""
    import torch

    from lcf.manifest import ModelConfig
    from lcf.nn import LcfModel
    from lcf.nn.integer import INTEGER_PREFIXES
    from lcf.weights import entropy_layout

    config = ModelConfig(*sizes)
    with torch.device("meta"):
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
