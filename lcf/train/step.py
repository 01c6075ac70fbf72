"""A training step that is device work only, and the machinery to run it in a CUDA graph.

    TrainStep():  zero grads ─ objective() (draws its batch on the device, forward, loss, meters) ─ backward
                  ─ per group: clip ─ non-finite flag ─ fused Adam (skips its update when the flag is set; lr is a
                    device tensor) ─ EMA of the weights

Nothing in it reads a tensor back to the host (the quality range check of ``QualityGain`` is switched off with
:func:`host_checks`; the logged values are summed on the device by :class:`DeviceMeters`), so the same Python
function is either called (eager) or captured once and replayed (:class:`GraphedStep`). :func:`compare_runs` checks a
few graphed steps against eager ones from the same state and seed before a graph is trusted; :func:`pick_runner` falls
back to eager on any mismatch or capture error and says why. :class:`StateCopy` keeps a copy of every tensor a step
changes (weights, Adam moments and steps, EMA), on the device: the last good weights, and the state a comparison
starts from.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

StepFn = Callable[[], None]
GRAPH_WARMUP = 3  # eager steps on a side stream before a capture (DDP needs 11: torch's CUDA graph notes)
GRAPH_WARMUP_DDP = 11


@contextlib.contextmanager
def host_checks(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Turn the checks that read tensors back to the host (``QualityGain.check_quality``) on or off for the
    ``with`` block; training steps draw valid levels on the device and run without them."""
    gains: list[Any] = [m for m in model.modules() if hasattr(m, "check_quality")]  # QualityGain modules
    before = [m.check_quality for m in gains]
    for m in gains:
        m.check_quality = enabled
    try:
        yield
    finally:
        for m, was in zip(gains, before, strict=True):
            m.check_quality = was


class DeviceMeters:
    """Running sums of logged values, on the device: per quality level (one per sample) and per step.

    The tensors are allocated once and zeroed in place by :meth:`read`, so a CUDA graph that adds to them keeps
    adding to the same memory; :meth:`read` is the only host read (one copy, at a log flush)."""

    def __init__(self, levels: int, device: torch.device, per_level: Sequence[str], scalars: Sequence[str]) -> None:
        self.levels, self.per_level, self.scalars = levels, list(per_level), list(scalars)
        self._level_sums = torch.zeros(len(self.per_level), levels, dtype=torch.float64, device=device)
        self._level_counts = torch.zeros(levels, dtype=torch.float64, device=device)
        self._sums = torch.zeros(len(self.scalars) + 1, dtype=torch.float64, device=device)  # last: step count

    def count(self, level: Tensor) -> None:
        """One sample per entry of ``level`` (B,), levels 1..L."""
        self._level_counts.index_add_(0, level - 1, torch.ones_like(level, dtype=torch.float64))

    def add_per_level(self, name: str, level: Tensor, values: Tensor) -> None:
        self._level_sums[self.per_level.index(name)].index_add_(0, level - 1, values.detach().double())

    def add(self, name: str, value: Tensor) -> None:
        self._sums[self.scalars.index(name)] += value.detach().double()

    def step(self) -> None:
        self._sums[-1] += 1

    def read(self) -> dict[str, float]:
        """Means since the last read (``name_qL`` per level with samples; scalars per step), then zero the sums."""
        flat = torch.cat([self._level_sums.flatten(), self._level_counts, self._sums]).cpu().tolist()
        for t in (self._level_sums, self._level_counts, self._sums):
            t.zero_()
        n_lv = len(self.per_level) * self.levels
        level_sums, counts = flat[:n_lv], flat[n_lv : n_lv + self.levels]
        sums, steps = flat[n_lv + self.levels : -1], flat[-1]
        row: dict[str, float] = {}
        for i, name in enumerate(self.per_level):
            for lv in range(self.levels):
                if counts[lv]:
                    row[f"{name}_q{lv + 1}"] = level_sums[i * self.levels + lv] / counts[lv]
        for name, total in zip(self.scalars, sums, strict=True):
            row[name] = total / steps if steps else math.nan
        row["steps"] = steps
        return row


class ParamEMA:
    """An exponential moving average of ``params`` on the device: shadow += w · (param − shadow), with the weight w
    a device tensor (``1 − decay``, set before each step), so the update can be replayed in a graph."""

    def __init__(self, params: Sequence[Tensor]) -> None:
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, weight: Tensor) -> None:
        diff = torch._foreach_sub([p.detach() for p in self.params], self.shadow)
        torch._foreach_mul_(diff, weight)
        torch._foreach_add_(self.shadow, diff)

    @torch.no_grad()
    def copy_to(self, params: Sequence[Tensor]) -> None:
        for p, s in zip(params, self.shadow, strict=True):
            p.copy_(s)


