"""lcf batch on Dask (--scheduler, --cluster; lcf.batch_dask): the same outputs, summary and --json as the local run,
resume, early failures (weights of another model, a worker that cannot read SRC or write DST), a worker killed
mid-file, and Dask never imported without those options. The Dask tests run on one LocalCluster of 2 processes (the
module's fixture) and skip when Dask is not installed (pip install "lcf[dask]")."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from images import make_rgb, to_bytes
from typer.testing import CliRunner

from lcf import api
from lcf.batch import is_temp_name
from lcf.batchplan import settings_for
from lcf.errors import LcfIOError, ModelMismatchError
from lcf_cli.main import app

HAS_DASK = importlib.util.find_spec("distributed") is not None
needs_dask = pytest.mark.skipif(not HAS_DASK, reason='needs Dask: pip install "lcf[dask]"')
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

runner = CliRunner()
BAD = {"bad/notes.png": b"these are notes, not a PNG\n"}


def lcf_cli(*args: str | Path):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def build_tree(root: Path, count: int, size: tuple[int, int] = (24, 20), bad: bool = True) -> Path:
    for k in range(count):
        path = root / ("ab"[k % 2]) / f"{k:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(to_bytes(make_rgb(*size, "mixed", seed=k), "PNG"))
    for name, data in BAD.items() if bad else ():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (relative path -> bytes), hidden and temporary ones included."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def records(output: str, root: Path) -> tuple[dict, list[dict]]:
    """The --json summary without timings, and the file records without timings and with DST paths relative."""
    data = json.loads(output)
    summary = {k: v for k, v in data["summary"].items() if k != "seconds"}
    files = [
        {**{k: v for k, v in f.items() if k != "seconds"}, "dst": Path(f["dst"]).relative_to(root).as_posix()}
        for f in data["files"]
    ]
    return summary, files


@pytest.fixture(scope="module")
def cluster():
    """The LocalCluster of `--cluster local:2`: 2 worker processes of one thread each."""
    if not HAS_DASK:
        pytest.skip('needs Dask: pip install "lcf[dask]"')
    from distributed import Client

    from lcf.batch_dask import local_cluster

    environ = dict(os.environ)
    with local_cluster(2) as local, Client(local, set_as_default=False) as client:
        os.environ.clear()  # Dask's nannies set their variables in this process too
        os.environ.update(environ)
        client.run(_one_thread)
        yield local, client


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


# -- without Dask ------------------------------------------------------------------------------------------------


def test_without_scheduler_or_cluster_dask_is_never_imported(tmp_path: Path, tiny_weights: Path) -> None:
    src = build_tree(tmp_path / "src", 2, bad=False)
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom lcf_cli.main import app\n"
        f"r = CliRunner().invoke(app, ['batch', {str(src)!r}, {str(tmp_path / 'out')!r}, '--weights', "
        f"{str(tiny_weights)!r}, '--workers', '2'])\n"
        "assert r.exit_code == 0, (r.exit_code, r.output, repr(r.exception))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'lcf')))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout
    assert "'lcf.batch'" in loaded and "dask" not in loaded and "distributed" not in loaded
    assert len(list((tmp_path / "out").rglob("*.lcf"))) == 2


def test_scheduler_without_dask_installed_says_how_to_install(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` meets when it is absent
    src = build_tree(tmp_path / "src", 1, bad=False)
    result = lcf_cli("batch", src, tmp_path / "out", "--weights", tiny_weights, "--scheduler", "tcp://127.0.0.1:1")
    assert result.exit_code == 2
    assert "pip install 'lcf[dask]'" in result.output
    assert not (tmp_path / "out").exists()


def test_help_teaches_the_cluster_options() -> None:
    result = runner.invoke(app, ["batch", "--help"])
    text = " ".join(result.stdout.split())
    for words in (
        "On a Dask cluster (--scheduler, or --cluster local:N on this machine)",
        "Without --scheduler/--cluster, Dask is not used",
        "lcf batch /shared/photos /shared/encoded --scheduler tcp://head:8786 --weights /shared/weights",
        "lcf batch photos/ encoded/ --cluster local:2",
    ):
        assert words in text, words


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--cluster", "remote"], "--cluster takes 'local'"),
        (["--cluster", "local:0"], "--cluster takes 'local'"),
        (["--cluster", "local:2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "--workers counts processes on this machine"),
    ],
)
def test_bad_cluster_options_are_refused_before_any_work(
    tmp_path: Path, tiny_weights: Path, options: list[str], expected: str
) -> None:
    src = build_tree(tmp_path / "src", 1, bad=False)
    result = lcf_cli("batch", src, tmp_path / "out", "--weights", tiny_weights, *options)
    assert result.exit_code == 2 and expected in result.output
    assert not (tmp_path / "out").exists()


# -- on a cluster ------------------------------------------------------------------------------------------------


@needs_dask
def test_scheduler_gives_the_local_outputs_summary_and_json_and_resumes(
    cluster, tmp_path: Path, tiny_weights: Path
) -> None:
    local_cluster, _ = cluster
    src = build_tree(tmp_path / "src", 6)
    here, there = tmp_path / "here", tmp_path / "there"
    local = lcf_cli("batch", src, here, "--weights", tiny_weights, "--json")
    remote = lcf_cli(
        "batch", src, there, "--weights", tiny_weights, "--json", "--scheduler", local_cluster.scheduler_address
    )
    assert local.exit_code == remote.exit_code == 7  # the bad file (UnsupportedImageError) in both
    assert tree(there) == tree(here) and len(tree(here)) == 6  # byte for byte; no probe or temporary file left
    assert records(remote.stdout, there) == records(local.stdout, here)
    summary, files = records(remote.stdout, there)
    assert (summary["done"], summary["failed"]) == (6, 1)
    assert [f["exit_code"] for f in files if f["status"] == "failed"] == [7]

    # The rerun resumes: everything converted is skipped, the bad file fails again.
    again = lcf_cli("batch", src, there, "--weights", tiny_weights, "--scheduler", local_cluster.scheduler_address)
    assert again.exit_code == 7
    assert "0 done, 6 skipped, 1 failed" in again.stderr and "FAIL" in again.stderr

    # Decoding on the cluster gives the local decoder's images.
    decoded_here = lcf_cli("batch", here, tmp_path / "png-here", "--to", "png", "--weights", tiny_weights)
    decoded_there = lcf_cli(
        "batch",
        there,
        tmp_path / "png-there",
        "--to",
        "png",
        "--weights",
        tiny_weights,
        "--scheduler",
        local_cluster.scheduler_address,
    )
    assert decoded_here.exit_code == decoded_there.exit_code == 0
    assert tree(tmp_path / "png-there") == tree(tmp_path / "png-here") and len(tree(tmp_path / "png-here")) == 6


@needs_dask
def test_cluster_local_starts_and_stops_its_own_workers(tmp_path: Path, tiny_weights: Path) -> None:
    src = build_tree(tmp_path / "src", 2, bad=False)
    environ = dict(os.environ)
    result = lcf_cli("batch", src, tmp_path / "out", "--weights", tiny_weights, "--cluster", "local:1", "--json")
    assert dict(os.environ) == environ  # Dask's OMP_NUM_THREADS=1 & co. do not stay in the caller's process
    assert result.exit_code == 0, result.output
    summary, files = records(result.stdout, tmp_path / "out")
    assert summary["done"] == 2 and [f["status"] for f in files] == ["ok", "ok"]
    assert sorted(tree(tmp_path / "out")) == ["a/00.lcf", "b/01.lcf"]


@needs_dask
def test_local_workers_keep_glibcs_dynamic_mmap_threshold(cluster) -> None:
    _, client = cluster
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 turns it off: lcf ran at 0.57 times the rate (docs/BENCHMARKS.md)
    assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}


@needs_dask
def test_progress_is_fed_by_the_cluster(cluster, tmp_path: Path, tiny_weights: Path) -> None:
    local_cluster, _ = cluster
    src = build_tree(tmp_path / "src", 5, bad=False)
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "00.lcf").write_bytes(b"an output of an earlier run")  # skipped, reported first
    seen: list[tuple[str, str]] = []

    class Progress:
        def start(self, todo: int) -> None:
            seen.append(("start", str(todo)))

        def __call__(self, item) -> None:
            seen.append((item.status, item.src.name))

    report = api.batch(
        src, tmp_path / "out", weights=tiny_weights, scheduler=local_cluster.scheduler_address, progress=Progress()
    )
    assert seen[:2] == [("skipped", "00.png"), ("start", "4")]
    assert sorted(seen[2:]) == [("ok", f"{k:02d}.png") for k in range(1, 5)]
    assert len(report.done) == 4 and len(report.skipped) == 1


@needs_dask
def test_targets_on_the_cluster_give_the_local_files_and_json(cluster, tmp_path: Path, tiny_weights: Path) -> None:
    local_cluster, _ = cluster
    src = build_tree(tmp_path / "src", 3, size=(64, 48), bad=False)
    (src / "big.png").write_bytes(to_bytes(make_rgb(160, 128, "noise"), "PNG"))
    smallest = {p.name: len(api.encode_image(p, quality=1.0, weights=tiny_weights)) for p in src.rglob("*.png")}
    limit = 180  # written 0.18kB: below quality 1's file of big.png only
    assert smallest.pop("big.png") > limit >= max(smallest.values())
    options = ("--weights", tiny_weights, "--json", "--target-size", "0.18kB", "--keep-nearest")
    here, there = tmp_path / "here", tmp_path / "there"
    local = lcf_cli("batch", src, here, *options)
    remote = lcf_cli("batch", src, there, *options, "--scheduler", local_cluster.scheduler_address)
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert tree(there) == tree(here) and len(tree(here)) == 4
    assert records(remote.stdout, there) == records(local.stdout, here)
    _, files = records(remote.stdout, there)
    assert [(Path(f["src"]).name, f["target"]["met"]) for f in files] == [
        ("00.png", True),
        ("02.png", True),
        ("01.png", True),
        ("big.png", False),  # the nearest file kept
    ]
    assert all(f["bytes_out"] <= limit for f in files if f["target"]["met"])
    for f in files:
        assert (there / f["dst"]).read_bytes() == api.encode_image(f["src"], quality=f["quality"], weights=tiny_weights)


@needs_dask
def test_weights_of_another_model_on_a_worker_fail_before_any_file(
    cluster, tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import lcf.batch_dask as batch_dask

    local_cluster, _ = cluster
    src = build_tree(tmp_path / "src", 3, bad=False)
    real = batch_dask.identity_of
    # The client expects another model than the one its workers load (as when a worker's installed lcf or
    # $LCF_WEIGHTS differs): each worker compares what it loaded with what the client sent.
    monkeypatch.setattr(
        batch_dask, "identity_of", lambda s, jobs: dataclasses.replace(real(s, jobs), model_id="ab" * 32)
    )
    result = lcf_cli(
        "batch", src, tmp_path / "out", "--weights", tiny_weights, "--scheduler", local_cluster.scheduler_address
    )
    assert result.exit_code == 6, result.output
    assert "worker tcp://127.0.0.1:" in result.output and "model id abababab" in result.output
    assert tree(tmp_path / "out") == {}  # nothing converted, the probe file deleted


@needs_dask
def test_a_lost_scheduler_stops_the_batch_with_a_message_and_no_traceback(tmp_path: Path, tiny_weights: Path) -> None:
    import dask
    from distributed import LocalCluster

    src = build_tree(tmp_path / "src", 30, size=(160, 128), bad=False)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    # The scheduler and a worker thread live in this process (cheap to start); lcf batch runs in its own, and the
    # scheduler is closed once the first output appears. The short connect timeout only shortens the cluster's own
    # shutdown (its worker retries the closed scheduler).
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as local,
    ):
        command = [
            sys.executable,
            "-m",
            "lcf_cli.main",
            "batch",
            str(src),
            str(out),
            "--weights",
            str(tiny_weights),
            "--scheduler",
            local.scheduler_address,
        ]
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 300
            while not list(out.rglob("*.lcf")) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            local.sync(local.scheduler.close)
            _, stderr = proc.communicate(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 1, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr, stderr
    written = tree(out)
    assert 1 <= len(written) < 30 and not [n for n in written if is_temp_name(Path(n).name)]


def paths_for(src: Path, sample: Path, dst: Path, locked: str = "", size: int | None = None):
    from lcf.batch_dask import Paths

    return Paths(str(src), str(sample), sample.stat().st_size if size is None else size, str(dst), locked)


def test_a_worker_checks_its_weights_against_the_clients(tmp_path: Path, tiny_weights: Path) -> None:
    from lcf.batch_dask import convert_task, identity_of, probe, ready

    other = _other_weights(tmp_path / "other")
    client_side = settings_for("lcf", 4.0, None, "cpu", tiny_weights, None)
    worker_side = settings_for("lcf", 4.0, None, "cpu", other, None)
    expected = identity_of(client_side)
    assert ready(client_side, expected) is None
    problem = ready(worker_side, expected)
    assert problem is not None and isinstance(problem.exception(), ModelMismatchError)
    assert f"weights {other}" in problem.message and expected.model_id[:16] in problem.message
    src = build_tree(tmp_path / "src", 1, bad=False)
    sample = src / "a" / "00.png"
    assert probe(worker_side, expected, paths_for(src, sample, tmp_path)) == problem
    assert convert_task(worker_side, expected, {}, str(sample), str(tmp_path / "00.lcf")) == problem
    assert not (tmp_path / "00.lcf").exists()


@needs_dask
def test_files_of_a_model_not_installed_fail_on_the_client_as_in_a_local_batch(
    cluster, tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding on a cluster, the files whose model is not installed here fail before any task, each with the local
    batch's message (the model id and where to get it, what this machine searched) and exit code 6: they are never
    shipped to a worker, whose installed models may differ; a damaged one is reported as damaged, as locally. The
    files of installed models decode on the workers."""
    import lcf.batch_dask as batch_dask

    local_cluster, _ = cluster
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    image = make_rgb(24, 20, "mixed")
    (src / "p.lcf").write_bytes(api.encode_image(image, quality=4.0))  # the packaged model: installed everywhere
    missing = api.encode_image(image, quality=4.0, weights=tiny_weights)  # a model installed nowhere
    (src / "sub" / "x.lcf").write_bytes(missing)
    (src / "y.lcf").write_bytes(missing)
    (src / "z.lcf").write_bytes(missing[:-7])  # damaged: reported as damage, as a local batch reports it
    model = api.inspect_file(src / "y.lcf").header.model_id.hex()
    monkeypatch.delenv("LCF_WEIGHTS", raising=False)
    (tmp_path / "more-models").mkdir()
    monkeypatch.setenv("LCF_WEIGHTS_PATH", str(tmp_path / "more-models"))  # searched here, not on the workers
    shipped: list[str] = []
    real_run = batch_dask.DaskExecutor.run

    def run(self, settings, jobs, done) -> None:  # noqa: ANN001
        shipped.extend(job.src.name for job in jobs)
        real_run(self, settings, jobs, done)

    monkeypatch.setattr(batch_dask.DaskExecutor, "run", run)
    here, there = tmp_path / "here", tmp_path / "there"
    local = lcf_cli("batch", src, here, "--to", "png", "--json")
    remote = lcf_cli("batch", src, there, "--to", "png", "--json", "--scheduler", local_cluster.scheduler_address)
    assert local.exit_code == remote.exit_code == 6, remote.output
    assert shipped == ["p.lcf"]
    assert records(remote.stdout, there) == records(local.stdout, here)
    assert tree(there) == tree(here) and list(tree(here)) == ["p.png"]
    summary, files = records(remote.stdout, there)
    assert (summary["done"], summary["failed"]) == (1, 3)
    *unknown, damaged = (f for f in files if f["status"] == "failed")
    assert damaged["exit_code"] not in (0, 6) and "not installed" not in damaged["error"], damaged
    for f in unknown:
        assert f["exit_code"] == 6 and f"encoded with model {model}, which is not installed" in f["error"]
        assert "lcf does not know this model" in f["error"] and str(tmp_path / "more-models") in f["error"]


