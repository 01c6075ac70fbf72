"""A learning-rate schedule that knows its wall-time budget: warm-up, constant peak, linear decay to zero.

    lr
    peak ┤   ┌──────────────────────────┐
         │  ╱                            ╲
         │ ╱                              ╲
       0 ┼──────────────────────────────────┴── steps
           warm-up      constant          decay: the last ``decay_fraction`` of the phase's wall time

The lr is a function of the step number alone, so that every process of a data-parallel run computes the same lr;
the wall time enters only at log flushes (:meth:`BudgetSchedule.observe`), where the step at which the phase will end
is estimated from the measured rate (steps per second of wall time, pauses for validation included). Once the decay
has begun, each new estimate re-aims the line from the current (step, lr) to (new end, 0), so the lr never jumps.
The phase ends at that step (:meth:`done`) or, whatever the estimate, at its wall-time end (checked at each flush).
With ``max_steps`` the phase is planned in steps instead (a smoke test, a run of a fixed length): the decay covers
its last ``decay_fraction`` of steps, and the wall-time end still applies.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BudgetSchedule:
    peak: float
    warmup_steps: int
    decay_fraction: float
    start_time: float  # the phase's wall clock (time.monotonic) at its first step
    end_time: float
    max_steps: int = 0  # > 0: the phase ends after this many steps (the decay is planned in steps)
    anchor_step: int | None = None  # the decay line runs from (anchor_step, anchor_lr) to (end_step, 0)
    anchor_lr: float = 0.0
    end_step: int | None = None

    def __post_init__(self) -> None:
        if not self.peak > 0 or self.warmup_steps < 0 or not 0 <= self.decay_fraction <= 1 or self.max_steps < 0:
            raise ValueError(
                f"bad schedule: peak {self.peak}, warm-up {self.warmup_steps}, "
                f"decay fraction {self.decay_fraction}, steps {self.max_steps}"
            )
        if self.max_steps:
            self.anchor_step = int((1.0 - self.decay_fraction) * self.max_steps)
            self.anchor_lr = self.peak
            self.end_step = self.max_steps

    def lr(self, step: int) -> float:
        """The lr of step ``step`` (0-based within the phase)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        if self.end_step is None or self.anchor_step is None:
            return self.peak * warm
        span = max(1, self.end_step - self.anchor_step)
        return min(self.peak * warm, self.anchor_lr * max(0.0, (self.end_step - step) / span))

    @property
    def decay_time(self) -> float:
        """When the decay begins, on the wall clock."""
        return self.end_time - self.decay_fraction * (self.end_time - self.start_time)

    def observe(self, step: int, now: float, rate: float) -> None:
        """At a flush after ``step`` steps, at wall time ``now``, running at ``rate`` steps per second: start the
        decay when its time has come, and re-aim it at the step the remaining time allows."""
        if self.max_steps or (now < self.decay_time and self.end_step is None):
            return
        self.anchor_lr = self.lr(step)
        self.anchor_step = step
        self.end_step = step + max(1, int(rate * max(0.0, self.end_time - now)))

    def done(self, step: int, now: float) -> bool:
        return (self.end_step is not None and step >= self.end_step) or now >= self.end_time

    def state(self) -> list[float]:
        """(anchor_step, anchor_lr, end_step) as floats, -1 for none: what rank 0 sends the other processes."""
        return [
            float(self.anchor_step if self.anchor_step is not None else -1),
            self.anchor_lr,
            float(self.end_step if self.end_step is not None else -1),
        ]

    def set_state(self, values: list[float]) -> None:
        anchor, lr, end = values
        self.anchor_step = int(anchor) if anchor >= 0 else None
        self.anchor_lr = lr
        self.end_step = int(end) if end >= 0 else None