def ema_decay(decay: float, steps: int) -> float:
    """The EMA's decay after ``steps`` updates: ramped up as min(decay, (1 + t) / (10 + t)), so that the first
    steps do not pin the average to the starting weights."""
    return min(decay, (1.0 + steps) / (10.0 + steps))


def fused_adam(
    params: Sequence[Tensor], lr: Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
) -> torch.optim.Adam:
    """Adam as one fused kernel per step, its lr read from the device tensor ``lr`` and its step counters on the device
    (capturable on CUDA), so a graph replays it with the lr of the moment."""
    return torch.optim.Adam(list(params), lr=lr, betas=betas, eps=eps, fused=True, capturable=lr.device.type == "cuda")


@dataclass
class OptGroup:
    """Parameters trained together: their optimiser, the non-finite flag that makes it skip a step, and their EMA."""

    name: str
    params: list[Tensor]
    optimizer: torch.optim.Adam
    ema: ParamEMA | None = None
    found: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.found = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
        # read by Adam.step as getattr(self, "found_inf") (as with a GradScaler): 1 skips the update
        self.optimizer.found_inf = self.found  # type: ignore[attr-defined]

    @property
    def average(self) -> ParamEMA:
        """The group's EMA (ValueError for a group that keeps none)."""
        if self.ema is None:
            raise ValueError(f"the group {self.name!r} keeps no EMA of its weights")
        return self.ema

    @property
    def lr(self) -> Tensor:
        return self.optimizer.param_groups[0]["lr"]

    def state_tensors(self) -> list[Tensor]:
        """Every tensor a step changes: weights, Adam moments and step counters, the EMA."""
        out = list(self.params)
        for p in self.params:
            out.extend(v for v in self.optimizer.state.get(p, {}).values() if isinstance(v, Tensor))
        if self.ema is not None:
            out.extend(self.ema.shadow)
        return out


class TrainStep:
    """One optimisation step of ``objective`` (which returns one loss per group), device work only.

    Per group: gradient clipping to ``clip``; ``found`` = 1 when the loss or the gradient norm is not finite (Adam
    then skips the update and the step counts in ``skipped``); the EMA follows the weights with weight
    ``ema_weight``. ``losses`` holds the last step's losses (the same tensors on every replay of a graph)."""

    def __init__(
        self, objective: Callable[[], list[Tensor]], groups: Sequence[OptGroup], clip: float, ema_weight: Tensor
    ) -> None:
        self.objective, self.groups, self.clip, self.ema_weight = objective, list(groups), clip, ema_weight
        self.skipped = torch.zeros((), dtype=torch.float32, device=ema_weight.device)
        self.losses: list[Tensor] = []

    def __call__(self) -> None:
        for g in self.groups:
            g.optimizer.zero_grad(set_to_none=True)
        losses = self.objective()
        if len(losses) != len(self.groups):
            raise ValueError(f"the objective returned {len(losses)} losses for {len(self.groups)} groups")
        (losses[0] if len(losses) == 1 else torch.stack(losses).sum()).backward()
        for g, loss in zip(self.groups, losses, strict=True):
            norm = torch.nn.utils.clip_grad_norm_(g.params, self.clip)
            g.found.copy_((~(torch.isfinite(norm) & torch.isfinite(loss.detach()))).float())
            g.optimizer.step()
            self.skipped += g.found
            if g.ema is not None:
                g.ema.update(self.ema_weight)
        self.losses = [loss.detach() for loss in losses]

    def state_tensors(self) -> list[Tensor]:
        return [t for g in self.groups for t in g.state_tensors()]


class StateCopy:
    """A device copy of tensors (a step's state); :meth:`restore` copies it back in place (the tensors a graph reads
    stay the same)."""

    def __init__(self, tensors: Sequence[Tensor]) -> None:
        self.tensors = list(tensors)
        self.copy = [t.detach().clone() for t in self.tensors]

    @torch.no_grad()
    def take(self) -> None:
        torch._foreach_copy_(self.copy, self.tensors)

    @torch.no_grad()
    def restore(self) -> None:
        torch._foreach_copy_(self.tensors, self.copy)


def all_finite(tensors: Sequence[Tensor]) -> Tensor:
    """A device bool: every element of every tensor is finite (read it at a flush)."""
    norms = torch._foreach_norm([t.detach().float() for t in tensors if t.is_floating_point()])
    return torch.isfinite(torch.stack(norms)).all()


class GraphedStep:
    """``step`` captured once in a CUDA graph (after ``warmup`` eager calls on a side stream, which train: the caller
    restores the state it wants), then replayed by each call."""

    def __init__(self, step: TrainStep, warmup: int = GRAPH_WARMUP) -> None:
        self.step = step
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                step()
        torch.cuda.current_stream().wait_stream(side)
        for g in step.groups:
            g.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            step()

    def __call__(self) -> None:
        self.graph.replay()


