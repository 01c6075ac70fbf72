#!/usr/bin/env python
"""Fuzzing the weights-folder loader (issue 20): ``manifest.json``, safetensors headers, whole folders.

    python fuzz/fuzz_manifest.py manifest -atheris_runs=150000        # coverage-guided (atheris), one target
    python fuzz/fuzz_manifest.py tensors -atheris_runs=60000
    python fuzz/fuzz_manifest.py folder -atheris_runs=5000
    python fuzz/fuzz_manifest.py manifest --random --cases 100000 --seed 7   # no atheris: seeded random mutation
    python fuzz/fuzz_manifest.py manifest crash-1234abcd               # replay one input (what libFuzzer saved)

Targets, each with the checks that make an input a *finding* (libFuzzer saves it as crash-*; the random mode stops
and writes it to fuzz-manifest-<target>-<sha>.bin):

* ``manifest``: the bytes are a ``manifest.json`` for :func:`lcf.manifest.parse_manifest`. Only ``FormatError`` may
  come out; a manifest it accepts must write back (``Manifest.dumps``) to text that parses to the same manifest,
  name plain files only and keep its widths within the bounds.
* ``tensors``: the bytes are written as a decoder's safetensors file and read by :func:`lcf.weights.read_tensor_file`
  with the check against a tiny decoder's layout (what ``Weights.decoder`` does). Only ``FormatError`` or
  ``ModelMismatchError`` may come out; arrays it returns must be exactly the layout's.
* ``folder``: the first two bytes (little-endian) give the length of a ``manifest.json``, the rest is the teacher's
  decoder file, both put into a copy of a tiny valid weights folder (N = M = Mz = 2); then :func:`load_weights`,
  the encoder and every decoder are loaded. Only an ``LcfError`` may come out.

Every target also runs under libFuzzer's ``-timeout`` (default here 10 s) and ``-rss_limit_mb`` (default 1024): a
hostile folder must neither hang nor take memory. Seeds: the shipped and the conformance vectors' manifests, the
tiny folder's files, and hand-made variants. The mutator mixes atheris's byte mutations with JSON-aware ones (a
random field replaced by a hostile value: huge or negative numbers, paths with '..', '/etc/passwd', NUL, deep
nesting, wrong types). The suite runs a few hundred of the same checks (tests/test_fuzz_manifest.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = {"N": 2, "M": 2, "Mz": 2}
HOSTILE_VALUES = (
    0,
    -1,
    1,
    2,
    3,
    4096,
    8192,
    2**31,
    2**63,
    2**64,
    -(2**63),
    10**400,
    1e308,
    0.5,
    -0.0,
    True,
    False,
    None,
    "",
    "..",
    ".",
    "../../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "x\x00y",
    "C:x",
    "\\\\server\\share",
    "teacher",
    "decoder-teacher.safetensors",
    "manifest.json",
    "F64",
    "BF16",
    "I16",
    [],
    {},
    [1, 2],
    {"N": 4096},
    [[[[[[]]]]]],
    "8bb582f2f55495588fe164e99761907a",
    "é" * 300,
)


class Finding(Exception):
    """An input that broke a rule of the loader (see the module docstring)."""


# -- the checks -------------------------------------------------------------------------------------------------


def check_manifest(data: bytes) -> str:
    """parse_manifest on ``data``: 'ok', or the LcfError type name; Finding for anything else."""
    from lcf.errors import FormatError
    from lcf.manifest import MAX_LATENT, MAX_WIDTH, parse_manifest, plain_file_name

    try:
        manifest = parse_manifest(data, "fuzz/manifest.json")
    except FormatError:
        return "FormatError"
    except Exception as exc:
        raise Finding(f"parse_manifest raised {type(exc).__name__}: {exc}") from exc
    try:
        again = parse_manifest(manifest.dumps().encode(), "again")
    except FormatError as exc:
        raise Finding(f"an accepted manifest writes back to text it refuses: {exc}") from exc
    if again != manifest:
        raise Finding("an accepted manifest does not write back to itself")
    for name in (manifest.encoder_file, manifest.entropy_file, *(d.file for d in manifest.decoders.values())):
        plain_file_name(name)
    c = manifest.model_config
    archs = [d.arch for d in manifest.decoders.values() if d.arch is not None]
    if max([c.N, c.Mz, *(a.N for a in archs)]) > MAX_WIDTH or max([c.M, *(a.M for a in archs)]) > MAX_LATENT:
        raise Finding(f"widths beyond the bounds accepted: {c}, {archs}")
    return "ok"


def tiny_arch():
    from lcf.manifest import DecoderArch

    return DecoderArch("teacher", TINY["N"], TINY["M"])


def check_tensors(data: bytes, path: Path) -> str:
    """``data`` as a decoder file at ``path``, read with the check against the tiny decoder's layout."""
    from lcf.errors import FormatError, ModelMismatchError
    from lcf.weights import check_layout, decoder_layout, header_of_arrays, read_tensor_file

    path.write_bytes(data)
    layout = decoder_layout(tiny_arch())
    try:
        arrays = read_tensor_file(path, "fuzzed decoder", lambda h: check_layout(h, layout, str(path), "the arch"))
    except (FormatError, ModelMismatchError) as exc:
        return type(exc).__name__
    except Exception as exc:
        raise Finding(f"read_tensor_file raised {type(exc).__name__}: {exc}") from exc
    try:
        check_layout(header_of_arrays(arrays), layout, str(path), "the arch")
    except ModelMismatchError as exc:
        raise Finding(f"arrays returned that do not fit the layout: {exc}") from exc
    return "ok"


