"""The lease's training step (lcf.train.step, device_data, schedule): it computes what lcf.train.loop.train_step
computes, reads nothing back to the host, skips non-finite steps, falls back to eager when a graph does not match;
data drawn on the device; the budget-aware lr schedule; the EMA."""

from __future__ import annotations

import contextlib
import copy
import math
import time

import numpy as np
import pytest
import torch
from images import make_rgb_array
from PIL import Image

from lcf.errors import TrainError, UsageError
from lcf.nn import LcfModel, ModelConfig
from lcf.train.device_data import DeviceCrops, load_tiles, tiles_of
from lcf.train.lease_phase import TeacherObjective, choose_config
from lcf.train.loop import TrainConfig, train_step
from lcf.train.schedule import BudgetSchedule
from lcf.train.step import (
    DeviceMeters,
    OptGroup,
    ParamEMA,
    TrainStep,
    ema_decay,
    fused_adam,
    host_checks,
    pick_runner,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONFIG = ModelConfig(N=16, M=24, Mz=16)
CPU = torch.device("cpu")


def _pattern_tiles(count: int, size: int) -> torch.Tensor:
    """Tile k, pixel (i, j) = (i, j, k): every pixel says where it came from."""
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return torch.from_numpy(np.stack([np.stack([i, j, np.full_like(i, k)], -1) for k in range(count)]).astype(np.uint8))


def _teacher_step(
    model: LcfModel, crops: DeviceCrops | None, batch: int = 2, lr: float = 1e-3, source=None
) -> tuple[TrainStep, DeviceMeters]:
    params = list(model.parameters())
    group = OptGroup("teacher", params, fused_adam(params, torch.tensor(lr)), ParamEMA(params))
    meters = DeviceMeters(len(CONFIG.levels), CPU, ["loss", "psnr", "bpp"], ["loss"])
    objective = TeacherObjective(model, crops, batch, torch.tensor(CONFIG.levels), torch.tensor(1e-4), meters, "fp32")
    fn = objective if source is None else (lambda: [objective.loss(*source())])
    return TrainStep(fn, [group], 1.0, torch.tensor(0.01)), meters


@contextlib.contextmanager
def no_host_reads():
    """Every Python-level way of reading a tensor's value on the host raises (on a GPU each would wait for it)."""
    names = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__array__")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def forbid(name):
        def method(self, *args, **kwargs):
            raise AssertionError(f"Tensor.{name} reads a tensor back to the host")

        return method

    for n in names:
        setattr(torch.Tensor, n, forbid(n))
    try:
        yield
    finally:
        for n, m in saved.items():
            setattr(torch.Tensor, n, m)


# -- the step ---------------------------------------------------------------------------------------------------


def test_the_graph_ready_step_computes_the_loss_and_gradients_of_train_step():
    torch.manual_seed(0)
    old = LcfModel(CONFIG).train()
    new = copy.deepcopy(old)
    x, level = torch.rand(2, 3, 64, 64), torch.tensor([2, 6])
    cfg = TrainConfig(data=[], run="unused", N=16, M=24, Mz=16, l1_weight=1e-4, l1_steps=10)
    optimiser = torch.optim.Adam(old.parameters(), lr=1e-3)
    step, _ = _teacher_step(new, None, lr=1e-3, source=lambda: (x, level))
    for i in range(3):  # the same noise draws from the same seed; gradients compared after clipping, as both clip
        torch.manual_seed(10 + i)
        terms = train_step(old, optimiser, x, level, torch.tensor(CONFIG.levels), cfg, i)
        torch.manual_seed(10 + i)
        with host_checks(new, False):
            step()
        # the first step starts from the same weights: bit for bit; then fused Adam (one kernel) and for-each Adam
        # round the same update differently in the last bit
        same = torch.equal if i == 0 else (lambda a, b: torch.allclose(a, b, rtol=1e-4, atol=1e-9))
        assert same(step.losses[0], terms.loss.detach()), i
        for (name, a), b in zip(old.named_parameters(), new.parameters(), strict=True):
            assert same(a.grad, b.grad), (i, name)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_the_training_step_reads_nothing_back_to_the_host():
    torch.manual_seed(1)
    model = LcfModel(CONFIG).train()
    crops = DeviceCrops(_pattern_tiles(5, 64), 64)
    step, meters = _teacher_step(model, crops)
    with host_checks(model, False):
        step()  # Adam's state is created on the first step
        with no_host_reads():
            for _ in range(2):
                step()
    assert meters.read()["steps"] == 3
    with no_host_reads(), pytest.raises(AssertionError, match="reads a tensor back"):
        step()  # the check QualityGain makes outside training would read the levels back: the patch sees it


def test_a_non_finite_step_is_skipped_and_counted():
    w = torch.nn.Parameter(torch.ones(3))
    scale = torch.tensor([1.0, 2.0, 3.0])
    group = OptGroup("w", [w], fused_adam([w], torch.tensor(0.1)), ParamEMA([w]))
    step = TrainStep(lambda: [(w * scale).sum()], [group], 10.0, torch.tensor(0.5))
    step()
    after_one = w.detach().clone()
    assert torch.allclose(after_one, torch.full((3,), 0.9)) and torch.allclose(
        group.ema.shadow[0], torch.full((3,), 0.95)
    )
    scale[1] = math.nan
    step()
    assert torch.equal(w.detach(), after_one) and int(group.optimizer.state[w]["step"]) == 1
    assert float(step.skipped) == 1.0 and float(group.found) == 1.0
    scale[1] = 2.0
    step()
    assert float(step.skipped) == 1.0 and int(group.optimizer.state[w]["step"]) == 2


def test_meters_average_per_level_and_reset():
    meters = DeviceMeters(3, CPU, ["psnr"], ["loss"])
    for level, psnr, loss in (([1, 3, 3], [20.0, 30.0, 32.0], 2.0), ([1], [22.0], 4.0)):
        meters.count(torch.tensor(level))
        meters.add_per_level("psnr", torch.tensor(level), torch.tensor(psnr))
        meters.add("loss", torch.tensor(loss))
        meters.step()
    assert meters.read() == {"psnr_q1": 21.0, "psnr_q3": 31.0, "loss": 3.0, "steps": 2.0}
    assert meters.read()["steps"] == 0.0


def test_ema_follows_the_weights_with_a_ramped_decay():
    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 90) == pytest.approx(0.91)
    assert ema_decay(0.999, 10**6) == 0.999
    p = torch.nn.Parameter(torch.zeros(4))
    ema = ParamEMA([p])
    with torch.no_grad():
        p.fill_(1.0)
    ema.update(torch.tensor(0.25))
    ema.update(torch.tensor(0.25))
    assert torch.allclose(ema.shadow[0], torch.full((4,), 1 - 0.75**2))
    target = torch.nn.Parameter(torch.zeros(4))
    ema.copy_to([target])
    assert torch.equal(target.detach(), ema.shadow[0])


