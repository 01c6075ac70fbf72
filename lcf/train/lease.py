"""``python -m lcf.train lease``: one process that turns a GPU lease into training and always leaves usable weights.

    start (weights folder, earlier lease, or new) ─ data decoded once, on the device ─ outputs written at once
    ├─ teacher  (1 − student_share of the time): trials of precision x batch, graphed or eager ─ warm-up, constant
    │           lr, linear decay over the last decay_fraction ─ EMA ─ validation loss per level every minute
    │           ─ raw and EMA validated: the better one ships (rounded to the storage dtype first)
    ├─ students (student_share): cfg2/cfg3/cfg4 from the shipped teacher, g_a cached, one graphed step for all
    └─ raw.safetensors, ema.safetensors, students.safetensors, lease.log, summary.json (lcf.train.lease_files)

The whole process keeps to ``--minutes`` of wall time from its start: ``--margin`` seconds are kept for the last
validation and the files. The outputs are written first when the run starts and again every ``--save-seconds``, so the
folder holds usable weights whenever the process is stopped. Under ``torchrun`` every process trains a share of each
batch (PyTorch DistributedDataParallel; NCCL on CUDA, gloo on the CPU); the first process validates and writes.
"""

from __future__ import annotations

import copy
import inspect
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lcf.errors import TrainError
from lcf.nn import LcfModel, ModelConfig
from lcf.train.device_data import DeviceCrops, load_tiles, to_device
from lcf.train.distill import teacher_digest
from lcf.train.lease_files import (
    EMA,
    FILE_LIMIT,
    FORMAT,
    LOG,
    MAX_FILES,
    OUTPUTS,
    RAW,
    STUDENTS,
    SUMMARY,
    StartPoint,
    round_to_storage,
    save_students,
    save_teacher,
    start_point,
    stored_bytes,
    teacher_state,
    write_json,
)
from lcf.train.lease_phase import (
    PhasePlan,
    PhaseResult,
    TeacherObjective,
    choose_config,
    run_phase,
    validate_teacher,
)
from lcf.train.lease_students import (
    StudentObjective,
    cache_features,
    make_students,
    validate_students,
)
from lcf.train.schedule import BudgetSchedule
from lcf.train.step import (
    DeviceMeters,
    OptGroup,
    ParamEMA,
    TrainStep,
    fused_adam,
    host_checks,
    pick_runner,
    time_steps,
)

STUDENT_KINDS = ("cfg2", "cfg3", "cfg4")
TRIAL_LR = 0.05  # trial steps train at this fraction of the peak lr (they warm Adam's moments up)
MIN_PHASE_SECONDS = 2.0  # the students are skipped when less time than this is left for their steps
VAL_SHARE = 0.05  # of the time left, at most, for validation (fewer validation tiles otherwise)


