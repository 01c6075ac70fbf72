"""The training loop's pieces for GPU runs (lcf.train.loop, lcf.train.shards): starting a run from shipped weights,
device-side logging, checkpoint parts, precision options, float32 likelihoods and sampling under bf16 autocast."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from images import make_rgb_array
from PIL import Image

from lcf.errors import TrainError
from lcf.nn import LcfModel, ModelConfig
from lcf.nn.deform import deform_conv2d
from lcf.train.checkpoint import load_checkpoint, save_checkpoint
from lcf.train.distill import DistillConfig, distill
from lcf.train.loop import LevelWindow, TrainConfig, model_from_weights, train
from lcf.train.shards import pack, unpack
from lcf.weights import load_weights

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(make_rgb_array(72, 70, kind="mixed", seed=i)).save(folder / f"{i}.png")
    return folder


def test_level_window_means_per_level_and_scalars(tmp_path):
    window = LevelWindow(levels=3, device=torch.device("cpu"))
    window.add_per_level("psnr", torch.tensor([1, 3, 3]), torch.tensor([20.0, 30.0, 32.0]))
    window.add_per_level("psnr", torch.tensor([1]), torch.tensor([22.0]))
    window.add("loss", torch.tensor(2.0))
    window.add("loss", torch.tensor(4.0))
    row = window.flush(tmp_path / "log.jsonl", step=7)
    assert row == {"psnr_q1": 21.0, "psnr_q3": 31.0, "loss": 3.0, "step": 7}  # no q2 sample: no q2 key
    assert json.loads((tmp_path / "log.jsonl").read_text()) == row
    window.add("loss", torch.tensor(1.0))  # flushing cleared the sums
    assert window.flush(tmp_path / "log.jsonl")["loss"] == 1.0


def test_checkpoint_parts_join_back_and_refuse_damage(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(
        run,
        {
            "model": {"w": torch.arange(5000.0)},
            "optimiser": {"state": torch.ones(3000)},
            "step": 9,
            "sampler": {"s": 1},
            "torch_rng": torch.get_rng_state(),
        },
    )
    files = pack(run, tmp_path / "parts", part_bytes=7000)
    parts = [f for f in files if f.name.startswith("checkpoint.part")]
    assert len(parts) > 3 and all(f.stat().st_size <= 7000 for f in parts)
    back = unpack(tmp_path / "parts", tmp_path / "back")
    for name in ("checkpoint.safetensors", "checkpoint.json"):
        assert (back / name).read_bytes() == (run / name).read_bytes()

    slim = pack(run, tmp_path / "slim", model_only=True)
    ckpt = load_checkpoint(unpack(tmp_path / "slim", tmp_path / "slim-back"))
    assert "optimiser" not in ckpt and "sampler" not in ckpt and ckpt["step"] == 9
    assert torch.equal(ckpt["model"]["w"], torch.arange(5000.0)) and len(slim) == 3

    parts[1].write_bytes(parts[1].read_bytes()[:-1] + b"\0")
    with pytest.raises(TrainError, match="do not join"):
        unpack(tmp_path / "parts", tmp_path / "bad")
    parts[2].unlink()
    with pytest.raises(TrainError, match="cannot read"):
        unpack(tmp_path / "parts", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_a_run_starts_from_shipped_weights_and_resumes_from_a_model_only_checkpoint(tmp_path, data, tiny_weights):
    model, step = model_from_weights(tiny_weights)
    weights = load_weights(tiny_weights)
    assert step == int(weights.manifest.info.get("steps", 0))
    run = tmp_path / "run"
    cfg = dict(data=[str(data)], run=str(run), N=16, M=24, Mz=16, crop=64, batch=2, log_every=1, minutes=5.0)
    train(TrainConfig(steps=step, init_weights=str(tiny_weights), **cfg))  # no step: the weights, as a checkpoint
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == step
    for key, value in weights.encoder().items():
        assert torch.equal(ckpt["model"][key], torch.from_numpy(np.asarray(value, dtype=np.float32))), key

    train(TrainConfig(steps=step + 2, **cfg))
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [step + 1, step + 2] and all(np.isfinite(r["loss"]) for r in log)

    pack(run, tmp_path / "parts", model_only=True)  # what a lost GPU machine leaves to carry
    unpack(tmp_path / "parts", tmp_path / "run2")
    train(TrainConfig(steps=step + 3, **{**cfg, "run": str(tmp_path / "run2")}))
    assert load_checkpoint(tmp_path / "run2")["step"] == step + 3

    with pytest.raises(TrainError, match="--init-weights"):
        train(TrainConfig(steps=1, init_weights=str(tmp_path / "nothing"), **{**cfg, "run": str(tmp_path / "r3")}))


def test_train_only_the_encoder_leaves_every_other_weight_exact(tmp_path, data):
    first = tmp_path / "first"
    cfg = dict(data=[str(data)], N=16, M=24, Mz=16, crop=64, batch=2, log_every=1, minutes=5.0)
    train(TrainConfig(steps=2, run=str(first), **cfg))
    before = load_checkpoint(first)["model"]

    enc = tmp_path / "enc"
    train(TrainConfig(steps=4, run=str(enc), init_run=str(first), train_only="g_a,h_a", lr=1e-3, **cfg))
    ckpt = load_checkpoint(enc)
    assert ckpt["step"] == 4  # continues the first run's step count
    after = ckpt["model"]
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("g_a.", "h_a.")) for k in moved), sorted(moved)[:5]
    assert any(k.startswith("h_a.") for k in moved)

    train(TrainConfig(steps=5, run=str(enc), train_only="h_a, g_a,g_a", **cfg))  # the same modules: resumes
    with pytest.raises(TrainError, match="same option"):
        train(TrainConfig(steps=6, run=str(enc), **cfg))
    with pytest.raises(TrainError, match="not among the model's modules"):
        train(TrainConfig(steps=1, run=str(tmp_path / "bad"), train_only="g_a,encoder", **cfg))
    with pytest.raises(TrainError, match="no checkpoint there"):
        train(TrainConfig(steps=1, run=str(tmp_path / "bad2"), init_run=str(tmp_path / "nothing"), **cfg))
    with pytest.raises(TrainError, match="not both"):
        TrainConfig(run="r", init_run="a", init_weights="b", **cfg)


def test_gpu_only_options_are_refused_on_the_cpu(tmp_path):
    common = dict(data=[], run=str(tmp_path))
    with pytest.raises(TrainError, match="bf16 is for CUDA"):
        TrainConfig(precision="bf16", **common)
    with pytest.raises(TrainError, match="channels-last is for CUDA"):
        TrainConfig(channels_last=True, **common)
    with pytest.raises(TrainError, match="--precision must be"):
        TrainConfig(precision="fp8", **common)
    with pytest.raises(TrainError, match="bf16 is for CUDA"):
        DistillConfig(teacher_run="t", student="cfg2", data=[], run="r", precision="bf16")


def test_fit_command_line_takes_the_gpu_flags(capsys):
    from lcf.train.__main__ import main

    assert main(["fit", "--data", "x", "--run", "y", "--channels-last"]) == 1
    assert "error: --channels-last is for CUDA" in capsys.readouterr().err


def test_student_starts_from_the_decoder_of_shipped_weights(tmp_path, data, tiny_weights):
    teacher, _ = model_from_weights(tiny_weights)
    run = tmp_path / "teacher"
    run.mkdir()
    save_checkpoint(
        run, {"model": teacher.state_dict(), "model_config": teacher.config.to_dict(), "step": 5, "train_config": {}}
    )
    common = dict(teacher_run=str(run), data=[str(data)], crop=64, batch=2, minutes=5.0, steps=0)
    # tiny weights ship the teacher only: a cfg1 student (the teacher's shape) named "teacher" starts from it
    distill(
        DistillConfig(student="cfg1", name="teacher", run=str(tmp_path / "s"), init_weights=str(tiny_weights), **common)
    )
    ckpt = load_checkpoint(tmp_path / "s")
    assert ckpt["init"].startswith("decoder 'teacher' of")
    for key, value in load_weights(tiny_weights).decoder("teacher").items():
        assert torch.equal(ckpt["student_state"][key], torch.from_numpy(np.asarray(value, dtype=np.float32))), key
    with pytest.raises(TrainError, match="init-weights"):  # the weights have no cfg2
        distill(DistillConfig(student="cfg2", run=str(tmp_path / "s2"), init_weights=str(tiny_weights), **common))
    with pytest.raises(TrainError, match="not both"):
        DistillConfig(student="cfg2", run="r", init_weights="w", init_run="x", data=[], teacher_run="t")


def test_deformable_sampling_stays_float32_under_bf16_autocast():
    """bf16 holds 8 significant bits: a position like 100.3 would snap to 100.5. The sampling must not."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 120, 120)
    offsets = torch.rand(1, 18, 120, 120) * 0.8 - 0.4
    weight = torch.randn(5, 4, 3, 3)
    reference = deform_conv2d(x, offsets, weight, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = deform_conv2d(x.bfloat16(), offsets.bfloat16(), weight, padding=1)
    # the only bf16 steps left are the inputs' rounding and the matrix product's operands
    rel = (low.float() - reference).norm() / reference.norm()
    naive_py = (torch.arange(120, dtype=torch.bfloat16) + offsets[0, 0, 0].bfloat16()).float()
    assert rel < 2e-2 and not torch.equal(naive_py, torch.arange(120.0) + offsets[0, 0, 0])


def test_likelihoods_are_float32_under_bf16_autocast():
    torch.manual_seed(0)
    model = LcfModel(ModelConfig(N=16, M=24, Mz=16)).train()
    x = torch.rand(1, 3, 64, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, torch.tensor([3.0]))
    assert out["likelihoods"]["y"].dtype == torch.float32
    assert out["likelihoods"]["z"].dtype == torch.float32