# -- graphs: the comparison and the fallback ---------------------------------------------------------------------


def _runner_setup():
    torch.manual_seed(3)
    model = LcfModel(CONFIG).train()
    step, _ = _teacher_step(model, DeviceCrops(_pattern_tiles(4, 64), 64))
    with host_checks(model, False):
        step()
    return model, step


class _Perturbed:
    def __init__(self, step: TrainStep) -> None:
        self.step = step

    def __call__(self) -> None:
        self.step()
        with torch.no_grad():
            self.step.groups[0].params[0].add_(0.05)


class _StaleRandom:
    """What a graph that replays the same random numbers would do: every step draws the first batch again."""

    def __init__(self, step: TrainStep) -> None:
        self.step = step

    def __call__(self) -> None:
        torch.manual_seed(1234)
        self.step()


@pytest.mark.parametrize(
    "candidate, accepted, why",
    [
        (lambda step, warmup: step, True, "match eager"),
        (lambda step, warmup: _Perturbed(step), False, "differ from eager"),
        (lambda step, warmup: _StaleRandom(step), False, "differ from eager"),
        (
            lambda step, warmup: (_ for _ in ()).throw(
                RuntimeError("operation not permitted when stream is capturing")
            ),
            False,
            "capture failed",
        ),
    ],
)
def test_a_graph_is_used_only_when_its_steps_match_eager_ones(candidate, accepted, why):
    model, step = _runner_setup()
    before = [p.detach().clone() for p in model.parameters()]
    with host_checks(model, False):
        runner = pick_runner(step, seed=7, steps=3, make_graph=candidate)
    assert (runner.mode == "graph") == accepted and why in runner.note, runner.note
    moved = any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    assert moved == accepted  # a rejected candidate leaves the state where the comparison started
    if not accepted:
        assert runner.step is step and "eager" in runner.note