@dataclass
class LeaseConfig:
    data: list[str]
    out: str
    minutes: float
    val: str = ""  # validation folder; "" = the last --data folder is held out
    init: str = ""  # weights folder, earlier lease folder, or "" for a new model
    N: int = 0  # widths of a new model (0: those of --init)
    M: int = 0
    Mz: int = 0
    device: str = "cpu"
    crop: int = 256
    tile: int = 256
    precisions: str = "fp32,bf16"
    batches: str = "16,32"
    lr: float = 1e-4
    warmup_steps: int = 100
    decay_fraction: float = 0.2
    ema_decay: float = 0.999
    clip: float = 1.0
    l1_weight: float = 1e-4
    l1_steps: int = 10_000
    students: str = "cfg2,cfg3,cfg4"
    student_share: float = 0.25
    teacher_steps: int = 0  # > 0: the teacher stops after this many steps (a smoke test)
    student_steps: int = 0
    student_lr: float = 1e-4
    student_batch: int = 16
    student_views: int = 2
    kd_weight: float = 1.0
    graphs: str = "auto"
    trial_seconds: float = 3.0
    val_batch: int = 16
    val_seconds: float = 60.0
    save_seconds: float = 120.0
    flush_seconds: float = 2.0
    print_seconds: float = 30.0
    margin: float = 10.0
    store_dtype: str = "auto"
    seed: int = 0
    decode_threads: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not self.data:
            problems.append("--data needs at least one folder")
        if not self.val and len(self.data) < 2:
            problems.append("give --val FOLDER, or at least two --data folders (the last is held out)")
        if not self.minutes > 0:
            problems.append(f"--minutes must be positive, got {self.minutes}")
        for name in ("decay_fraction", "student_share"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must lie in [0, 1), got {getattr(self, name)}")
        for name in ("val_seconds", "save_seconds", "print_seconds", "flush_seconds"):
            if not getattr(self, name) > 0:
                problems.append(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("trial_seconds", "margin"):
            if not getattr(self, name) >= 0:
                problems.append(f"--{name.replace('_', '-')} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"--ema-decay must lie in [0, 1), got {self.ema_decay}")
        if self.graphs not in ("auto", "on", "off"):
            problems.append(f"--graphs must be auto, on or off, got {self.graphs!r}")
        if self.store_dtype not in ("auto", "float32", "float16"):
            problems.append(f"--store-dtype must be auto, float32 or float16, got {self.store_dtype!r}")
        if self.student_views not in (1, 2, 4, 8):
            problems.append(f"--student-views must be 1, 2, 4 or 8, got {self.student_views}")
        unknown = [s for s in self.student_names if s not in STUDENT_KINDS]
        if unknown:
            problems.append(f"--students: {', '.join(unknown)} not among {', '.join(STUDENT_KINDS)}")
        try:
            _ = self.candidates
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise TrainError("; ".join(problems))

    @property
    def student_names(self) -> list[str]:
        return [s.strip() for s in self.students.split(",") if s.strip()]

    @property
    def candidates(self) -> list[tuple[str, int]]:
        """(precision, batch) pairs to try, fp32 at the first batch first."""
        precisions = [p.strip() for p in self.precisions.split(",") if p.strip()]
        batches = [int(b) for b in self.batches.split(",") if b.strip()]
        if not precisions or any(p not in ("fp32", "bf16") for p in precisions) or precisions[0] != "fp32":
            raise ValueError(f"--precisions must start with fp32 and hold fp32 or bf16, got {self.precisions!r}")
        if not batches or min(batches) < 1:
            raise ValueError(f"--batches must list positive batch sizes, got {self.batches!r}")
        return [(p, b) for b in batches for p in precisions]


# -- processes, log ------------------------------------------------------------------------------------------------


class Processes:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without it), its device, and the few collectives
    a lease needs."""

    def __init__(self, device: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise TrainError(f"--device {device}: this torch build sees no CUDA GPU")
            self.device = torch.device("cuda", local if self.world > 1 else torch.device(device).index or 0)
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True
        else:
            self.device = torch.device(device)
        if self.world > 1:
            import torch.distributed as dist

            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every process."""
        if self.world == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(t, 0)
        return t.cpu().tolist()

    def agree(self, tensors: list[Tensor]) -> bool:
        """True when ``tensors`` hold the same values on every process (compared by their sum and sum of squares)."""
        if self.world == 1:
            return True
        import torch.distributed as dist

        flat = torch.cat([t.detach().reshape(-1).double() for t in tensors])
        mine = torch.stack([flat.sum(), flat.square().sum()])
        first = mine.clone()
        dist.broadcast(first, 0)
        diff = (mine - first).abs().max()
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff) == 0.0

    def wrap(self, module: nn.Module) -> nn.Module:
        if self.world == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # the only buffer (ctx's mask) is a constant: no broadcast before each forward
        quiet = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        if quiet:
            return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)
        return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


class Log:
    """Lines to stdout and to ``lease.log`` (the main process only), each with the minutes since the start."""

    def __init__(self, path: Path | None, start: float) -> None:
        self.path, self.start = path, start

    def __call__(self, message: str) -> None:
        if self.path is None:
            return
        line = f"[{(time.monotonic() - self.start) / 60:6.2f} min] {message}"
        print(line, flush=True)
        with open(self.path, "a") as fh:
            fh.write(line + "\n")


# -- the lease ---------------------------------------------------------------------------------------------------


