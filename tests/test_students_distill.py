"""Distillation of student decoders (lcf.train.distill): the loss, a resumable run, export with the students."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from images import make_rgb_array
from PIL import Image

from lcf.errors import TrainError
from lcf.nn import LcfModel, ModelConfig
from lcf.nn.students import (
    build_decoder,
    feature_channels,
    student_arch,
    synthesis_features,
)
from lcf.train.checkpoint import load_checkpoint, save_checkpoint
from lcf.train.distill import (
    DistillConfig,
    FeatureAdapters,
    distill,
    distill_loss,
    kd_distance,
    teacher_digest,
)

CONFIG = ModelConfig(N=16, M=24, Mz=16)


def _teacher() -> LcfModel:
    torch.manual_seed(7)
    return LcfModel(CONFIG).eval().requires_grad_(False)


@pytest.mark.parametrize("mode", ["mse", "softmax"])
def test_distillation_loss_decreases_over_a_few_steps(mode):
    teacher = _teacher()
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    q = torch.tensor([2.0, 6.0])
    with torch.no_grad():
        y = torch.round(teacher.analyse(x, q)) * teacher.gain.inv_gain(q)
        x_t, f_t = synthesis_features(teacher.decoders["teacher"], y)
    student = build_decoder(student_arch("cfg3", 16, 24))
    adapters = FeatureAdapters(feature_channels(student, 24), feature_channels(teacher.decoders["teacher"], 24))
    assert all(isinstance(a, torch.nn.Conv2d) for a in adapters)  # widths differ: 12 -> 16
    opt = torch.optim.Adam([*student.parameters(), *adapters.parameters()], lr=3e-3)
    lam = torch.tensor([CONFIG.levels[1], CONFIG.levels[5]])
    losses = []
    for _ in range(8):
        x_s, f_s = synthesis_features(student, y)
        terms = distill_loss(x, x_s, f_s, lam, 1.0, x_t, f_t, adapters, mode=mode)
        opt.zero_grad()
        terms.loss.backward()
        opt.step()
        losses.append(terms.loss.item())
        assert float(terms.kd.min()) > 0
    assert losses[-1] < 0.8 * losses[0], losses


def test_kd_distances():
    a = torch.randn(2, 5, 3, 3)
    assert torch.allclose(kd_distance(a, a), torch.zeros(2))
    assert torch.allclose(kd_distance(a, a, "softmax"), torch.zeros(2), atol=1e-6)
    assert torch.allclose(kd_distance(a, a + 1.0, "softmax"), torch.zeros(2), atol=1e-6)  # shift invariant
    assert bool((kd_distance(a, -a, "softmax") > 0).all())


def _teacher_run(tmp_path):
    run = tmp_path / "teacher"
    run.mkdir()
    model = _teacher()
    save_checkpoint(
        run,
        {"model": model.state_dict(), "model_config": CONFIG.to_dict(), "step": 123, "train_config": {"note": "test"}},
    )
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        Image.fromarray(make_rgb_array(80, 72, kind="mixed", seed=i)).save(data / f"{i}.png")
    return run, data, model


def _moved_teacher_run(tmp_path, teacher: LcfModel, name: str, step: int):
    """A training run whose teacher moved on from ``teacher`` (h_s changed, so its digest differs)."""
    run = tmp_path / name
    run.mkdir()
    with torch.no_grad():
        teacher.h_s[0].weight.add_(0.01)
    save_checkpoint(
        run, {"model": teacher.state_dict(), "model_config": CONFIG.to_dict(), "step": step, "train_config": {}}
    )
    return run


def test_distill_run_resumes_and_exports_with_its_student(tmp_path):
    from lcf.codec import Codec
    from lcf.train.export import export_run

    teacher_run, data, teacher = _teacher_run(tmp_path)
    run = tmp_path / "cfg2"
    cfg = {
        "teacher_run": str(teacher_run),
        "student": "cfg2",
        "data": [str(data)],
        "run": str(run),
        "crop": 64,
        "batch": 2,
        "log_every": 1,
        "kd_steps": 2,
        "minutes": 5.0,
        "lr": 1e-3,
    }
    distill(DistillConfig(steps=2, **cfg))
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 2 and ckpt["teacher_digest"] == teacher_digest(teacher)
    assert ckpt["teacher_meta"]["step"] == 123
    distill(DistillConfig(steps=3, **cfg))  # resumes; λ3 = 0 from step 2: the teacher's g_s is not run
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and [r["lam3"] for r in log] == [1.0, 1.0, 0.0]
    assert "teacher_psnr_q1" not in log[-1] or log[-1]["lam3"] > 0
    with pytest.raises(TrainError, match="distils cfg2"):
        distill(DistillConfig(steps=4, **{**cfg, "student": "cfg4"}))

    weights = export_run(run, tmp_path / "w")  # a distillation run ships its pinned teacher and its student
    assert weights.decoder_names == ["teacher", "cfg2"]
    assert weights.decoder_info("cfg2").arch == student_arch("cfg2", 16, 24)
    assert weights.manifest.info["students"]["cfg2"]["distill_steps"] == 3
    codec = Codec(weights)
    img = make_rgb_array(50, 40, seed=4)
    data_bytes = codec.encode(img, 3.0)
    assert codec.decode(data_bytes, decoder="cfg2").rgb.shape == (40, 50, 3)

    # the student only ships with the teacher it was distilled from
    moved = _moved_teacher_run(tmp_path, teacher, "moved", 124)
    with pytest.raises(TrainError, match="another teacher"):
        export_run(moved, tmp_path / "w2", students=[run])
    np.testing.assert_array_equal(codec.decode(data_bytes).rgb, codec.decode(data_bytes, decoder="teacher").rgb)


def test_init_run_warm_starts_from_an_earlier_student_of_the_same_shape(tmp_path):
    teacher_run, data, teacher = _teacher_run(tmp_path)
    common = {"data": [str(data)], "crop": 64, "batch": 2, "log_every": 1, "minutes": 5.0, "lr": 1e-3}
    earlier = tmp_path / "cfg4-old"
    distill(DistillConfig(teacher_run=str(teacher_run), student="cfg4", run=str(earlier), steps=2, **common))
    old = load_checkpoint(earlier)

    # the teacher moves on; a new run for it starts from the earlier student, not from a sliced teacher
    moved = _moved_teacher_run(tmp_path, teacher, "teacher2", 200)
    new = tmp_path / "cfg4-new"
    distill(
        DistillConfig(teacher_run=str(moved), student="cfg4", run=str(new), init_run=str(earlier), steps=0, **common)
    )
    ckpt = load_checkpoint(new)
    assert ckpt["init"].startswith(f"student of {earlier}")
    assert ckpt["teacher_digest"] == teacher_digest(teacher) != old["teacher_digest"]
    for key, value in old["student_state"].items():
        assert torch.equal(ckpt["student_state"][key], value), key

    with pytest.raises(TrainError, match="holds a"):  # a cfg3 cannot start from a cfg4
        distill(
            DistillConfig(
                teacher_run=str(moved),
                student="cfg3",
                run=str(tmp_path / "x"),
                init_run=str(earlier),
                steps=0,
                **common,
            )
        )
    with pytest.raises(TrainError, match="leave --init at auto"):
        DistillConfig(
            teacher_run=str(moved),
            student="cfg4",
            run=str(tmp_path / "y"),
            init_run=str(earlier),
            init="slice",
            **common,
        )


def test_eval_reports_estimated_rate_and_psnr_of_a_checkpoint(tmp_path, capsys):
    from lcf.train.__main__ import main
    from lcf.train.evaluate import evaluate

    teacher_run, data, _ = _teacher_run(tmp_path)
    result = evaluate(teacher_run, data, [1.0, 7.0], max_images=2)
    assert result["step"] == 123 and result["images"] == 2
    (b1, p1), (b7, p7) = result["points"][1.0], result["points"][7.0]
    assert 0 < b1 < b7 and 0 < p1 < 60 and 0 < p7 < 60  # an untrained model: more bits at the higher level
    assert main(["eval", "--run", str(teacher_run), "--images", str(data), "--qualities", "2"]) == 0
    assert capsys.readouterr().out.startswith("step 123 (3 images): q2 ")


def test_bd_rate_between_two_evaluations(tmp_path, capsys):
    from lcf.train.__main__ import main
    from lcf.train.evaluate import bd_rate_between

    points = {1.0: (0.2, 27.0), 4.0: (0.4, 30.0), 7.0: (0.6, 31.0)}
    cheaper = {q: (b * 0.9, p) for q, (b, p) in points.items()}  # 10 % fewer bits at every PSNR
    assert bd_rate_between({"points": points}, {"points": cheaper}) == pytest.approx(-10.0)
    assert bd_rate_between({"points": cheaper}, {"points": points}) == pytest.approx(100 / 9)
    with pytest.raises(ValueError, match="different qualities"):
        bd_rate_between({"points": points}, {"points": {1.0: (0.2, 27.0)}})
    teacher_run, data, _ = _teacher_run(tmp_path)
    assert (
        main(
            [
                "eval",
                "--run",
                str(teacher_run),
                "--images",
                str(data),
                "--max-images",
                "1",
                "--qualities",
                "1,7",
                "--against",
                str(teacher_run),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()  # both evaluations, then the BD-rate (NaN here: an untrained model's
    assert len(out) == 3 and out[0] == out[1]  # PSNR does not rise with the rate)
    assert out[2].startswith(f"BD-rate of {teacher_run} against {teacher_run}: ")


def test_eval_of_a_distillation_run_measures_its_student_on_the_teachers_latents(tmp_path, capsys):
    from lcf.train.__main__ import main
    from lcf.train.evaluate import evaluate

    teacher_run, data, _ = _teacher_run(tmp_path)
    common = {"teacher_run": str(teacher_run), "data": [str(data)], "crop": 64, "batch": 2, "steps": 0}
    same = tmp_path / "cfg1"  # a student of the teacher's shape starting from its weights: the same PSNR
    distill(DistillConfig(student="cfg1", run=str(same), **common))
    result = evaluate(same, data, [1.0, 7.0], max_images=2)
    for q in (1.0, 7.0):
        assert result["students"]["cfg1"][q] == pytest.approx(result["points"][q][1], abs=1e-4)
    small = tmp_path / "cfg4"  # a sliced, untrained cfg4: worse than the teacher
    distill(DistillConfig(student="cfg4", run=str(small), **common))
    result = evaluate(small, data, [4.0], max_images=2)
    assert result["students"]["cfg4"][4.0] < result["points"][4.0][1]
    assert main(["eval", "--run", str(small), "--images", str(data), "--qualities", "4"]) == 0
    assert "\n  student cfg4: q4 " in capsys.readouterr().out
