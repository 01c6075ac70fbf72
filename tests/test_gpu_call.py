"""lcf/train/gpu_call.sh, the script of one call on a lent GPU machine, run here on the CPU (LCF_DEVICE=cpu) with a
tiny model: a new run, the refusal to resume without a checkpoint, the resume from carried checkpoint parts
after the machine was lost, and the check call (decoder timings tiled and whole, conformance tests)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from images import make_rgb_array

SCRIPT = Path(__file__).resolve().parent.parent / "lcf" / "train" / "gpu_call.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _call(workdir: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    if out.exists():
        shutil.rmtree(out)  # the device empties $OUT before every command
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "LCF_DEVICE": "cpu", "LCF_CROP": "64", "LCF_BATCH": "2",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)


def test_fit_new_resume_and_carry_back_after_a_lost_machine(tmp_path, tiny_weights):
    work, out = tmp_path / "repo", tmp_path / "out"
    (work / ".data" / "shard-00").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(make_rgb_array(70, 66, kind="mixed", seed=i)).save(work / ".data" / "shard-00" / f"{i}.png")
    shutil.copytree(tiny_weights, work / "weights")

    lost = _call(work, out, "fit", "resume", "0.01", "1e-4", "fp32")
    assert lost.returncode == 3 and "NO CHECKPOINT" in lost.stderr

    new = _call(work, out, "fit", "new", "0.01", "1e-4", "fp32")
    assert new.returncode == 0, new.stderr
    assert "new run from the weights in weights" in new.stdout
    assert (out / "teacher" / "checkpoint.parts.json").exists()
    with tarfile.open(out / "logs.tgz") as tar:
        assert "logs/fit.log" in tar.getnames()

    # the machine is gone (runs/ with it); the parts of the last call come back in .ckpt/teacher
    shutil.rmtree(work / "runs")
    shutil.copytree(out / "teacher", work / ".ckpt" / "teacher")
    again = _call(work, out, "fit", "resume", "0.01", "1e-4", "fp32")
    assert again.returncode == 0, again.stderr
    assert "resumed from runs/gpu/checkpoint.pt" in again.stdout

    bad = _call(work, out, "nonsense")
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_distill_call_exports_every_student_and_times_the_decoders(tmp_path, tiny_weights):
    work, out = tmp_path / "repo", tmp_path / "out"
    for folder, n in ((".data/shard-00", 3), (".data/kodak", 1)):
        (work / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(make_rgb_array(70, 66, kind="mixed", seed=i)).save(work / folder / f"{i}.png")
    shutil.copytree(tiny_weights, work / "weights")  # a teacher only: the students start from a sliced teacher
    assert _call(work, out, "fit", "new", "0.01", "1e-4", "fp32").returncode == 0

    done = _call(work, out, "distill", "0.01", "fp32")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "weights" / "manifest.json").read_text())
    assert sorted(manifest["decoders"]) == ["cfg2", "cfg3", "cfg4", "teacher"]
    with tarfile.open(out / "logs.tgz") as tar:
        assert {"logs/cfg2.log", "logs/cfg3.log", "logs/cfg4.log", "logs/device_decode.md"} <= set(tar.getnames())
    assert "| cfg4 |" in done.stdout and "every repeat bit-exact" in done.stdout


def test_check_times_the_weights_tiled_and_whole_and_runs_the_conformance_tests(tmp_path, tiny_weights):
    work, out = tmp_path / "repo", tmp_path / "out"
    shutil.copytree(tiny_weights, work / "weights")
    missing = _call(work, out, "check")
    assert missing.returncode == 3 and "NO IMAGES" in missing.stderr
    (work / ".data" / "kodak").mkdir(parents=True)
    for i in range(1, 3):
        Image.fromarray(make_rgb_array(48, 40, kind="mixed", seed=i)).save(work / ".data" / "kodak" / f"kodim0{i}.png")
    done = subprocess.run(["bash", str(SCRIPT), "check"], cwd=work, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OUT": str(out), "LCF_DEVICE": "cpu", "LCF_LARGE": "160x96"})
    assert done.returncode == 0, done.stderr
    with tarfile.open(out / "logs.tgz") as tar:
        names = set(tar.getnames())
        assert {"logs/device_decode.md", "logs/device_decode_large_default.md", "logs/device_decode_large_none.md",
                "logs/tests.log"} <= names
        whole = tar.extractfile("logs/device_decode_large_none.md").read().decode()
        tests = tar.extractfile("logs/tests.log").read().decode()
    assert "1 images of" in whole and "(160x96)" in whole and "tiles: g_a whole, g_s whole" in whole
    assert "failed" not in tests and "error" not in tests.lower()
