"""The lease command (lcf.train.lease, lease_files, lease_students, lease_export) on the CPU with a tiny model: the
files it leaves and their limits, resuming from them and from a weights folder, the z density fitted to integer
tables, the students' step, export to a weights folder that decodes. Slow ones (minutes of CPU; run them with
``python -m pytest -m slow tests/test_train_lease.py tests/test_gpu_call.py``): the same command under torchrun with
two gloo processes, and the 60-second dry run of the GPU call."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from images import make_rgb_array
from PIL import Image

from lcf.errors import TrainError
from lcf.nn import LcfModel, ModelConfig
from lcf.train import lease_files
from lcf.train.lease import LeaseConfig, lease
from lcf.train.lease_files import (
    EMA,
    FILE_LIMIT,
    MAX_FILES,
    RAW,
    STUDENTS,
    SUMMARY,
    fit_z_density,
    load_students,
    load_teacher_file,
    save_teacher,
    start_point,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ModelConfig(N=8, M=12, Mz=8)
REPO = Path(__file__).resolve().parent.parent


def _images(folder: Path, count: int, seed: int, size: int = 128) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(make_rgb_array(size, size, kind="mixed", seed=seed + i)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return [_images(root / f"shard-0{k}", 3 if k < 2 else 1, 10 * k) for k in range(3)]


def _config(shards, out: Path, **changes) -> LeaseConfig:
    base = dict(
        data=[str(s) for s in shards],
        out=str(out),
        minutes=5.0,
        N=TINY.N,
        M=TINY.M,
        Mz=TINY.Mz,
        crop=64,
        tile=64,
        batches="2",
        trial_seconds=0.05,
        warmup_steps=2,
        teacher_steps=6,
        student_steps=3,
        student_batch=2,
        val_batch=8,
        val_seconds=1e6,
        save_seconds=1e6,
        print_seconds=1e6,
        margin=1.0,
    )
    return LeaseConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def first_lease(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("lease") / "first"
    return out, lease(_config(shards, out))


def test_a_lease_leaves_usable_weights_within_the_device_limits(first_lease):
    out, summary = first_lease
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([EMA, "lease.log", RAW, STUDENTS, SUMMARY]) and len(names) <= MAX_FILES
    assert all((out / n).stat().st_size < FILE_LIMIT for n in names)
    assert json.loads((out / SUMMARY).read_text()) == json.loads(json.dumps(summary))
    assert summary["complete"] and summary["steps"] >= 6 and summary["total_steps"] == summary["steps"]
    assert summary["mode"] == "eager" and summary["mode_note"] == "no CUDA graphs on cpu"
    assert (summary["precision"], summary["batch"], summary["store_dtype"]) == ("fp32", 2, "float32")
    assert [s["folder"] for s in summary["shards"]["train"]] == ["shard-00", "shard-01"]
    assert summary["shards"]["validation"] == [{"folder": "shard-02", "files": 1, "tiles": 4, "skipped": 0}]
    assert summary["shipped"] in ("raw", "ema") and summary["processes_agree"]
    assert summary["crops_per_s"] > 0 and summary["trials"][0]["crops_per_s"] > 0
    assert {f"loss_q{lv}" for lv in range(1, 8)} & set(summary["train_last"])  # the levels drawn in the last window
    first, last = summary["validation"][0], summary["validation"][-1]
    assert first["step"] == 0 and set(last["raw"]) >= {f"loss_q{lv}" for lv in range(1, 8)} | {"loss"}
    assert sorted(summary["students"]) == ["cfg2", "cfg3", "cfg4", "teacher"]
    assert all(summary["students"][n]["steps"] >= 3 for n in ("cfg2", "cfg3", "cfg4"))  # + the first steps
    assert 0 < summary["seconds"]["in_steps"] <= summary["seconds"]["total"]
    assert [h["steps"] for h in summary["history"]] == [summary["steps"]]
    log = (out / "lease.log").read_text()
    assert "validation at step 0" in log and "teacher: fp32, batch 2, eager" in log and "done in" in log

    model, description = load_teacher_file(out / (RAW if summary["shipped"] == "raw" else EMA))
    assert model.config == TINY and description["total_steps"] == summary["steps"]
    students, info = load_students(out / STUDENTS)
    assert sorted(students) == ["cfg2", "cfg3", "cfg4"] and info["teacher"] == summary["shipped"]


def test_a_lease_resumes_from_an_earlier_one_and_exports_weights_that_decode(first_lease, shards, tmp_path):
    from lcf.codec import Codec
    from lcf.train.lease_export import export_lease

    out, summary = first_lease
    again = lease(
        _config(
            shards,
            tmp_path / "second",
            init=str(out),
            N=0,
            M=0,
            Mz=0,
            students="cfg4",
            teacher_steps=4,
            student_steps=2,
        )
    )
    assert again["init"]["steps_before"] == summary["total_steps"]
    assert again["total_steps"] == summary["total_steps"] + again["steps"]
    assert len(again["history"]) == 2 and again["init"]["z_density"] == "lease"

    weights = export_lease(tmp_path / "second", tmp_path / "weights", dtype="float16")
    assert sorted(weights.decoder_names) == ["cfg4", "teacher"]
    assert weights.manifest.info["steps"] == again["total_steps"] and len(weights.manifest.info["leases"]) == 2
    assert (tmp_path / "weights" / lease_files.Z_DENSITY_FILE).is_file()
    codec = Codec(tmp_path / "weights")
    img = make_rgb_array(64, 64, kind="mixed", seed=9)
    data = codec.encode(img, 4.0)
    assert codec.decode(data, decoder="cfg4").rgb.shape == (64, 64, 3)

    third = start_point(str(tmp_path / "weights"), None)  # the z density comes back exactly as shipped
    shipped, _ = load_teacher_file(tmp_path / "second" / (RAW if again["shipped"] == "raw" else EMA))
    for a, b in zip(third.model.z_density.parameters(), shipped.z_density.parameters(), strict=True):
        assert torch.equal(a, b.half().float())
    assert third.z_density.startswith("shipped") and sorted(third.students) == ["cfg4"]
    with pytest.raises(TrainError, match="new or empty"):
        export_lease(tmp_path / "second", tmp_path / "weights")


def test_the_students_step_reads_nothing_back_to_the_host():
    from test_train_step import no_host_reads

    from lcf.train.device_data import DeviceCrops
    from lcf.train.lease_students import StudentObjective, cache_features, make_students
    from lcf.train.step import (
        DeviceMeters,
        OptGroup,
        TrainStep,
        fused_adam,
        host_checks,
    )

    torch.manual_seed(2)
    teacher = LcfModel(TINY).eval().requires_grad_(False)
    tiles = DeviceCrops(torch.randint(0, 256, (3, 64, 64, 3), dtype=torch.uint8), 64)
    pairs, how = make_students(["cfg2", "cfg4"], teacher, {}, torch.device("cpu"))
    assert all(h.startswith("a channel-sliced teacher") for h in how.values())
    meters = DeviceMeters(len(TINY.levels), torch.device("cpu"), ["psnr_cfg2", "psnr_cfg4"], ["loss_cfg2", "loss_cfg4"])
    with host_checks(teacher, False):
        features = cache_features(teacher, tiles, 2, 4)
        assert features.shape == (6, TINY.M, 4, 4)
        assert torch.allclose(features[3], teacher.g_a(tiles.view(torch.tensor([1]), torch.tensor([1])))[0], atol=1e-5)
        objective = StudentObjective(
            teacher, {n: p for n, (_, p) in pairs.items()}, features, tiles, 2, 2, 1.0, meters, "fp32"
        )
        groups = [
            OptGroup(n, list(p.parameters()), fused_adam(list(p.parameters()), torch.tensor(1e-3)))
            for n, (_, p) in pairs.items()
        ]
        step = TrainStep(objective, groups, 1.0, torch.tensor(0.0))
        step()
        with no_host_reads():
            step()
    row = meters.read()
    assert row["steps"] == 2 and np.isfinite(row["loss_cfg2"]) and np.isfinite(row["loss_cfg4"])


@pytest.mark.parametrize("ema_better", [True, False])
def test_the_better_of_raw_and_ema_ships_and_a_rising_validation_loss_raises_the_alarm(
    ema_better, shards, tmp_path, monkeypatch
):
    """Validation (faked here: raw's loss rises or falls from check to check, the EMA's is 0.5 below or above it)
    decides which teacher ships; three rising checks in a row raise the overfitting alarm. The validation runs at
    every flush once --val-seconds have passed (default 60: every minute), per level."""
    from lcf.train import lease as lease_module

    assert LeaseConfig(data=["a", "b"], out="o", minutes=1).val_seconds == 60.0
    calls = []

    def fake_validate(model, val, batch):
        calls.append(model)
        k = (len(calls) - 1) // 2  # raw first, then the EMA, at each check
        raw = 1.0 + 0.1 * k if ema_better else 2.0 - 0.1 * k
        loss = raw if len(calls) % 2 else raw + (-0.5 if ema_better else 0.5)
        return {"loss": loss, **{f"loss_q{lv}": loss for lv in range(1, 8)}}

    monkeypatch.setattr(lease_module, "validate_teacher", fake_validate)
    out = tmp_path / "o"
    summary = lease(_config(shards, out, val_seconds=1e-9, flush_seconds=1e-9, students=""))
    checks = summary["validation"]
    assert len(checks) >= 4 and [c["step"] for c in checks][:2] == [0, 1]
    assert summary["shipped"] == ("ema" if ema_better else "raw")
    assert summary.get("overfitting_alarm", False) == ema_better
    assert ("OVERFITTING ALARM" in (out / "lease.log").read_text()) == ema_better
    raw, _ = load_teacher_file(out / RAW)
    ema, _ = load_teacher_file(out / EMA)
    assert any(not torch.equal(a, b) for a, b in zip(raw.parameters(), ema.parameters(), strict=True))
    start = start_point(str(out), None)  # a next lease starts from the shipped one
    shipped = ema if ema_better else raw
    assert all(torch.equal(a, b) for a, b in zip(start.model.parameters(), shipped.parameters(), strict=True))


# -- files --------------------------------------------------------------------------------------------------------


def test_weights_files_round_trip_and_refuse_what_is_not_theirs(tmp_path, monkeypatch):
    torch.manual_seed(3)
    model = LcfModel(TINY)
    save_teacher(tmp_path / "a.safetensors", model, "float32", which="raw", steps=5)
    back, description = load_teacher_file(tmp_path / "a.safetensors")
    assert description["steps"] == 5 and description["storage_dtype"] == "float32"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), back.state_dict().values(), strict=True))
    save_teacher(tmp_path / "h.safetensors", model, "float16")
    half, _ = load_teacher_file(tmp_path / "h.safetensors")
    assert all(
        torch.equal(a.half().float(), b)
        for a, b in zip(model.state_dict().values(), half.state_dict().values(), strict=True)
    )

    monkeypatch.setattr(lease_files, "FILE_LIMIT", 10_000)
    with pytest.raises(TrainError, match="float16"):
        save_teacher(tmp_path / "big.safetensors", model, "float32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "h.safetensors"]

    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(TrainError, match="not a lease weights file"):
        load_teacher_file(tmp_path / "foreign.safetensors")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "a.safetensors").read_bytes()[:500])
    with pytest.raises(TrainError, match="not a readable safetensors file"):
        load_teacher_file(tmp_path / "cut.safetensors")
    with pytest.raises(TrainError, match="is missing"):
        load_teacher_file(tmp_path / "none.safetensors")


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ['LCF_PWNED'])}",))


def test_a_crafted_pickle_never_runs(tmp_path, monkeypatch):
    """What a torch.load(weights_only=False) of a crafted checkpoint would do: run the code. No lease file is read
    with pickle: the same bytes under a lease file's name are refused as data."""
    marker = tmp_path / "pwned"
    monkeypatch.setenv("LCF_PWNED", str(marker))
    crafted = pickle.dumps({"model": _Payload()})
    folder = tmp_path / "lease"
    folder.mkdir()
    for name in (RAW, EMA, STUDENTS):
        (folder / name).write_bytes(crafted)
    (folder / SUMMARY).write_text(json.dumps({"format": "lcf-lease", "shipped": "raw"}))
    with pytest.raises(TrainError, match="not a readable safetensors file"):
        start_point(str(folder), None)
    with pytest.raises(TrainError):
        load_students(folder / STUDENTS)
    assert not marker.exists()
    pickle.loads(crafted)  # the payload is live: unpickling it is what would run the code
    assert marker.exists()


