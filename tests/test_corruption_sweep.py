"""benchmarks/corruption_sweep.py and fuzz/fuzz_container.py run end to end and report what they find."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def load(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    sys.path.insert(0, str((ROOT / path).parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module


def test_sweep_catches_every_damage_the_crc_covers(tiny_weights, tmp_path):
    sweep = load("benchmarks/corruption_sweep.py")
    out = tmp_path / "sweep.md"
    assert (
        sweep.main(
            [
                "--weights",
                str(tiny_weights),
                "--small",
                "16x16",
                "--large",
                "",
                "--random",
                "30",
                "--random-deep",
                "10",
                "--bombs",
                "128",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| **all** |")]
    assert [r[3] for r in rows] == list(sweep.CLASSES)
    for row in rows:
        cases, caught, crashes, problems = int(row[4].replace(",", "")), row[5], row[9], row[10]
        assert cases > 0 and crashes == "0" and problems == "0", row
        if row[3] != "bit flip (CRCs recomputed)":
            assert caught.endswith("(100.00 %)"), row
    text = out.read_text()
    assert "| 128x128 (0.0 MP) |" in text and "| unset (8 GiB) | decoded |" in text, text


def test_sweep_reports_a_decode_that_touches_the_users_folder(tiny_weights, tmp_path, monkeypatch):
    sweep = load("benchmarks/corruption_sweep.py")
    real = sweep.api.decode_file

    def leaky(src, dst, **kw):  # a decoder that leaves a partial output behind when it fails
        Path(dst).write_bytes(b"partial")
        return real(src, dst, **kw)

    monkeypatch.setattr(sweep.api, "decode_file", leaky)
    out = tmp_path / "sweep.md"
    assert (
        sweep.main(
            [
                "--weights",
                str(tiny_weights),
                "--small",
                "16x16",
                "--large",
                "",
                "--classes",
                "truncation",
                "--bombs",
                "",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "the folder holds ['holiday.png', 'in.lcf', 'out.png']" in out.read_text()


def test_fuzz_container_harness_passes_on_mutants_and_flags_a_bug(monkeypatch):
    harness = load("fuzz/fuzz_container.py")
    rng = random.Random(3)
    mutate_bytes = harness.random_bytes_mutator(rng)
    seeds = harness.seed_files()
    for seed in seeds:
        harness.check(seed)
    for _ in range(300):
        harness.check(harness.mutate(rng.choice(seeds), rng, mutate_bytes))
    import lcf.container

    def broken(data, limits=None):
        raise IndexError("a reader bug")

    monkeypatch.setattr(lcf.container, "read_container", broken)
    with pytest.raises(harness.Finding, match="IndexError escaped"):
        harness.check(seeds[0])


def test_decode_bombs_reports_each_bomb_and_budget(tiny_weights, tmp_path):
    """benchmarks/decode_bombs.py: a row per claimed size, coded channels and budget, each decoded in a fresh
    process; a budget too small for the claim is a LimitError (exit 5), never a crash."""
    bombs = load("benchmarks/decode_bombs.py")
    out = tmp_path / "bombs.md"
    args = ["--weights", str(tiny_weights), "--sides", "128", "--coded", "0,1,999", "--budgets", "default,0.000001"]
    assert bombs.main([*args, "--out", str(out)]) == 0
    rows = [line.split(" | ") for line in out.read_text().splitlines() if line.startswith("| 128x128")]
    every = str(bombs.api.get_codec(str(tiny_weights)).config.M)  # 999 channels: all the model has
    assert [(r[1], r[3], r[4]) for r in rows] == [
        (coded, budget, outcome)
        for coded in ("0", "1", every)
        for budget, outcome in (("unset (8 GiB)", "decoded"), ("0.000001", "LimitError (exit 5)"))
    ], rows
