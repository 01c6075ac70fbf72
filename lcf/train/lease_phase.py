"""The pieces of a lease's training phases: the teacher's objective, validation, the choice of precision and batch,
and the loop that runs a phase to its budget.

    choose_config: for each (precision, batch) candidate: one eager step, graph or eager (lcf.train.step.pick_runner),
                   bf16 checked against fp32 on the same state and seed (loss within 1 %), a few seconds timed
                   ─ the fastest that matches is kept (the trial steps train at a small lr: Adam's moments warm up)
    run_phase:     steps until the schedule ends or the wall-time budget is spent; every ``flush_every`` steps one
                   host read (meters, non-finite flag, weights finite?): the schedule is re-aimed, bad weights are
                   replaced by the last good ones; validation every ``val_seconds``, a save every ``save_seconds``
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lcf.nn import LcfModel
from lcf.train.device_data import DeviceCrops
from lcf.train.losses import rate_distortion_loss
from lcf.train.schedule import BudgetSchedule
from lcf.train.step import (
    DeviceMeters,
    Runner,
    StateCopy,
    TrainStep,
    all_finite,
    compare_runs,
    ema_decay,
    pick_runner,
    time_steps,
)

PRECISION_TOL = 1e-2  # bf16 against fp32: the relative difference of the loss a candidate may have
MAX_RESTORES = 3  # non-finite weights replaced by the last good ones this often, then the phase stops


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """bf16 autocast for ``precision == 'bf16'`` (without its cast cache, which a CUDA graph must not keep)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16", cache_enabled=False)


class TeacherObjective:
    """The loss of Eq. (1) on a batch drawn on the device, one quality level per sample (lcf.train.loop's
    ``train_step`` computes the same for a given batch): returns [loss] and adds to the meters."""

    def __init__(
        self,
        model: nn.Module,
        crops: DeviceCrops | None,
        batch: int,
        lambdas: Tensor,
        l1_weight: Tensor,
        meters: DeviceMeters,
        precision: str,
    ) -> None:
        self.model, self.crops, self.batch, self.lambdas = model, crops, batch, lambdas
        self.l1_weight, self.meters, self.precision = l1_weight, meters, precision

    def __call__(self) -> list[Tensor]:
        if self.crops is None:
            raise ValueError("a TeacherObjective without crops computes loss(x, level) only")
        x = self.crops.draw(self.batch)
        level = torch.randint(1, len(self.lambdas) + 1, (self.batch,), device=x.device)
        return [self.loss(x, level)]

    def loss(self, x: Tensor, level: Tensor) -> Tensor:
        with autocast(x.device, self.precision):
            out = self.model(x, level.float())
        lam = self.lambdas[level - 1]
        terms = rate_distortion_loss(x, out, lam, self.l1_weight)
        bpp = terms.bpp_y + terms.bpp_z
        self.meters.count(level)
        self.meters.add_per_level("loss", level, lam * 255.0**2 * terms.mse + bpp)
        self.meters.add_per_level("psnr", level, terms.psnr)
        self.meters.add_per_level("bpp", level, bpp)
        self.meters.add("loss", terms.loss)
        self.meters.step()
        return terms.loss


@torch.no_grad()
def validate_teacher(model: LcfModel, val: DeviceCrops, batch: int) -> dict[str, float]:
    """Per quality level, on the validation crops (centred, float32, rounded latents as in coding): the loss of
    Eq. (1) without λ2 (``loss_qL``), bpp and PSNR; ``loss`` is their mean over the levels (what training
    minimises)."""
    was = model.training
    model.eval()
    levels = len(model.config.levels)
    sums = torch.zeros(3, levels, dtype=torch.float64, device=val.device)
    index = torch.arange(val.count, device=val.device)
    for lv in range(1, levels + 1):
        lam = model.config.levels[lv - 1]
        for chunk in index.split(batch):
            x = val.view(chunk, torch.zeros_like(chunk))
            q = torch.full((chunk.numel(),), float(lv), device=x.device)
            terms = rate_distortion_loss(x, model(x, q), torch.full_like(q, lam), 0.0)
            bpp = terms.bpp_y + terms.bpp_z
            sums[:, lv - 1] += torch.stack([lam * 255.0**2 * terms.mse + bpp, bpp, terms.psnr]).sum(1).double()
    model.train(was)
    means = (sums / val.count).cpu().tolist()
    row = {}
    for i, name in enumerate(("loss", "bpp", "psnr")):
        row.update({f"{name}_q{lv}": means[i][lv - 1] for lv in range(1, levels + 1)})
    row["loss"] = sum(means[0]) / levels
    return row


@dataclass
class Trial:
    precision: str
    batch: int
    mode: str
    crops_per_s: float
    matches: bool
    note: str

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "batch": self.batch,
            "mode": self.mode,
            "crops_per_s": round(self.crops_per_s, 2),
            "matches": self.matches,
            "note": self.note,
        }


@dataclass
class Choice:
    """The configuration a phase trains with, and what the trials measured."""

    runner: Runner
    step: TrainStep
    precision: str
    batch: int
    trials: list[Trial]
    rate: float  # steps per second measured for it
    seconds: float  # spent in timed trial steps