class Lease:
    """The state of one lease while it runs (see the module docstring); :meth:`run` does it all."""

    def __init__(self, cfg: LeaseConfig, started: float | None = None) -> None:
        self.cfg = cfg
        self.t0 = started if started is not None else time.monotonic()
        self.end = self.t0 + cfg.minutes * 60.0
        self.out = Path(cfg.out)
        self.procs = Processes(cfg.device)
        self.device = self.procs.device
        if self.procs.main:
            self._check_out()
        self.say = Log(self.out / LOG if self.procs.main else None, self.t0)
        self.summary: dict[str, Any] = {
            "format": FORMAT,
            "version": 1,
            "complete": False,
            "config": asdict(cfg),
            "seconds": {},
        }
        self.files: dict[str, int] = {}

    def _check_out(self) -> None:
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise TrainError(f"--out {self.out} must be a new or empty folder (a lease writes {', '.join(OUTPUTS)})")
        self.out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- setup --
    def load(self) -> None:
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed + self.procs.rank)
        config = ModelConfig(N=cfg.N, M=cfg.M, Mz=cfg.Mz) if cfg.N else None
        self.start: StartPoint = start_point(cfg.init, config)
        self.model = self.start.model.to(self.device).train()
        self.dtype = self._store_dtype()
        train_folders = cfg.data if cfg.val else cfg.data[:-1]
        val_folders = [cfg.val] if cfg.val else cfg.data[-1:]
        t = time.monotonic()
        tiles, shards = load_tiles(train_folders, cfg.tile, cfg.decode_threads)
        val_tiles, val_shards = load_tiles(val_folders, cfg.tile, cfg.decode_threads)
        decode = time.monotonic() - t
        self.tiles = to_device(tiles, self.device)
        self.crops = DeviceCrops(self.tiles, cfg.crop)
        self.val = DeviceCrops(to_device(val_tiles, self.device), cfg.crop)
        self.summary.update(
            {
                "device": torch.cuda.get_device_name(self.device)
                if self.device.type == "cuda"
                else platform.processor() or platform.machine(),
                "torch": torch.__version__,
                "world_size": self.procs.world,
                "init": {
                    "source": self.start.source,
                    "steps_before": self.start.steps,
                    "z_density": self.start.z_density,
                },
                "store_dtype": self.dtype,
                "shards": {"train": [s.to_dict() for s in shards], "validation": [s.to_dict() for s in val_shards]},
            }
        )
        self.summary["seconds"]["decode"] = round(decode, 2)
        self.say(f"start: {self.start.source}, {self.start.steps} steps before; z density {self.start.z_density}")
        self.say(
            f"data: {tiles.shape[0]} training tiles of {cfg.tile}x{cfg.tile} from "
            f"{', '.join(s.folder for s in shards)}, {val_tiles.shape[0]} validation tiles from "
            f"{', '.join(s.folder for s in val_shards)}; decoded in {decode:.1f} s; on {self.device} "
            f"({self.summary['device']}), {self.procs.world} process(es)"
        )

    def _store_dtype(self) -> str:
        size32 = stored_bytes(teacher_state(self.model), "float32")
        if self.cfg.store_dtype != "auto":
            dtype = self.cfg.store_dtype
        else:
            dtype = "float32" if size32 < FILE_LIMIT else "float16"
        if stored_bytes(teacher_state(self.model), dtype) >= FILE_LIMIT:
            raise TrainError(
                f"the teacher's weights take about {stored_bytes(teacher_state(self.model), dtype):,} "
                f"bytes as {dtype}, more than a file the device returns ({FILE_LIMIT:,})"
            )
        return dtype

    # -- outputs --
    def write(self, *, raw: LcfModel, ema: LcfModel | None) -> None:
        """The teacher's raw and EMA weights, and the summary (main process only)."""
        if not self.procs.main:
            return
        t = time.monotonic()
        steps = self.summary.get("steps", 0)
        common = {"steps": steps, "total_steps": self.start.steps + steps}
        self.files[RAW] = save_teacher(self.out / RAW, raw, self.dtype, which="raw", **common)
        self.files[EMA] = save_teacher(
            self.out / EMA, ema if ema is not None else raw, self.dtype, which="ema", **common
        )
        self.summary["seconds"]["write"] = round(self.summary["seconds"].get("write", 0.0) + time.monotonic() - t, 2)
        self.write_summary()

    def write_summary(self) -> None:
        if not self.procs.main:
            return
        self.summary["seconds"]["total"] = round(self.elapsed(), 2)
        if (self.out / LOG).exists():
            self.files[LOG] = (self.out / LOG).stat().st_size
        self.summary["files"] = dict(self.files)
        write_json(self.out / SUMMARY, self.summary)
        names = [p.name for p in self.out.iterdir()]
        if len(names) > MAX_FILES or any((self.out / n).stat().st_size >= FILE_LIMIT for n in names):
            raise TrainError(f"{self.out} holds more than the device returns: {sorted(names)}")

    # -- teacher --
    def teacher(self) -> None:
        cfg, dev, model = self.cfg, self.device, self.model
        levels = len(model.config.levels)
        lambdas = torch.tensor(model.config.levels, device=dev)
        l1 = torch.tensor(cfg.l1_weight if self.start.steps < cfg.l1_steps else 0.0, device=dev)
        lr = torch.tensor(cfg.lr * TRIAL_LR, device=dev)
        ema_weight = torch.zeros((), device=dev)
        params: list[Tensor] = list(model.parameters())
        self.ema = ParamEMA(params)
        group = OptGroup("teacher", params, fused_adam(params, lr), self.ema)
        meters = DeviceMeters(levels, dev, ["loss", "psnr", "bpp"], ["loss"])
        wrapped = self.procs.wrap(model)
        self.twin = copy.deepcopy(model).requires_grad_(False)

        def build(precision: str, batch: int) -> TrainStep:
            return TrainStep(
                TeacherObjective(wrapped, self.crops, batch, lambdas, l1, meters, precision),
                [group],
                cfg.clip,
                ema_weight,
            )

        choice = self._choose(build, cfg.candidates)
        meters.read()
        for s, p in zip(self.ema.shadow, params, strict=True):
            s.copy_(p.detach())
        self.summary.update(
            {
                "mode": choice.runner.mode,
                "mode_note": choice.runner.note,
                "precision": choice.precision,
                "batch": choice.batch,
                "trials": [t.to_dict() for t in choice.trials],
            }
        )
        self.summary["seconds"]["trials"] = round(choice.seconds, 2)
        self.say(f"teacher: {choice.precision}, batch {choice.batch}, {choice.runner.mode} ({choice.runner.note})")
        self._fit_validation(choice)
        self.val_history: list[dict] = []
        t = time.monotonic()
        self._validate_teacher(0)
        now = time.monotonic()
        self.val_cost = self.procs.broadcast([now - t])[0]
        left = self.end - cfg.margin - now
        share = cfg.student_share if cfg.student_names else 0.0
        teacher_end = now + (1.0 - share) * left - self.val_cost  # the last validation comes after it
        schedule = BudgetSchedule(cfg.lr, cfg.warmup_steps, cfg.decay_fraction, now, teacher_end, cfg.teacher_steps)

        def on_flush(step: int) -> None:
            if self.start.steps + self._adam_steps(group) >= cfg.l1_steps:
                l1.zero_()

        plan = PhasePlan(
            choice.runner.step,
            choice.step,
            meters,
            schedule,
            [lr],
            ema_weight,
            cfg.ema_decay,
            self._flush_every(choice.rate),
            on_flush,
        )
        result = self._run(plan, self._validate_teacher, lambda step: self._save_teacher(group))
        self._finish_teacher(group, choice, result)

    def _choose(self, build, candidates):
        cfg, dev = self.cfg, self.device
        if dev.type != "cuda":
            dropped = [c for c in candidates if c[0] != "fp32"]
            candidates = [c for c in candidates if c[0] == "fp32"]
            if dropped:
                self.say("bf16 is for CUDA devices: trying fp32 only")
        graphs = cfg.graphs == "on" or (cfg.graphs == "auto" and self.procs.world == 1)
        seconds = cfg.trial_seconds
        if self.procs.world > 1:  # every process must run the same steps: no timed trials
            candidates, seconds = candidates[:1], 0.0
        choice = choose_config(
            build,
            candidates,
            seed=cfg.seed + 1000 + self.procs.rank,
            graphs=graphs,
            seconds=seconds,
            device=dev,
            world=self.procs.world,
            say=self.say,
        )
        choice.rate = self.procs.broadcast([choice.rate])[0]
        return choice

    def _fit_validation(self, choice) -> None:
        """Keep the validation passes within VAL_SHARE of the time left: a pass runs raw and EMA at every level, each
        forward about a third of a training step per crop; fewer tiles when the set would take longer (said so)."""
        cfg, val = self.cfg, self.val
        passes = (self.end - time.monotonic()) / cfg.val_seconds + 3
        speed = next(t.crops_per_s for t in choice.trials if (t.precision, t.batch) == (choice.precision, choice.batch))
        per_tile = 2 * len(self.model.config.levels) * self.procs.world / (3 * max(speed, 1e-9))  # main only
        budget = VAL_SHARE * max(0.0, self.end - time.monotonic()) / passes
        keep = max(1, min(val.count, int(budget / per_tile)))
        keep = int(self.procs.broadcast([float(keep)])[0])
        if keep < val.count:
            self.say(
                f"validation on {keep} of {val.count} tiles: a pass over all would take about "
                f"{per_tile * val.count:.1f} s at the measured speed (budget {budget:.1f} s a pass)"
            )
            self.val = DeviceCrops(val.tiles[:keep], val.crop)
        self.summary["validation_tiles"] = keep

    def _flush_every(self, rate: float) -> int:
        return max(1, int(rate * self.cfg.flush_seconds))

    @staticmethod
    def _adam_steps(group: OptGroup) -> int:
        state = group.optimizer.state.get(group.params[0], {})
        return int(state["step"]) if "step" in state else 0

    def _run(self, plan: PhasePlan, validate, save) -> PhaseResult:
        cfg = self.cfg
        return run_phase(
            plan,
            broadcast=self.procs.broadcast,
            is_main=self.procs.main,
            val_seconds=cfg.val_seconds,
            validate=validate,
            save_seconds=cfg.save_seconds,
            save=save,
            print_seconds=cfg.print_seconds,
            say=self.say,
        )

    def _ema_model(self) -> LcfModel:
        self.ema.copy_to(list(self.twin.parameters()))
        return self.twin

    def _validate_teacher(self, step: int) -> dict:
        if not self.procs.main:
            return {}
        t = time.monotonic()
        raw = validate_teacher(self.model, self.val, self.cfg.val_batch)
        ema = validate_teacher(self._ema_model(), self.val, self.cfg.val_batch)
        row = {"step": step, "minutes": round(self.elapsed() / 60, 3), "raw": raw, "ema": ema}
        self.val_history.append(row)
        self.summary["validation"] = self.val_history
        self.summary["seconds"]["validation"] = round(
            self.summary["seconds"].get("validation", 0.0) + time.monotonic() - t, 2
        )
        levels = len(self.model.config.levels)
        self.say(
            f"validation at step {step}: loss raw {raw['loss']:.4f} ema {ema['loss']:.4f}; per level (raw) "
            + " ".join(f"{raw[f'loss_q{lv}']:.3f}" for lv in range(1, levels + 1))
        )
        if len(self.val_history) >= 3:
            last = [r["raw"]["loss"] for r in self.val_history[-3:]]
            if last[0] < last[1] < last[2]:
                self.say("OVERFITTING ALARM: the validation loss rose at the last two checks")
                self.summary["overfitting_alarm"] = True
        return row

    def _save_teacher(self, group: OptGroup) -> None:
        self.summary["steps"] = self._adam_steps(group)
        self.write(raw=self.model, ema=self._ema_model())

    def _finish_teacher(self, group: OptGroup, choice, result: PhaseResult) -> None:
        self.model.zero_grad(set_to_none=True)  # the gradients live in the graph's memory: let it go
        steps = self._adam_steps(group)
        self.summary.update(
            {
                "steps": steps,
                "total_steps": self.start.steps + steps,
                "skipped_steps": result.skipped,
                "restores": result.restores,
                "stopped": result.stopped,
            }
        )
        seconds = result.seconds_in_steps + choice.seconds
        crops = result.steps * choice.batch * self.procs.world
        self.summary["crops_per_s"] = round(crops / max(result.seconds_in_steps, 1e-9), 2)
        self.summary["seconds"]["teacher_steps"] = round(seconds, 2)
        self.summary["train_history"] = result.history[-200:]
        self.summary["train_last"] = result.history[-1] if result.history else {}
        final = self._validate_teacher(result.steps) if self.procs.main else {}
        choose = self.procs.broadcast(
            [float(final.get("ema", {}).get("loss", 1.0) < final.get("raw", {}).get("loss", 0.0)) if final else 0.0]
        )[0]
        shipped = "ema" if choose > 0 else "raw"
        self.summary["shipped"] = shipped
        raw = copy.deepcopy(self.model)
        if shipped == "ema":
            self.ema.copy_to(list(self.model.parameters()))
        round_to_storage(self.model, self.dtype)  # the students learn from the teacher as it is stored
        self.write(
            raw=raw if shipped == "ema" else self.model, ema=self.model if shipped == "ema" else self._ema_model()
        )
        self.say(
            f"teacher: {steps} steps ({result.skipped} skipped), {self.summary['crops_per_s']:.1f} crops/s in "
            f"{result.seconds_in_steps:.1f} s of steps; stopped by {result.stopped}; ships {shipped}"
        )

    # -- students --
    def students(self) -> None:
        """Distil the students from the shipped teacher in the time left (skipped, and said so, when too little is
        left: a student of another teacher would not match it)."""
        cfg, dev, teacher = self.cfg, self.device, self.model
        names = cfg.student_names
        if not names or cfg.student_share == 0:
            return
        teacher.eval().requires_grad_(False)
        t = time.monotonic()
        full = DeviceCrops(self.tiles, self.tiles.shape[1])
        with host_checks(teacher, False):
            features = cache_features(teacher, full, cfg.student_views, cfg.val_batch)
        self.summary["seconds"]["student_cache"] = round(time.monotonic() - t, 2)
        pairs, how = make_students(names, teacher, self.start.students, dev)
        groups = [
            OptGroup(
                n,
                list(p.parameters()),
                fused_adam(list(p.parameters()), torch.tensor(cfg.student_lr, device=dev)),
                ParamEMA(list(p.parameters())),
            )
            for n, (_, p) in pairs.items()
        ]
        meters = DeviceMeters(
            len(teacher.config.levels), dev, [f"psnr_{n}" for n in names], [f"loss_{n}" for n in names]
        )
        objective = StudentObjective(
            teacher,
            {n: self.procs.wrap(p) for n, (_, p) in pairs.items()},
            features,
            full,
            cfg.student_views,
            cfg.student_batch,
            cfg.kd_weight,
            meters,
            self.summary.get("precision", "fp32"),
        )
        step = TrainStep(objective, groups, cfg.clip, torch.zeros((), device=dev))
        with host_checks(teacher, False):
            step()
            graphs = cfg.graphs == "on" or (cfg.graphs == "auto" and self.procs.world == 1)
            runner = pick_runner(step, cfg.seed + 2000 + self.procs.rank, graphs=graphs)
            n, secs = time_steps(runner.step, 0.0, dev)
            rate = self.procs.broadcast([n / secs])[0]
            now = time.monotonic()
            end = self.end - cfg.margin - self.val_cost
            if self.procs.broadcast([float(end - now < MIN_PHASE_SECONDS)])[0] > 0:
                self.summary["students"] = {"skipped": f"{end - now:.1f} s left after the g_a cache"}
                self.say(
                    f"students skipped: {end - now:.1f} s left after the g_a cache (students.safetensors is "
                    f"not written: students of an earlier teacher would not match the shipped one)"
                )
                return
            meters.read()
            for g in groups:
                for shadow, p in zip(g.average.shadow, g.params, strict=True):
                    shadow.copy_(p.detach())
            plan = PhasePlan(
                runner.step,
                step,
                meters,
                BudgetSchedule(cfg.student_lr, cfg.warmup_steps, cfg.decay_fraction, now, end, cfg.student_steps),
                [g.lr for g in groups],
                step.ema_weight,
                cfg.ema_decay,
                self._flush_every(rate),
            )
            self.say(
                f"students {', '.join(names)} ({', '.join(f'{n}: {h}' for n, h in how.items())}): "
                f"{runner.mode} ({runner.note}); g_a cached for {features.shape[0]} tile views in "
                f"{self.summary['seconds']['student_cache']:.1f} s"
            )
            result = self._run(plan, lambda s: None, lambda s: None)
            self._finish_students(teacher, pairs, groups, result)

    def _finish_students(self, teacher: LcfModel, pairs: dict, groups: list[OptGroup], result: PhaseResult) -> None:
        info: dict[str, Any] = {}
        if self.procs.main:
            raw = validate_students(teacher, {n: p.g_s for n, (_, p) in pairs.items()}, self.val, self.cfg.val_batch)
            snapshots = {g.name: [p.detach().clone() for p in g.params] for g in groups}
            for g in groups:
                g.average.copy_to(g.params)
            ema = validate_students(teacher, {n: p.g_s for n, (_, p) in pairs.items()}, self.val, self.cfg.val_batch)
            for g in groups:
                use_ema = ema[f"loss_{g.name}"] < raw[f"loss_{g.name}"]
                if not use_ema:
                    for p, s in zip(g.params, snapshots[g.name], strict=True):
                        p.data.copy_(s)
                chosen = ema if use_ema else raw
                info[g.name] = {
                    "steps": self._adam_steps(g),
                    "shipped": "ema" if use_ema else "raw",
                    "loss": chosen[f"loss_{g.name}"],
                    **{k: v for k, v in chosen.items() if k.startswith(f"psnr_{g.name}_")},
                }
            info["teacher"] = {k: v for k, v in raw.items() if "teacher" in k}
        self.summary["students"] = info
        self.summary["seconds"]["student_steps"] = round(result.seconds_in_steps, 2)
        self.summary["student_history"] = result.history[-100:]
        students = {n: (arch, pair.g_s) for n, (arch, pair) in pairs.items()}
        if self.procs.main:
            t = time.monotonic()
            self.files[STUDENTS] = save_students(
                self.out / STUDENTS,
                students,
                self.dtype,
                teacher_digest=teacher_digest(teacher),
                teacher=self.summary.get("shipped"),
                results=info,
            )
            self.summary["seconds"]["write"] = round(
                self.summary["seconds"].get("write", 0.0) + time.monotonic() - t, 2
            )
            self.say(
                "students: "
                + "; ".join(
                    f"{n} {v['steps']} steps, ships {v['shipped']}, loss {v['loss']:.4f}"
                    for n, v in info.items()
                    if n != "teacher"
                )
            )

    # -- all --
    def run(self) -> dict:
        try:
            self.load()
            with host_checks(self.model, False):
                self.write(raw=self.model, ema=self.model)  # usable weights from the first seconds on
                self.teacher()
            self.summary["processes_agree"] = self.procs.agree(list(self.model.parameters()))
            self.students()
            steps_s = self.summary["seconds"].get("teacher_steps", 0.0) + self.summary["seconds"].get(
                "student_steps", 0.0
            )
            self.summary["seconds"]["in_steps"] = round(steps_s, 2)
            self.summary["fraction_in_steps"] = round(steps_s / max(self.elapsed(), 1e-9), 4)
            self.summary["history"] = [*self.start.history, self._history_entry()]
            self.summary["complete"] = True
            self.write_summary()
            self.say(
                f"done in {self.elapsed():.1f} s: {self.summary['fraction_in_steps']:.0%} of the time in "
                f"training steps; files {', '.join(sorted(self.files))}"
            )
            return self.summary
        finally:
            self.procs.close()

    def _history_entry(self) -> dict:
        s = self.summary
        return {
            "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "device": s.get("device"),
            "world_size": s.get("world_size"),
            "steps": s.get("steps"),
            "crops_per_s": s.get("crops_per_s"),
            "mode": s.get("mode"),
            "precision": s.get("precision"),
            "batch": s.get("batch"),
            "shards": [f["folder"] for f in s["shards"]["train"]],
            "shipped": s.get("shipped"),
            "minutes": self.cfg.minutes,
        }


def lease(cfg: LeaseConfig, started: float | None = None) -> dict:
    """Run one lease (module docstring); return its summary."""
    return Lease(cfg, started).run()


__all__ = ["LeaseConfig", "lease"]