def test_start_points_and_their_refusals(tmp_path, tiny_weights):
    with pytest.raises(TrainError, match="widths"):
        start_point("", None)
    fresh = start_point("", TINY)
    assert fresh.steps == 0 and fresh.z_density == "new" and fresh.model.config == TINY
    with pytest.raises(TrainError, match="neither a weights folder"):
        start_point(str(tmp_path), None)
    folder = tmp_path / "unfinished"
    folder.mkdir()
    (folder / SUMMARY).write_text(json.dumps({"format": "lcf-lease", "complete": False}))
    with pytest.raises(TrainError, match="names no shipped teacher"):
        start_point(str(folder), None)
    shipped = start_point(str(tiny_weights), None)
    assert shipped.students == {} and shipped.z_density.startswith("fitted to the folder's z tables")
    with pytest.raises(TrainError, match="pass those"):
        start_point(str(tiny_weights), TINY)


def test_the_z_density_is_fitted_to_integer_tables(tmp_path):
    from lcf.train.export import z_tables

    torch.manual_seed(4)
    model = LcfModel(TINY)
    with torch.no_grad():  # a density that is not the initial one: wider in some channels, shifted in others
        model.z_density.biases[-1].add_(torch.linspace(-1.0, 1.0, TINY.Mz).view(-1, 1, 1))
        model.z_density.matrices[0].mul_(torch.linspace(0.5, 1.5, TINY.Mz).view(-1, 1, 1))
    want = model.z_density.pmf(8)
    fresh = LcfModel(TINY).z_density
    before = (fresh.pmf(8) - want).abs().max()
    excess = fit_z_density(fresh, z_tables(model)["tables.z.pmf"])
    after = (fresh.pmf(8) - want).abs().max()
    assert excess < 1e-3 and after < 2e-3 and before > 0.02, (excess, float(before), float(after))


