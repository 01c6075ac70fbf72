"""A batch killed with SIGKILL midway leaves only complete outputs, its workers exit, and a rerun finishes the job
with exactly the right outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from images import make_rgb, to_bytes

from lcf import api
from lcf.batch import is_temp_name
from lcf.codec import Codec

N_FILES = 12


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_killed_batch_resumes_to_exactly_the_right_outputs(tmp_path: Path, tiny_weights: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    names = [f"{'ab'[k % 2]}/{k:02d}.png" for k in range(N_FILES)]
    for k, name in enumerate(names):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(to_bytes(make_rgb(24, 20, "mixed", seed=k), "PNG"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        sys.executable,
        "-m",
        "lcf_cli.main",
        "batch",
        str(src),
        str(out),
        "--weights",
        str(tiny_weights),
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (out.exists() and any(p.suffix == ".lcf" for p in out.rglob("*"))):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no output within 300 s"
            time.sleep(0.01)
        workers = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()

    # The workers notice that the main process is gone and exit (deleting what they were writing).
    deadline = time.monotonic() + 60
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(pid) for pid in workers), "worker processes outlived the killed batch"

    # Whatever is there is complete: each .lcf is exactly what encoding its source gives.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model is much faster on one thread of a busy machine
    codec = Codec(tiny_weights)
    done = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.lcf")}
    assert 1 <= len(done) < N_FILES, "the batch finished before it was killed: nothing was tested"
    assert all(is_temp_name(p.name) for p in out.rglob("*") if p.is_file() and p.suffix != ".lcf")
    expected = {name[:-4] + ".lcf": codec.encode(src / name, 4.0) for name in names}
    assert all(data == expected[name] for name, data in done.items())

    # The rerun skips those and makes the rest; nothing else is left in out/.
    report = api.batch(src, out, weights=tiny_weights)
    assert sorted(i.dst.relative_to(out).as_posix() for i in report.skipped) == sorted(done)
    assert len(report.done) == N_FILES - len(done) and not report.failed
    result = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert result == expected
    torch.set_num_threads(threads)