def check_folder(data: bytes, template: Path, work: Path) -> str:
    """The folder target: ``data`` -> manifest + teacher decoder file in a copy of ``template``; load everything."""
    from lcf.errors import LcfError
    from lcf.weights import load_weights

    n = int.from_bytes(data[:2], "little")
    manifest, decoder = data[2 : 2 + n], data[2 + n :]
    folder = work / "folder"
    if not folder.exists():  # loading writes nothing: only the two fuzzed files change between inputs
        shutil.copytree(template, folder)
    (folder / "manifest.json").write_bytes(manifest)
    (folder / "decoder-teacher.safetensors").write_bytes(decoder)
    try:
        weights = load_weights(folder)
        weights.encoder()
        for name in weights.decoder_names:
            weights.decoder(name)
    except LcfError as exc:
        return type(exc).__name__
    except Exception as exc:
        raise Finding(f"loading the folder raised {type(exc).__name__}: {exc}") from exc
    return "ok"


# -- seeds and mutation -----------------------------------------------------------------------------------------


def build_tiny_folder(folder: Path) -> Path:
    """A valid weights folder of a random-initialised model with N = M = Mz = 2 (torch, once)."""
    import torch

    from lcf.nn import LcfModel, ModelConfig
    from lcf.train.export import export_model

    torch.manual_seed(0)
    export_model(LcfModel(ModelConfig(**TINY)).eval(), folder)
    return folder


def manifest_seeds() -> list[bytes]:
    seeds = [
        (ROOT / "weights" / "manifest.json").read_bytes(),
        (ROOT / "spec" / "vectors" / "weights" / "manifest.json").read_bytes(),
    ]
    doc = json.loads(seeds[1])
    seeds.append(json.dumps({**doc, "decoders": {"teacher": {"file": "decoder-teacher.safetensors"}}}).encode())
    seeds.append(
        json.dumps(
            {
                **doc,
                "decoders": {
                    **doc["decoders"],
                    "cfg2": {
                        "file": "decoder-cfg2.safetensors",
                        "arch": {"kind": "cfg2", "N": 8, "M": 20, "depthwise": True},
                    },
                },
            }
        ).encode()
    )
    seeds.append(b'{"format": "lcf-weights", "version": 1}')
    return seeds


def tensor_seeds(folder: Path) -> list[bytes]:
    import numpy as np
    from safetensors.numpy import save_file

    seeds = [(folder / "decoder-teacher.safetensors").read_bytes(), (folder / "encoder.safetensors").read_bytes()]
    for dtype in (np.float16, np.float32, np.int16, np.int32, np.int64):
        path = folder.parent / "seed.safetensors"
        save_file({"a": np.arange(6, dtype=dtype).reshape(2, 3), "b": np.zeros(0, dtype)}, str(path))
        seeds.append(path.read_bytes())
        path.unlink()
    return seeds