def test_on_the_cpu_training_is_eager_and_says_why():
    _, step = _runner_setup()
    assert pick_runner(step, seed=0).note == "no CUDA graphs on cpu"
    assert pick_runner(step, seed=0, graphs=False).note == "graphs switched off"


def test_the_fastest_matching_configuration_is_chosen():
    torch.manual_seed(4)
    model = LcfModel(CONFIG).train()
    crops = DeviceCrops(_pattern_tiles(4, 64), 64)
    params = list(model.parameters())
    group = OptGroup("teacher", params, fused_adam(params, torch.tensor(1e-4)))
    meters = DeviceMeters(len(CONFIG.levels), CPU, ["loss", "psnr", "bpp"], ["loss"])

    def build(precision, batch):
        objective = TeacherObjective(
            model, crops, batch, torch.tensor(CONFIG.levels), torch.tensor(0.0), meters, precision
        )
        return TrainStep(objective, [group], 1.0, torch.tensor(0.0))

    lines = []
    with host_checks(model, False):
        choice = choose_config(
            build, [("fp32", 1), ("fp32", 2)], seed=0, graphs=True, seconds=0.2, device=CPU, world=1, say=lines.append
        )
    assert [(t.precision, t.batch) for t in choice.trials] == [("fp32", 1), ("fp32", 2)] and len(lines) == 2
    best = max(choice.trials, key=lambda t: t.crops_per_s)
    assert (choice.precision, choice.batch) == (best.precision, best.batch) and choice.rate > 0


# -- data on the device -----------------------------------------------------------------------------------------


def test_crops_are_drawn_on_the_device_in_every_symmetry():
    crops = DeviceCrops(_pattern_tiles(3, 128), 64)
    torch.manual_seed(0)
    batch = crops.draw(64)
    assert batch.shape == (64, 3, 64, 64) and batch.dtype == torch.float32
    seen = set()
    for crop in (batch * 255).round().long():
        rows, cols, tile = crop
        assert tile.unique().numel() == 1 and int(tile[0, 0]) < 3
        # the crop is a square of the tile seen through one of the 8 symmetries: rows and cols are ramps
        dr_a, dr_b = int(rows[1, 0] - rows[0, 0]), int(rows[0, 1] - rows[0, 0])
        dc_a, dc_b = int(cols[1, 0] - cols[0, 0]), int(cols[0, 1] - cols[0, 0])
        assert sorted([abs(dr_a), abs(dr_b)]) == [0, 1] and sorted([abs(dc_a), abs(dc_b)]) == [0, 1]
        a, b = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
        assert torch.equal(rows, rows[0, 0] + dr_a * a + dr_b * b) and torch.equal(
            cols, cols[0, 0] + dc_a * a + dc_b * b
        )
        assert 0 <= int(rows.min()) and int(rows.max()) < 128 and int(cols.max()) < 128
        seen.add((dr_a, dr_b, dc_a, dc_b))
    assert len(seen) == 8


def test_views_are_the_named_symmetries_of_the_centred_crop():
    tiles = _pattern_tiles(2, 64)
    crops = DeviceCrops(tiles, 64)
    base = tiles[1].permute(2, 0, 1).float() / 255
    index = torch.ones(5, dtype=torch.long)
    got = crops.view(index, torch.tensor([0, 1, 2, 4, 7]))
    for out, want in zip(
        got,
        (base, base.flip(-1), base.flip(-2), base.transpose(-1, -2), base.transpose(-1, -2).flip(-2).flip(-1)),
        strict=True,
    ):
        assert torch.equal(out, want)


def test_tiles_are_decoded_once_cut_and_counted(tmp_path):
    a, empty = tmp_path / "shard-00", tmp_path / "empty"
    a.mkdir()
    empty.mkdir()
    Image.fromarray(make_rgb_array(200, 130, kind="mixed")).save(a / "big.png")  # 2 x 3 tiles of 64
    Image.fromarray(make_rgb_array(40, 40)).save(a / "small.png")  # too small
    (a / "broken.jpg").write_bytes(b"not a jpeg")
    tiles, report = load_tiles([a], 64, threads=2)
    assert tiles.shape == (6, 64, 64, 3) and tiles.dtype == np.uint8
    assert report[0].to_dict() == {"folder": "shard-00", "files": 3, "tiles": 6, "skipped": 2}
    assert np.array_equal(tiles[4], make_rgb_array(200, 130, kind="mixed")[64:128, 64:128])
    assert len(tiles_of(np.zeros((63, 500, 3), np.uint8), 64)) == 0
    with pytest.raises(TrainError, match="no image files"):
        load_tiles([empty], 64)
    with pytest.raises(TrainError, match="at least 256x256"):
        load_tiles([a], 256)
    with pytest.raises(TrainError, match="multiple of 64"):
        DeviceCrops(torch.from_numpy(tiles), 48)


