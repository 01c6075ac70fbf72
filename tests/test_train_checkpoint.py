"""Training checkpoints as safetensors plus JSON (lcf.train.checkpoint): everything a run resumes from comes back,
and nothing in a checkpoint folder is ever unpickled."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch

from lcf.errors import TrainError
from lcf.train.checkpoint import (
    DESCRIPTION,
    LEGACY,
    TENSORS,
    exists,
    load_checkpoint,
    save_checkpoint,
)


def _checkpoint() -> dict:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(5, 3)).sum().backward()
    optimiser.step()
    rng = np.random.default_rng(7)
    rng.integers(10)
    return {
        "model": net.state_dict(),
        "optimiser": optimiser.state_dict(),
        "step": 12,
        "sampler": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": None,
        "data_files": ["a.png", "b.png"],
        "train_config": {"lr": 1e-4, "extra": {}, "crop": 64},
    }


def test_a_checkpoint_comes_back_whole(tmp_path):
    ckpt = _checkpoint()
    save_checkpoint(tmp_path / "run", ckpt)
    assert exists(tmp_path / "run") and sorted(p.name for p in (tmp_path / "run").iterdir()) == [DESCRIPTION, TENSORS]
    back = load_checkpoint(tmp_path / "run")
    assert back["step"] == 12 and back["cuda_rng"] is None and back["data_files"] == ["a.png", "b.png"]
    assert back["train_config"] == ckpt["train_config"] and back["sampler"] == ckpt["sampler"]
    assert torch.equal(back["torch_rng"], ckpt["torch_rng"])
    assert all(torch.equal(back["model"][k], v) for k, v in ckpt["model"].items())
    assert sorted(back["optimiser"]["state"]) == [0, 1, 2, 3]  # integer keys stay integers
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    optimiser.load_state_dict(back["optimiser"])
    assert torch.equal(optimiser.state_dict()["state"][1]["exp_avg"], ckpt["optimiser"]["state"][1]["exp_avg"])
    rng = np.random.default_rng()
    rng.bit_generator.state = back["sampler"]  # numpy's 128-bit state survives JSON


def test_what_json_cannot_hold_is_refused_when_saving(tmp_path):
    with pytest.raises(TrainError, match="cannot store"):
        save_checkpoint(tmp_path / "a", {"loss": float("nan")})
    with pytest.raises(TrainError, match="cannot store"):
        save_checkpoint(tmp_path / "b", {"thing": object()})
    assert not exists(tmp_path / "a") and not exists(tmp_path / "b")


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['LCF_PWNED']}",))


def test_a_crafted_checkpoint_runs_no_code(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("LCF_PWNED", str(marker))
    run = tmp_path / "run"
    run.mkdir()
    crafted = pickle.dumps({"model": _Payload()})
    (run / LEGACY).write_bytes(crafted)  # what an older lcf read with torch.load(weights_only=False)
    with pytest.raises(TrainError, match="does not unpickle"):
        load_checkpoint(run)
    (run / TENSORS).write_bytes(crafted)  # the same bytes where the tensors belong
    (run / DESCRIPTION).write_text(
        json.dumps(
            {
                "format": "lcf-checkpoint",
                "version": 1,
                "body": {},
                "tensors_sha256": __import__("hashlib").sha256(crafted).hexdigest(),
            }
        )
    )
    with pytest.raises(TrainError, match="damaged"):
        load_checkpoint(run)
    assert not marker.exists()
    pickle.loads(crafted)  # the payload is live: unpickling is what would have run it
    assert marker.exists()


def test_damaged_or_mismatched_checkpoints_are_refused(tmp_path):
    save_checkpoint(tmp_path / "a", _checkpoint())
    save_checkpoint(tmp_path / "b", {"step": 1, "w": torch.ones(2)})
    (tmp_path / "a" / TENSORS).write_bytes((tmp_path / "b" / TENSORS).read_bytes())
    with pytest.raises(TrainError, match="SHA-256 differs"):
        load_checkpoint(tmp_path / "a")
    doc = json.loads((tmp_path / "b" / DESCRIPTION).read_text())
    doc["body"]["w"] = {"__tensor__": "elsewhere"}
    (tmp_path / "b" / DESCRIPTION).write_text(json.dumps(doc))
    with pytest.raises(TrainError, match="does not hold"):
        load_checkpoint(tmp_path / "b")
    (tmp_path / "b" / DESCRIPTION).write_text("{not json")
    with pytest.raises(TrainError, match="not valid JSON"):
        load_checkpoint(tmp_path / "b")
    (tmp_path / "b" / DESCRIPTION).write_text(json.dumps({"format": "other"}))
    with pytest.raises(TrainError, match="not an lcf checkpoint"):
        load_checkpoint(tmp_path / "b")
    with pytest.raises(TrainError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none")


def test_no_training_tool_unpickles_a_run_folder(tmp_path, monkeypatch):
    """fit (resume), distill (teacher), export, eval and pack each meet a crafted checkpoint.pt: refused, not run."""
    from lcf.train.distill import load_teacher
    from lcf.train.evaluate import evaluate
    from lcf.train.export import export_run
    from lcf.train.loop import TrainConfig, train
    from lcf.train.shards import pack

    marker = tmp_path / "pwned"
    monkeypatch.setenv("LCF_PWNED", str(marker))
    run = tmp_path / "run"
    run.mkdir()
    (run / LEGACY).write_bytes(pickle.dumps({"model": _Payload()}))
    images = tmp_path / "images"
    images.mkdir()
    calls = [
        lambda: train(TrainConfig(data=[str(images)], run=str(run), N=16, M=24, Mz=16, minutes=0.01)),
        lambda: load_teacher(run),
        lambda: export_run(run, tmp_path / "w"),
        lambda: evaluate(run, images, [4.0]),
        lambda: pack(run, tmp_path / "parts"),
    ]
    for call in calls:
        with pytest.raises(TrainError, match="does not unpickle"):
            call()
    assert not marker.exists() and not (tmp_path / "w").exists()


def _saves(tmp_path):
    """Every file the training tools write (checkpoint, checkpoint parts, lease outputs, z density): (path, save)."""
    from lcf.nn import LcfModel, ModelConfig
    from lcf.train import lease_files, shards

    model = LcfModel(ModelConfig(N=8, M=12, Mz=8))
    run, parts = tmp_path / "run", tmp_path / "parts"
    return [
        (run / DESCRIPTION, lambda: save_checkpoint(run, _checkpoint())),
        (parts / shards.INDEX, lambda: shards.pack(run, parts)),
        (tmp_path / "again" / TENSORS, lambda: shards.unpack(parts, tmp_path / "again")),
        (
            tmp_path / "raw.safetensors",
            lambda: lease_files.save_teacher(tmp_path / "raw.safetensors", model, "float32"),
        ),
        (tmp_path / "summary.json", lambda: lease_files.write_json(tmp_path / "summary.json", {"steps": 1})),
        (tmp_path / lease_files.Z_DENSITY_FILE, lambda: lease_files.save_z_density(tmp_path, model)),
    ]


def test_training_files_are_written_through_the_one_atomic_write_of_lcf_fileio(tmp_path):
    """Each save claims its output as lcf.fileio does (``.NAME.lcf-tmp``, locked): while another writer holds that
    claim it refuses and leaves the file as it was; otherwise it leaves no temporary file behind."""
    from lcf.errors import LcfIOError
    from lcf.fileio import claim

    for path, save in _saves(tmp_path):
        save()
        before = path.read_bytes()
        held = claim(path)
        assert held is not None
        with held, pytest.raises(LcfIOError, match="another lcf process is writing it"):
            save()
        assert path.read_bytes() == before, path
        save()
    left = [p.name for p in tmp_path.rglob("*") if "tmp" in p.name]
    assert left == [], left