def test_a_decode_batch_worker_accepts_the_installed_models_its_files_need(
    tmp_path: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoding, a worker is checked against the models the files need (found by the model ids in their headers),
    not the packaged one: a worker with the files' model (here on LCF_WEIGHTS_PATH, with a decoder the packaged
    model lacks) is ready; one without it stops the batch, naming the model."""
    import lcf.batch_dask as batch_dask
    from lcf.batchplan import make_plan

    legacy = _with_legacy_decoder(tiny_weights, tmp_path / "legacy")
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.lcf").write_bytes(api.encode_image(make_rgb(24, 20, "mixed"), quality=4.0, weights=legacy))
    model = api.inspect_file(src / "x.lcf").header.model_id.hex()
    monkeypatch.delenv("LCF_WEIGHTS", raising=False)
    monkeypatch.setenv("LCF_WEIGHTS_PATH", str(legacy))
    monkeypatch.setattr(batch_dask, "_ready", {})
    settings = settings_for("png", 4.0, "legacy", "cpu", None, None)
    jobs = make_plan(src, tmp_path / "out", settings, (), (), False).jobs
    identity = batch_dask.identity_of(settings, jobs)
    assert identity.models == (model,)
    assert batch_dask.ready(settings, identity) is None
    monkeypatch.setattr(batch_dask, "_ready", {})
    monkeypatch.delenv("LCF_WEIGHTS_PATH")  # a worker without that model
    problem = batch_dask.ready(settings, identity)
    assert problem is not None and isinstance(problem.exception(), ModelMismatchError)
    assert f"cannot decode the files of model {model}" in problem.message and "not installed" in problem.message


def test_the_probe_checks_src_and_dst_are_the_clients_and_leaves_nothing(tmp_path: Path, tiny_weights: Path) -> None:
    from lcf import fileio
    from lcf.batch_dask import identity_of, probe

    settings = settings_for("lcf", 4.0, None, "cpu", tiny_weights, None)
    identity = identity_of(settings)
    src = build_tree(tmp_path / "src", 1, bad=False)
    sample, dst = src / "a" / "00.png", tmp_path / "dst"
    dst.mkdir()
    with fileio.claim(dst / "lock-probe") as held:  # what the client holds while its workers look
        locked = str(held.temp)
        assert isinstance(probe(settings, identity, paths_for(src, sample, dst, locked)), str)
        assert sorted(p.name for p in dst.iterdir()) == [held.temp.name]  # the probe's own file is gone

        def problem(paths) -> str:
            found = probe(settings, identity, paths)
            assert isinstance(found.exception(), LcfIOError) and "shared file system" in found.message
            return found.message

        assert "cannot write DST" in problem(paths_for(src, sample, tmp_path / "not-there", locked))
        assert "cannot read SRC" in problem(paths_for(tmp_path / "gone", sample, dst, locked))
        assert "sees another SRC" in problem(paths_for(src, sample, dst, locked, size=12345))
        assert "DST is another folder" in problem(paths_for(src, sample, dst, str(dst / ".nothing.lcf-tmp")))
    unlocked = dst / ".was-locked.lcf-tmp"
    unlocked.write_bytes(b"")
    assert "does not share locks" in problem(paths_for(src, sample, dst, str(unlocked)))
    assert sorted(p.name for p in dst.iterdir()) == [unlocked.name]


@needs_dask
def test_a_worker_that_cannot_write_dst_fails_before_any_file(cluster, tmp_path: Path, tiny_weights: Path) -> None:
    local_cluster, client = cluster
    src = build_tree(tmp_path / "src", 3, bad=False)
    out = tmp_path / "out"
    one = sorted(client.run(os.getpid))[0]
    client.run(_refuse_writes_under, str(out), workers=[one])  # as if DST were not shared with that machine
    try:
        result = lcf_cli("batch", src, out, "--weights", tiny_weights, "--scheduler", local_cluster.scheduler_address)
    finally:
        client.run(_allow_writes, workers=[one])
    assert result.exit_code == 8, result.output
    assert f"worker {one}" in result.output and "cannot write DST" in result.output
    assert tree(out) == {}


def _other_weights(out: Path) -> Path:
    """Weights of another (tiny, random) model: another model id."""
    import torch

    from lcf.nn import LcfModel, ModelConfig
    from lcf.train.export import export_model

    torch.manual_seed(99)
    export_model(LcfModel(ModelConfig(N=16, M=24, Mz=16)).eval(), out)
    return out


def _with_legacy_decoder(weights: Path, out: Path) -> Path:
    """``weights`` (the same model id) with a second decoder, "legacy", which the packaged model does not have."""
    import numpy as np

    from lcf.weights import load_weights, save_weights

    w = load_weights(weights)
    teacher = (w.decoder_arch("teacher"), {k: np.array(v) for k, v in w.decoder("teacher").items()})
    save_weights(
        out,
        model_config=w.manifest.model_config,
        encoder={k: np.array(v) for k, v in w.encoder().items()},
        entropy={k: np.array(v) for k, v in w.entropy.items()},
        decoders={"teacher": teacher, "legacy": teacher},
    )
    return out


def _refuse_writes_under(folder: str) -> None:
    real = getattr(os, "_lcf_test_open", os.open)

    def guarded(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.fspath(path).startswith(folder):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, flags, *args, **kwargs)

    os._lcf_test_open = real
    os.open = guarded


def _allow_writes() -> None:
    os.open = getattr(os, "_lcf_test_open", os.open)


@needs_dask
@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs /proc/locks to find the worker writing a file")
def test_a_worker_killed_mid_file_loses_nothing_and_its_file_is_written_once(
    cluster, tmp_path: Path, tiny_weights: Path
) -> None:
    from lcf.codec import Codec

    local_cluster, client = cluster
    count = 12
    src = build_tree(tmp_path / "src", count, size=(320, 256), bad=False)
    out = tmp_path / "out"
    pids = set(client.run(os.getpid).values())
    killed: dict[str, object] = {}

    def kill_a_writer() -> None:
        """SIGKILL the worker that holds the claim of a file being converted (from /proc/locks)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for temp in out.rglob(".*.lcf-tmp") if out.exists() else ():
                try:
                    inode = temp.stat().st_ino
                except OSError:
                    continue
                for line in Path("/proc/locks").read_text().splitlines():
                    fields = line.split()
                    if "FLOCK" in fields and int(fields[-3].rsplit(":", 1)[1]) == inode and int(fields[-4]) in pids:
                        os.kill(int(fields[-4]), signal.SIGKILL)
                        killed.update(pid=int(fields[-4]), output=temp.name[1 : -len(".lcf-tmp")], where=temp.parent)
                        return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_a_writer, daemon=True)
    killer.start()
    report = api.batch(src, out, weights=tiny_weights, scheduler=local_cluster.scheduler_address)
    killer.join(5)
    assert killed, "no worker was seen writing a file: nothing was tested"
    assert killed["pid"] not in set(client.run(os.getpid).values())  # it is gone (its nanny started another)

    # Every file converted once (a second publication would be "skipped: output exists"), none lost or failed.
    assert [item.status for item in report.items] == ["ok"] * count, [(i.src, i.error, i.note) for i in report.items]
    name = Path(killed["where"]) / killed["output"]
    assert [item.status for item in report.items if item.dst == name] == ["ok"]
    codec = Codec(tiny_weights)
    expected = {
        f"{'ab'[k % 2]}/{k:02d}.lcf": codec.encode(src / "ab"[k % 2] / f"{k:02d}.png", 4.0) for k in range(count)
    }
    result = tree(out)
    assert not [n for n in result if is_temp_name(Path(n).name)]  # the killed worker's temporary file is gone
    assert result == expected