def folder_seeds(folder: Path) -> list[bytes]:
    manifest = (folder / "manifest.json").read_bytes()
    decoder = (folder / "decoder-teacher.safetensors").read_bytes()
    return [len(manifest).to_bytes(2, "little") + manifest + decoder]


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def mutate_json(rng: random.Random, text: bytes) -> bytes | None:
    """One JSON-aware mutation of ``text`` (None when it is not JSON): a field replaced, removed or added."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    paths = list(_paths(doc))
    path = rng.choice(paths)
    value = rng.choice(HOSTILE_VALUES)
    if not path:
        return json.dumps(value).encode()
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    op = rng.random()
    if op < 0.1 and isinstance(parent, dict):
        del parent[path[-1]]
    elif op < 0.2 and isinstance(parent, dict):
        parent[rng.choice(["extra", "arch", "file", "N", "levels", "dtype", "shape", "data_offsets"])] = value
    else:
        parent[path[-1]] = value
    return json.dumps(doc).encode()


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4))):
        i = rng.randrange(len(out) + 1)
        op = rng.randrange(6)
        if op == 0 and out:
            out[min(i, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[i:i] = rng.choice(
                (
                    b'"',
                    b"{",
                    b"}",
                    b"[",
                    b"]",
                    b",",
                    b":",
                    b"0",
                    b"-",
                    b"e9",
                    b"\\u0000",
                    rng.randbytes(rng.randrange(1, 8)),
                )
            )
        elif op == 2:
            del out[i : i + rng.choice((1, 2, 8, 64))]
        elif op == 3:  # a number somewhere made extreme
            out[i:i] = str(rng.choice((-1, 2**64, 10**30, 4096, 8192))).encode()
        elif op == 4:
            del out[i:]
        else:
            j = rng.randrange(len(out) + 1)
            out[j:j] = out[i : i + rng.randrange(1, 40)]
    return bytes(out)


def mutate_safetensors(rng: random.Random, data: bytes) -> bytes:
    """A mutation of a safetensors file: its header JSON (re-framed with its new length, or not) or its bytes."""
    if len(data) >= 8 and rng.random() < 0.7:
        n = int.from_bytes(data[:8], "little")
        header, rest = data[8 : 8 + n], data[8 + n :]
        new = mutate_json(rng, header) if rng.random() < 0.6 else mutate_bytes(rng, header)
        if new is not None:
            length = len(new) if rng.random() < 0.8 else rng.choice((0, 2**64 - 1, 2**40, n, len(new) + 1))
            return length.to_bytes(8, "little") + new + rest
    return mutate_bytes(rng, data)


def mutate(target: str, rng: random.Random, data: bytes) -> bytes:
    if target == "manifest":
        new = mutate_json(rng, data) if rng.random() < 0.6 else None
        return new if new is not None else mutate_bytes(rng, data)
    if target == "tensors":
        return mutate_safetensors(rng, data)
    n = int.from_bytes(data[:2], "little")
    manifest, decoder = data[2 : 2 + n], data[2 + n :]
    if rng.random() < 0.5:
        manifest = mutate("manifest", rng, manifest)[:65535]
    else:
        decoder = mutate_safetensors(rng, decoder)
    return len(manifest).to_bytes(2, "little") + manifest + decoder


# -- running ----------------------------------------------------------------------------------------------------


class Harness:
    """Set-up shared by the random mode, atheris and the test suite."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.work = Path(tempfile.mkdtemp(prefix="lcf-fuzz-manifest-"))
        if target == "manifest":
            self.seeds = manifest_seeds()
        else:
            self.template = build_tiny_folder(self.work / "template")
            self.seeds = tensor_seeds(self.template) if target == "tensors" else folder_seeds(self.template)

    def check(self, data: bytes) -> str:
        if self.target == "manifest":
            return check_manifest(data)
        if self.target == "tensors":
            return check_tensors(data, self.work / "fuzzed.safetensors")
        return check_folder(data, self.template, self.work)

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def run_random(target: str, cases: int, seed: int) -> tuple[Counter, float]:
    """Random mutation (no coverage feedback): ``cases`` mutants of the seeds; (outcomes, worst seconds per case).
    Writes a finding to fuzz-manifest-<target>-<sha>.bin and raises Finding."""
    harness = Harness(target)
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    worst = 0.0
    try:
        for _ in range(cases):
            data = rng.choice(harness.seeds)
            for _ in range(rng.choice((1, 1, 2, 3))):
                data = mutate(target, rng, data)
            start = time.perf_counter()
            try:
                outcomes[harness.check(data)] += 1
            except Finding:
                name = f"fuzz-manifest-{target}-{hashlib.sha256(data).hexdigest()[:12]}.bin"
                Path(name).write_bytes(data)
                print(f"finding saved to {name}", file=sys.stderr)
                raise
            worst = max(worst, time.perf_counter() - start)
    finally:
        harness.close()
    return outcomes, worst


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=True)
    parser.add_argument("target", choices=("manifest", "tensors", "folder"))
    parser.add_argument("--random", action="store_true", help="seeded random mutation instead of atheris")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args, rest = parser.parse_known_args(argv[1:])
    if args.random:
        start = time.perf_counter()
        outcomes, worst = run_random(args.target, args.cases, args.seed)
        print(
            f"{args.target}: {args.cases} cases (seed {args.seed}) in {time.perf_counter() - start:.1f} s, "
            f"worst {worst * 1e3:.1f} ms; outcomes {dict(outcomes.most_common())}; findings 0"
        )
        return
    import atheris

    with atheris.instrument_imports(include=["lcf.manifest", "lcf.weights"]):
        import lcf.manifest
        import lcf.weights  # noqa: F401
    harness = Harness(args.target)
    paths = [a for a in rest if not a.startswith("-")]
    flags = [a for a in rest if a.startswith("-")]
    if not paths or Path(paths[0]).is_dir():
        corpus = Path(paths[0]) if paths else harness.work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(harness.seeds):
            (corpus / f"seed-{i:02d}").write_bytes(data)
        paths = [str(corpus), *paths[1:]]
    defaults = {
        "-timeout=": "10",
        "-rss_limit_mb=": "1024",
        "-max_len=": {"manifest": "8192", "tensors": "65536", "folder": "65536"}[args.target],
    }
    flags += [k + v for k, v in defaults.items() if not any(a.startswith(k) for a in flags)]

    def test_one_input(data: bytes) -> None:
        harness.check(data)

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        out = atheris.Mutate(data, max_size) if rng.random() < 0.3 else mutate(args.target, rng, data)
        return out[:max_size]

    atheris.Setup([argv[0], *flags, *paths], test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