def test_bad_lease_options_are_refused(shards, tmp_path):
    with pytest.raises(TrainError, match="held out"):
        LeaseConfig(data=["a"], out="o", minutes=1)
    with pytest.raises(TrainError, match="start with fp32"):
        LeaseConfig(data=["a", "b"], out="o", minutes=1, precisions="bf16")
    with pytest.raises(TrainError, match="--val-seconds must be positive, got 0"):
        LeaseConfig(data=["a", "b"], out="o", minutes=1, val_seconds=0)
    with pytest.raises(TrainError, match="--margin must not be negative"):
        LeaseConfig(data=["a", "b"], out="o", minutes=1, margin=-1)
    with pytest.raises(TrainError, match="cfg9"):
        LeaseConfig(data=["a", "b"], out="o", minutes=1, students="cfg2,cfg9")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(TrainError, match="new or empty"):
        lease(_config(shards, out))
    assert (out / "mine.txt").read_text() == "keep" and len(list(out.iterdir())) == 1


def test_a_lease_refuses_to_leave_more_files_than_the_device_returns(shards, tmp_path, monkeypatch):
    from lcf.train import lease as lease_module

    monkeypatch.setattr(lease_module, "MAX_FILES", 2)  # the lease writes raw, ema and the summary at once
    with pytest.raises(TrainError, match="holds more than the device returns"):
        lease(_config(shards, tmp_path / "o"))


