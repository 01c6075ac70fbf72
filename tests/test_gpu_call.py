"""tools/gpu_call.sh, the script of one call on a lent GPU machine, run here on the CPU (LCF_DEVICE=cpu): preparing
the data to carry, a lease call (slow: the 60-second dry run of the whole command with a tiny model, then a second
call on the same "warm machine" that adds a shard and continues), and the check call (decoder timings tiled and
whole, conformance tests). Slow tests run with ``python -m pytest -m slow tests/test_gpu_call.py``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from images import make_rgb_array
from PIL import Image

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "gpu_call.sh"
MIB16 = 16 * 1024 * 1024

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _images(folder: Path, count: int, seed: int, size: int = 128) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(make_rgb_array(size, size, kind="mixed", seed=seed + i)).save(folder / f"{seed + i}.png")


def _call(workdir: Path, out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    if out.exists():
        shutil.rmtree(out)  # the device empties $OUT before every command
    out.mkdir()
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OUT": str(out), "LCF_DEVICE": "cpu", "OMP_NUM_THREADS": "1", **env},
    )


def test_prepare_copies_the_shards_and_a_validation_set_and_says_what_to_carry(tmp_path):
    src, work = tmp_path / "train", tmp_path / "repo"
    for k, n in ((0, 2), (1, 2), (8, 5)):
        _images(src / f"shard-0{k}", n, 10 * k, size=64)
    work.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    (work / ".gitignore").write_text("/.data/\n")
    done = subprocess.run(
        ["bash", str(SCRIPT), "prepare", str(src), "08", "3", "00", "01"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "carry: .data/val .data/shard-00 .data/shard-01" in done.stdout and "(limit 64 MiB" in done.stdout
    assert sorted(p.name for p in (work / ".data").iterdir()) == ["shard-00", "shard-01", "val"]
    assert sorted(p.name for p in (work / ".data" / "val").iterdir()) == ["80.png", "81.png", "82.png"]
    again = subprocess.run(
        ["bash", str(SCRIPT), "prepare", str(src), "08", "2", "01"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0 and "already there: .data/shard-01" in again.stdout
    assert len(list((work / ".data" / "val").iterdir())) == 3  # kept as it was
    refused = subprocess.run(
        ["bash", str(SCRIPT), "prepare", str(src), "08", "3", "08"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "validation shard" in refused.stderr


def test_a_lease_call_without_data_or_arguments_says_what_is_missing(tmp_path):
    work, out = tmp_path / "repo", tmp_path / "out"
    work.mkdir()
    missing = _call(work, out, "lease", "1")
    assert missing.returncode == 3 and "NO DATA" in missing.stderr
    bad = _call(work, out, "nonsense")
    assert bad.returncode == 2 and "usage" in bad.stderr


@pytest.mark.slow
def test_a_60_second_lease_call_fills_its_output_within_the_limits_and_a_second_call_continues(tmp_path, tiny_weights):
    work, out = tmp_path / "repo", tmp_path / "out"
    for k in range(2):
        _images(work / ".data" / f"shard-0{k}", 3, 10 * k)
    _images(work / ".data" / "val", 2, 80)
    shutil.copytree(tiny_weights, work / "weights")
    options = [
        "--crop",
        "64",
        "--tile",
        "64",
        "--batches",
        "2,4",
        "--student-batch",
        "2",
        "--val-batch",
        "8",
        "--trial-seconds",
        "1",
        "--val-seconds",
        "15",
        "--save-seconds",
        "20",
        "--print-seconds",
        "10",
        "--margin",
        "8",
        "--threads",
        "1",
    ]
    start = time.monotonic()
    first = _call(work, out, "lease", "1.0", *options)
    wall = time.monotonic() - start
    assert first.returncode == 0, first.stderr[-3000:]
    assert wall < 65, wall  # 60 s from the start of python -m lcf.train, then the copy
    files = sorted(p.name for p in out.iterdir())
    assert files == ["ema.safetensors", "lease.log", "raw.safetensors", "students.safetensors", "summary.json"]
    assert all((out / f).stat().st_size < MIB16 for f in files)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["seconds"]["total"] <= 60 and summary["steps"] > 10
    assert summary["init"]["source"].startswith("weights folder weights") and summary["store_dtype"] == "float32"
    assert summary["init"]["z_density"].startswith("fitted to the folder's z tables")
    assert sorted(summary["students"]) == ["cfg2", "cfg3", "cfg4", "teacher"]
    assert len(summary["validation"]) >= 3 and 0 < summary["fraction_in_steps"] < 1
    last = (work / "runs" / "last-lease").read_text().strip()
    assert last.startswith("runs/lease-") and (work / last / "summary.json").is_file()

    _images(work / ".data" / "shard-02", 2, 20)  # the next call carries one more shard; the first two stay there
    again = _call(work, out, "lease", "0.5", *options)
    assert again.returncode == 0, again.stderr[-3000:]
    second = json.loads((out / "summary.json").read_text())
    assert second["init"]["source"] == f"lease folder {last} ({summary['shipped']})"
    assert [s["folder"] for s in second["shards"]["train"]] == ["shard-00", "shard-01", "shard-02"]
    assert second["init"]["steps_before"] == summary["total_steps"] and len(second["history"]) == 2


@pytest.mark.slow
def test_a_lease_call_stopped_at_its_limit_still_leaves_usable_weights_in_out(tmp_path, tiny_weights):
    """The device stops a command at its time limit and returns what is under $OUT: the lease writes there itself
    (its first weights within seconds of the start), not into a folder copied to $OUT at the end."""
    from lcf.train.lease_files import EMA, RAW, SUMMARY, load_teacher_file

    work, out = tmp_path / "repo", tmp_path / "out"
    for k in range(2):
        _images(work / ".data" / f"shard-0{k}", 2, 10 * k)
    _images(work / ".data" / "val", 1, 80)
    shutil.copytree(tiny_weights, work / "weights")
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "LCF_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    args = ["--crop", "64", "--tile", "64", "--batches", "2", "--trial-seconds", "1", "--threads", "1"]
    call = subprocess.Popen(
        ["bash", str(SCRIPT), "lease", "5", *args], cwd=work, env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / SUMMARY).exists() and call.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.0)
        assert call.poll() is None, "the call ended before it was stopped"
    finally:
        os.killpg(call.pid, signal.SIGKILL)  # the device's time limit
        call.wait()
    assert {RAW, EMA, SUMMARY} <= {p.name for p in out.iterdir()}
    model, description = load_teacher_file(out / RAW)
    assert description["which"] == "raw" and model.config.N == 16
    assert json.loads((out / SUMMARY).read_text())["complete"] is False


@pytest.mark.slow
def test_check_times_the_weights_tiled_and_whole_and_runs_the_conformance_tests(tmp_path, tiny_weights):
    work, out = tmp_path / "repo", tmp_path / "out"
    shutil.copytree(tiny_weights, work / "weights")
    missing = _call(work, out, "check")
    assert missing.returncode == 3 and "NO IMAGES" in missing.stderr
    (work / ".data" / "kodak").mkdir(parents=True)
    for i in range(1, 3):
        Image.fromarray(make_rgb_array(48, 40, kind="mixed", seed=i)).save(work / ".data" / "kodak" / f"kodim0{i}.png")
    done = _call(work, out, "check", LCF_LARGE="160x96")
    assert done.returncode == 0, done.stderr
    with tarfile.open(out / "logs.tgz") as tar:
        names = set(tar.getnames())
        assert {
            "logs/device_decode.md",
            "logs/device_decode_large_default.md",
            "logs/device_decode_large_none.md",
            "logs/tests.log",
        } <= names
        whole = tar.extractfile("logs/device_decode_large_none.md").read().decode()
        tests = tar.extractfile("logs/tests.log").read().decode()
    assert "1 images of" in whole and "(160x96)" in whole and "tiles: g_a whole, g_s whole" in whole
    assert "failed" not in tests and "error" not in tests.lower()