def test_quality_checks_are_on_outside_training():
    model = LcfModel(CONFIG)
    with pytest.raises(UsageError, match="quality must lie"):
        model.gain.gain(torch.tensor([0.5]))
    with host_checks(model, False):
        model.gain.gain(torch.tensor([2.0]))
        assert not model.gain.check_quality
    assert model.gain.check_quality


# -- the schedule --------------------------------------------------------------------------------------------------


def test_the_schedule_warms_up_holds_then_decays_over_the_last_part_of_its_time():
    s = BudgetSchedule(peak=1e-3, warmup_steps=10, decay_fraction=0.2, start_time=0.0, end_time=100.0)
    assert s.lr(0) == pytest.approx(1e-4) and s.lr(9) == pytest.approx(1e-3) and s.lr(500) == pytest.approx(1e-3)
    s.observe(step=700, now=79.0, rate=10.0)  # before 80 s: no decay yet
    assert s.end_step is None and not s.done(700, 79.0)
    s.observe(step=800, now=80.0, rate=10.0)  # 20 s left at 10 steps/s: the line reaches 0 at step 1000
    assert (s.anchor_step, s.end_step) == (800, 1000)
    assert s.lr(800) == pytest.approx(1e-3) and s.lr(900) == pytest.approx(5e-4) and s.lr(1000) == 0.0
    before = s.lr(850)
    s.observe(step=850, now=90.0, rate=5.0)  # slower than thought: re-aimed from where it is, no jump
    assert s.lr(850) == pytest.approx(before) and s.end_step == 900
    assert s.lr(875) == pytest.approx(before / 2)
    assert s.done(900, 95.0) and s.done(860, 100.0) and not s.done(860, 95.0)
    other = BudgetSchedule(peak=1e-3, warmup_steps=10, decay_fraction=0.2, start_time=0.0, end_time=100.0)
    other.set_state(s.state())
    assert [other.lr(k) for k in (850, 870, 899)] == [s.lr(k) for k in (850, 870, 899)]
    with pytest.raises(ValueError):
        BudgetSchedule(peak=0.0, warmup_steps=1, decay_fraction=0.2, start_time=0.0, end_time=1.0)


def test_the_lr_is_read_from_its_device_tensor_at_each_step():
    """What a graph replay relies on: the schedule changes the lr by filling the tensor Adam holds."""
    w = torch.nn.Parameter(torch.ones(2))
    lr = torch.tensor(0.1)
    group = OptGroup("w", [w], fused_adam([w], lr))
    assert group.lr is lr
    step = TrainStep(lambda: [(w * w).sum()], [group], 10.0, torch.tensor(0.0))
    step()
    moved = w.detach().clone()
    assert not torch.equal(moved, torch.ones(2))
    lr.fill_(0.0)
    step()
    assert torch.equal(w.detach(), moved)
    lr.fill_(0.1)
    step()
    assert not torch.equal(w.detach(), moved)


# -- a phase: the host reads at flushes, the last good weights, validation ------------------------------------------


