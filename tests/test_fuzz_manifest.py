"""Fuzzing the weights-folder loader (issue 20): manifests, safetensors headers and whole folders, mutated.

Only an LcfError may come out (FormatError from the manifest parser), an accepted manifest must write back to
itself, and arrays that come back must fit the layout they were checked against. The longer run, coverage-guided
with atheris or seeded random, is ``fuzz/fuzz_manifest.py``; this test shares its seeds, mutations and checks.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lcf.errors import FormatError

_spec = importlib.util.spec_from_file_location("fuzz_manifest", Path(__file__).parents[1] / "fuzz" / "fuzz_manifest.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_manifest"] = fuzz
_spec.loader.exec_module(fuzz)

SEEDS = fuzz.manifest_seeds()
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(fuzz.HOSTILE_VALUES),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def tensors_harness():
    harness = fuzz.Harness("tensors")
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def folder_harness():
    harness = fuzz.Harness("folder")
    yield harness
    harness.close()


def test_every_manifest_seed_parses_or_is_refused_as_intended():
    assert [fuzz.check_manifest(s) for s in SEEDS] == ["ok", "ok", "ok", "ok", "FormatError"]


@settings(max_examples=300, deadline=None)
@given(
    seed=st.sampled_from(SEEDS), where=st.integers(0, 10**6), value=json_values, how=st.sampled_from(["replace", "add"])
)
def test_a_manifest_with_any_field_replaced_is_parsed_or_refused(seed, where, value, how):
    doc = json.loads(seed)
    paths = list(fuzz._paths(doc))
    path = paths[where % len(paths)]
    if not path:
        doc = value
    else:
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if how == "add" and isinstance(parent, dict):
            parent[f"{path[-1]}x"] = value
        else:
            parent[path[-1]] = value
    fuzz.check_manifest(json.dumps(doc).encode())


@settings(max_examples=300, deadline=None)
@given(seed=st.sampled_from(SEEDS), rng_seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 4))
def test_mutated_manifest_bytes_are_parsed_or_refused(seed, rng_seed, rounds):
    rng = random.Random(rng_seed)
    data = seed
    for _ in range(rounds):
        data = fuzz.mutate("manifest", rng, data)
    fuzz.check_manifest(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 100), rng_seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 3))
def test_mutated_safetensors_files_are_read_or_refused(tensors_harness, pick, rng_seed, rounds):
    rng = random.Random(rng_seed)
    data = tensors_harness.seeds[pick % len(tensors_harness.seeds)]
    for _ in range(rounds):
        data = fuzz.mutate("tensors", rng, data)
    tensors_harness.check(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rng_seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 3))
def test_mutated_folders_load_or_are_refused(folder_harness, rng_seed, rounds):
    rng = random.Random(rng_seed)
    data = folder_harness.seeds[0]
    for _ in range(rounds):
        data = fuzz.mutate("folder", rng, data)
    folder_harness.check(data)


def test_the_tiny_folder_seed_loads(folder_harness, tensors_harness):
    assert folder_harness.check(folder_harness.seeds[0]) == "ok"
    assert tensors_harness.check(tensors_harness.seeds[0]) == "ok"


def test_what_the_fuzzer_found_stays_fixed(tensors_harness):
    """The findings of fuzz/fuzz_manifest.py (docs/SECURITY.md): an integer level beyond float (OverflowError), a
    number beyond float accepted as infinity and then written back as invalid JSON, a safetensors dtype that is a
    list (TypeError)."""
    from lcf.manifest import parse_manifest

    doc = json.loads(SEEDS[1])
    doc["model_config"]["levels"][0] = 10**400
    with pytest.raises(FormatError, match=r"levels must hold positive finite numbers"):
        parse_manifest(json.dumps(doc).encode())
    doc = json.loads(SEEDS[1])
    doc["info"]["big"] = 1.0
    with pytest.raises(FormatError, match=r"the number 1e400 is beyond the range of a float"):
        parse_manifest(json.dumps(doc).replace("1.0", "1e400").encode())
    header = b'{"a": {"dtype": ["F32"], "shape": [1], "data_offsets": [0, 4]}}'
    data = len(header).to_bytes(8, "little") + header + b"\0" * 4
    assert tensors_harness.check(data) == "FormatError"