@dataclass(frozen=True)
class Comparison:
    """``steps`` steps of a candidate against a reference from the same state and seed: the largest relative
    difference of a step's loss, and of the weight change, ‖Δ_candidate − Δ_reference‖ / ‖Δ_reference‖."""

    steps: int
    loss_rel: float
    update_rel: float
    note: str = ""

    def ok(self, loss_tol: float, update_tol: float) -> bool:
        return self.loss_rel <= loss_tol and self.update_rel <= update_tol

    def describe(self) -> str:
        return f"{self.steps} steps: loss within {self.loss_rel:.2e}, weight update within {self.update_rel:.2e}"


def _flat(params: Sequence[Tensor]) -> Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in params])


def compare_runs(
    reference: TrainStep,
    run_reference: StepFn,
    candidate: TrainStep,
    run_candidate: StepFn,
    state: StateCopy,
    seed: int,
    steps: int,
    prepare: Callable[[], None] | None = None,
) -> Comparison:
    """Run ``steps`` of ``run_reference`` and of ``run_candidate`` (the steps of ``reference`` and ``candidate``:
    their ``losses`` are compared) from the same state (``state``, taken here) and ``torch.manual_seed(seed)``;
    leave the state as the candidate left it. ``prepare`` runs once after the reference (e.g. a graph capture, whose
    warm-up steps train: the state is restored after it)."""
    params = [p for g in candidate.groups for p in g.params]
    state.take()
    start = _flat(params)

    def run(fn: StepFn, losses_of: TrainStep) -> tuple[Tensor, Tensor]:
        torch.manual_seed(seed)
        losses = []
        for _ in range(steps):
            fn()
            losses.append(torch.stack([loss.float() for loss in losses_of.losses]).clone())
        return torch.stack(losses), _flat(params)

    ref_losses, ref_params = run(run_reference, reference)
    state.restore()
    if prepare is not None:
        prepare()
        state.restore()
    got_losses, got_params = run(run_candidate, candidate)
    loss_rel = ((got_losses - ref_losses).abs() / ref_losses.abs().clamp_min(1e-12)).max()
    ref_update = ref_params - start
    update_rel = (got_params - ref_params).norm() / ref_update.norm().clamp_min(1e-30)
    values = torch.stack([loss_rel.double(), update_rel]).nan_to_num(nan=math.inf).cpu().tolist()
    return Comparison(steps, values[0], values[1])


@dataclass
class Runner:
    """How steps run: ``step`` (eager or a graph's replay), ``mode`` ('graph' or 'eager') and why."""

    step: StepFn
    mode: str
    note: str


def pick_runner(
    step: TrainStep,
    seed: int,
    steps: int = 3,
    loss_tol: float = 2e-3,
    update_tol: float = 5e-2,
    graphs: bool = True,
    warmup: int = GRAPH_WARMUP,
    make_graph: Callable[[TrainStep, int], StepFn] = GraphedStep,
) -> Runner:
    """A graphed ``step`` when ``graphs`` and CUDA allow it and ``steps`` graphed steps match eager ones from the
    same state and seed (``loss_tol``, ``update_tol``: :class:`Comparison`); else the eager step, with the reason.
    The compared steps train (the candidate's are kept). ``make_graph`` is :class:`GraphedStep` (a test may pass
    another candidate)."""
    device = step.ema_weight.device
    if not graphs:
        return Runner(step, "eager", "graphs switched off")
    if device.type != "cuda" and make_graph is GraphedStep:
        return Runner(step, "eager", f"no CUDA graphs on {device.type}")
    state = StateCopy(step.state_tensors())
    built: list[StepFn] = []
    try:
        comparison = compare_runs(
            step,
            step,
            step,
            lambda: built[0](),
            state,
            seed,
            steps,
            prepare=lambda: built.append(make_graph(step, warmup)),
        )
    except Exception as exc:  # noqa: BLE001 (a capture error of any kind: train eagerly instead)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        state.restore()
        return Runner(step, "eager", f"graph capture failed ({type(exc).__name__}: {str(exc)[:200]}); eager")
    if not comparison.ok(loss_tol, update_tol):
        state.restore()
        return Runner(step, "eager", f"graphed steps differ from eager ones ({comparison.describe()}); eager")
    return Runner(built[0], "graph", f"graphed steps match eager ones ({comparison.describe()})")


def time_steps(
    run: StepFn, seconds: float, device: torch.device, before: Callable[[], None] | None = None
) -> tuple[int, float]:
    """Call ``run`` (after ``before`` each time) for about ``seconds``; return (steps, seconds measured with a device
    synchronisation at both ends)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *_: None)
    sync(device)
    start = time.perf_counter()
    steps = 0
    while True:
        if before is not None:
            before()
        run()
        steps += 1
        if (steps % 4 == 0 or device.type != "cuda") and time.perf_counter() - start >= seconds:
            break
    sync(device)
    return steps, time.perf_counter() - start