def test_a_phase_puts_the_last_good_weights_back_and_stops_when_they_keep_turning_non_finite():
    from lcf.train.lease_phase import MAX_RESTORES, PhasePlan, run_phase

    w = torch.nn.Parameter(torch.ones(3))
    lr = torch.tensor(0.1)
    group = OptGroup("w", [w], fused_adam([w], lr), ParamEMA([w]))
    meters = DeviceMeters(1, CPU, [], ["loss"])

    def objective():
        loss = (w * w).sum()
        meters.add("loss", loss)
        meters.step()
        return [loss]

    step = TrainStep(objective, [group], 10.0, torch.tensor(0.0))
    step()  # Adam's state
    snapshots = {}

    def runner():
        step()
        n = len(snapshots) + 1
        snapshots[n] = w.detach().clone()
        if n in (5, 9, 13):  # the weights turn non-finite (as an update can, from a finite gradient)
            with torch.no_grad():
                w[1] = math.inf

    now = time.monotonic()
    schedule = BudgetSchedule(0.1, 0, 0.2, now, now + 600, max_steps=40)
    plan = PhasePlan(runner, step, meters, schedule, [lr], step.ema_weight, 0.9, flush_every=2)
    lines, validated = [], []
    result = run_phase(
        plan,
        broadcast=lambda values: values,
        is_main=True,
        val_seconds=0.0,
        validate=validated.append,
        save_seconds=1e9,
        save=lambda s: None,
        print_seconds=1e9,
        say=lines.append,
    )
    assert (result.restores, result.stopped, result.steps) == (MAX_RESTORES, "non-finite", 14) == (3, "non-finite", 14)
    assert torch.equal(w.detach(), snapshots[12])  # the state of the last good flush, Adam's moments and EMA too
    assert all(torch.isfinite(t).all() for t in step.state_tensors())
    assert sum("the last good weights are back" in line for line in lines) == 3
    assert validated == [2, 4, 6, 8, 10, 12]  # at every flush when val_seconds have passed, not at the stop
    assert [row["step"] for row in result.history] == [2, 4, 6, 8, 10, 12, 14]


@pytest.mark.parametrize("bf16_scale, chosen", [(1.0, "bf16"), (1.5, "fp32")])
def test_a_faster_precision_is_kept_only_when_its_loss_matches_fp32(bf16_scale, chosen):
    """choose_config checks each non-fp32 candidate against fp32 on the same state and seed (loss within
    PRECISION_TOL) before its speed counts. Here "bf16" is faster (fp32 sleeps); it matches, or it is 50 % off."""
    w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 8))
    group = OptGroup("w", [w], fused_adam([w], torch.tensor(1e-3)))

    def build(precision, batch):
        def objective():
            if precision == "fp32":
                time.sleep(0.01)
            noise = torch.rand(8)
            return [((w - noise) ** 2).sum() * (bf16_scale if precision == "bf16" else 1.0) * batch]

        return TrainStep(objective, [group], 10.0, torch.tensor(0.0))

    lines = []
    choice = choose_config(
        build, [("fp32", 2), ("bf16", 2)], seed=0, graphs=False, seconds=0.2, device=CPU, world=1, say=lines.append
    )
    fp32, bf16 = choice.trials
    assert bf16.crops_per_s > fp32.crops_per_s and "against fp32: loss within" in bf16.note
    assert bf16.matches == (bf16_scale == 1.0) and choice.precision == chosen
    assert ("does not match fp32: not used" in lines[1]) == (chosen == "fp32")


def test_a_phase_reads_tensors_back_to_the_host_only_at_its_flushes():
    from lcf.train.lease_phase import PhasePlan, run_phase

    torch.manual_seed(5)
    model = LcfModel(CONFIG).train()
    step, meters = _teacher_step(model, DeviceCrops(_pattern_tiles(3, 64), 64))
    done, reads = [0], []

    def runner():
        step()
        done[0] += 1

    now = time.monotonic()
    plan = PhasePlan(
        runner,
        step,
        meters,
        BudgetSchedule(1e-3, 2, 0.2, now, now + 600, max_steps=12),
        [step.groups[0].lr],
        step.ema_weight,
        0.99,
        flush_every=4,
    )
    names = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__", "__array__")
    saved = {n: getattr(torch.Tensor, n) for n in names}

    def counted(name):
        def method(self, *args, **kwargs):
            reads.append(done[0])
            return saved[name](self, *args, **kwargs)

        return method

    with host_checks(model, False):
        step()  # Adam's state
        for n in names:
            setattr(torch.Tensor, n, counted(n))
        try:
            result = run_phase(
                plan,
                broadcast=lambda values: values,
                is_main=True,
                val_seconds=1e9,
                validate=lambda s: None,
                save_seconds=1e9,
                save=lambda s: None,
                print_seconds=1e9,
                say=lambda line: None,
            )
        finally:
            for n, m in saved.items():
                setattr(torch.Tensor, n, m)
    assert result.steps == 12 and reads and set(reads) == {4, 8, 12}, sorted(set(reads))