def choose_config(
    build: Callable[[str, int], TrainStep],
    candidates: Sequence[tuple[str, int]],
    *,
    seed: int,
    graphs: bool,
    seconds: float,
    device: torch.device,
    world: int,
    say: Callable[[str], None],
) -> Choice:
    """Try each (precision, batch) of ``candidates`` (see the module docstring); keep the most crops per second
    among those that match fp32. The first candidate should be fp32: it is kept when nothing else matches."""
    trials: list[Trial] = []
    best: tuple[Trial, Runner, TrainStep, float] | None = None
    timed = 0.0
    for precision, batch in candidates:
        step = build(precision, batch)
        step()  # eager: Adam's state on the first call, cuDNN's choice of kernels for this shape
        runner = pick_runner(step, seed, graphs=graphs)
        matches, note = True, runner.note
        if precision != "fp32":
            reference = build("fp32", batch)
            cmp = compare_runs(reference, reference, step, runner.step, StateCopy(step.state_tensors()), seed, 2)
            matches = cmp.loss_rel <= PRECISION_TOL
            note += f"; against fp32: loss within {cmp.loss_rel:.2e}"
        steps, secs = time_steps(runner.step, seconds, device)
        timed += secs
        trial = Trial(precision, batch, runner.mode, steps / secs * batch * world, matches, note)
        trials.append(trial)
        say(
            f"trial {precision} batch {batch}: {runner.mode}, {trial.crops_per_s:.1f} crops/s"
            f"{'' if matches else ' (does not match fp32: not used)'}; {note}"
        )
        if matches and (best is None or trial.crops_per_s > best[0].crops_per_s):
            best = (trial, runner, step, steps / secs)
    if best is None:
        raise RuntimeError("no candidate configuration matches fp32 (the first candidate should be fp32)")
    trial, runner, step, rate = best
    return Choice(runner, step, trial.precision, trial.batch, trials, rate, timed)


@dataclass
class PhaseResult:
    steps: int  # host steps of the loop
    seconds_in_steps: float  # wall time of the loop without validation and saves
    seconds: float  # wall time of the loop
    restores: int = 0
    skipped: int = 0
    stopped: str = ""
    history: list[dict] = field(default_factory=list)


@dataclass
class PhasePlan:
    """What :func:`run_phase` runs: ``runner`` with ``step``'s state, lr and EMA weight tensors set per step from
    ``schedule``, one host read every ``flush_every`` steps."""

    runner: Callable[[], None]
    step: TrainStep
    meters: DeviceMeters
    schedule: BudgetSchedule
    lr: Sequence[Tensor]
    ema_weight: Tensor
    ema_decay: float
    flush_every: int
    on_flush: Callable[[int], None] = lambda step: None


def run_phase(
    plan: PhasePlan,
    *,
    broadcast: Callable[[list[float]], list[float]],
    is_main: bool,
    val_seconds: float,
    validate: Callable[[int], None],
    save_seconds: float,
    save: Callable[[int], None],
    print_seconds: float,
    say: Callable[[str], None],
) -> PhaseResult:
    """Train until the schedule ends (module docstring). ``validate`` and ``save`` get the step; they run on every
    process (the other processes wait for the main one at the next flush)."""
    params = [p for g in plan.step.groups for p in g.params]
    good = StateCopy(plan.step.state_tensors())
    start = last_val = last_save = last_print = time.monotonic()
    paused, step, result = 0.0, 0, PhaseResult(0, 0.0, 0.0)
    while True:
        lr = plan.schedule.lr(step)
        for lr_tensor in plan.lr:
            lr_tensor.fill_(lr)
        plan.ema_weight.fill_(1.0 - ema_decay(plan.ema_decay, step))
        plan.runner()
        step += 1
        if step % plan.flush_every and step != plan.schedule.max_steps:
            continue
        row = plan.meters.read()
        finite, skipped = torch.stack([all_finite(params).float(), plan.step.skipped.clone()]).cpu().tolist()
        plan.step.skipped.zero_()
        now = time.monotonic()
        plan.schedule.observe(step, now, step / max(now - start, 1e-9))
        bad = finite < 1 or skipped >= plan.flush_every
        decision = broadcast([float(plan.schedule.done(step, now)), float(bad), *plan.schedule.state()])
        stop, bad = decision[0] > 0, decision[1] > 0
        plan.schedule.set_state(decision[2:])
        result.skipped += int(skipped)
        if bad:
            good.restore()
            result.restores += 1
            say(
                f"step {step}: {'non-finite weights' if finite < 1 else 'every step of the window skipped'}; "
                f"the last good weights are back ({result.restores} of {MAX_RESTORES})"
            )
            if result.restores >= MAX_RESTORES:
                stop, result.stopped = True, "non-finite"
        else:
            good.take()
        plan.on_flush(step)
        result.history.append({"step": step, "minutes": round((now - start) / 60, 4), "lr": lr, **row})
        if is_main and now - last_print >= print_seconds:
            last_print = now
            say(
                f"step {step}  lr {lr:.2e}  "
                + "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith("loss") and "_q" not in k)
                + "  "
                + "  ".join(
                    f"{k} {v:.2f}dB" for k, v in row.items() if k.startswith("psnr") and k[-3:] in ("_q1", "_q4", "_q7")
                )
            )
        if now - last_val >= val_seconds and not stop:
            validate(step)
            last_val = time.monotonic()
            paused += last_val - now
        if now - last_save >= save_seconds and not stop:
            t = time.monotonic()
            save(step)
            last_save = time.monotonic()
            paused += last_save - t
        if stop:
            break
    result.steps = step
    result.seconds = time.monotonic() - start
    result.seconds_in_steps = result.seconds - paused
    result.stopped = result.stopped or (
        "schedule" if plan.schedule.end_step is not None and step >= plan.schedule.end_step else "time"
    )
    return result