def test_the_command_line_runs_a_lease_and_says_what_went_wrong(shards, tmp_path, capsys):
    from lcf.train.__main__ import main

    code = main(["lease", "--data", str(shards[0]), "--out", str(tmp_path / "o"), "--minutes", "1"])
    assert code == 1 and "held out" in capsys.readouterr().err


# -- slow: torchrun, and the whole GPU call ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_same_command_trains_data_parallel_under_torchrun(shards, tmp_path):
    out = tmp_path / "ddp"
    args = [
        "--data",
        *map(str, shards),
        "--out",
        str(out),
        "--minutes",
        "5",
        "--N",
        "8",
        "--M",
        "12",
        "--Mz",
        "8",
        "--crop",
        "64",
        "--tile",
        "64",
        "--batches",
        "2",
        "--teacher-steps",
        "6",
        "--student-steps",
        "3",
        "--student-batch",
        "2",
        "--val-batch",
        "8",
        "--warmup-steps",
        "2",
        "--margin",
        "1",
        "--threads",
        "1",
    ]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "lcf.train",
            "lease",
            *args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["complete"] and summary["world_size"] == 2 and summary["processes_agree"]
    assert summary["mode_note"] == "graphs switched off" and summary["steps"] >= 6
    assert sorted(p.name for p in out.iterdir()) == sorted([EMA, "lease.log", RAW, STUDENTS, SUMMARY])
    assert "2 process(es)" in (out / "lease.log").read_text()


def test_the_lease_needs_no_entropy_coder(tiny_weights, tmp_path):
    """The lent GPU machine has torch but not constriction (a wheel would take carry space from the data): importing
    the lease and starting it from a weights folder must not import the entropy coder."""
    code = (
        "import sys; from lcf.train.lease import lease; from lcf.train.lease_files import start_point; "
        f"start_point({str(tiny_weights)!r}, None); "
        "bad = sorted(m for m in sys.modules if m == 'constriction' or m.startswith('lcf.entropy')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
