"""The training loop: variable-rate R-D training of :class:`lcf.nn.LcfModel`, resumable and bounded by wall time.

Every call resumes from the run folder's checkpoint (``lcf.train.checkpoint``: safetensors plus JSON) when it
exists (model, optimiser, step, data-sampler and torch RNG state), trains until ``--minutes`` have passed or
``--steps`` is reached, and always leaves a checkpoint (also every ``--save-every`` seconds, written atomically).
One step draws one quality level per sample (uniformly from 1..7) so a single set of weights learns every level; λ2
(the L1 sparsity weight) is applied for the first ``--l1-steps``.

A new run may start from a shipped weights folder instead (``--init-weights``: its teacher, float32, Adam afresh)
or from another run's checkpoint (``--init-run``: its networks and step, Adam afresh). ``--train-only g_a,h_a``
trains those top-level modules alone and keeps every other weight exactly as it was: fine-tuning the encoder this way
changes neither the entropy model (the model id) nor any decoder, so every existing file still decodes.
On CUDA the float32 products use the TF32 matrix units; ``--precision bf16`` (autocast; the likelihoods stay float32)
and ``--channels-last`` are options that ``benchmarks/train_throughput.py`` found slower for this model on an H100.
Logged values are summed on the device (``LevelWindow``) so that a step never waits for the GPU.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from lcf.errors import LcfError, TrainError
from lcf.loader import load_model
from lcf.nn import LcfModel, ModelConfig
from lcf.resources import place
from lcf.train import checkpoint
from lcf.train.data import CropSampler, find_images, load_images
from lcf.train.lease_files import load_z_density
from lcf.train.losses import LossTerms, rate_distortion_loss
from lcf.weights import Weights, load_weights


@dataclass
class TrainConfig:
    data: list[str]
    run: str
    N: int = 128
    M: int = 192
    Mz: int = 128
    crop: int = 128
    batch: int = 8
    lr: float = 1e-4
    lr_decay_at: float = 0.85  # fraction of --steps after which lr is halved (the paper's "late decay")
    steps: int = 1_000_000
    minutes: float = 60.0
    save_every: float = 300.0  # seconds
    l1_weight: float = 1e-4  # λ2
    l1_steps: int = 10_000
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"  # fp32 (TF32 matrix units on CUDA) | bf16 (autocast; CUDA only)
    channels_last: bool = False  # NHWC tensors on CUDA (refused on the CPU: torch's CPU backward crashes)
    init_weights: str = ""  # a new run starts from this shipped weights folder (teacher networks)
    init_run: str = ""  # ... or from this run's checkpoint (networks and step; Adam afresh)
    train_only: str = ""  # comma-separated top-level modules to train (e.g. g_a,h_a); "" = all
    threads: int = 0  # torch intra-op threads; 0 = leave as is
    log_every: int = 50
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise TrainError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        on_cuda = self.device.startswith("cuda")
        if self.precision == "bf16" and not on_cuda:
            raise TrainError("--precision bf16 is for CUDA devices; on the CPU train in fp32")
        if self.init_weights and self.init_run:
            raise TrainError("give --init-weights or --init-run, not both")
        if self.channels_last and not on_cuda:
            raise TrainError(
                "--channels-last is for CUDA devices (torch's CPU backward of a strided 1x1 conv "
                "crashes on channels_last input)"
            )


PRECISIONS = ("fp32", "bf16")
CHECKPOINT_KIND = "lcf-distill"  # the kind of a distillation run's checkpoint (lcf.train.distill)


class LrPlan(Protocol):
    """What :func:`learning_rate` reads of a run's configuration (TrainConfig, DistillConfig)."""

    lr: float
    lr_decay_at: float
    steps: int


def learning_rate(cfg: LrPlan, step: int) -> float:
    return cfg.lr * (0.5 if step >= cfg.lr_decay_at * cfg.steps else 1.0)


def flush_log(window: dict[str, list[float]], log_path: Path, **extra) -> dict:
    """Average the logged values of the last steps, add ``extra``, append it to ``log.jsonl``; clears the window."""
    row = {k: sum(v) / len(v) for k, v in sorted(window.items())}
    row.update(extra)
    with open(log_path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    window.clear()
    return row


def prepare_run(run_dir: str, device: str, threads: int) -> tuple[Path, torch.device]:
    """Set torch threads (0 = leave), create the run folder; return (run, its checkpoint path, the device).
    On CUDA, float32 matrix products and convolutions use the TF32 matrix units (training only)."""
    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainError(f"--device {device}: this torch build sees no CUDA GPU")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    return run, torch.device(device)


class LevelWindow:
    """Running sums of logged values since the last log line, kept on the training device so that a step never
    waits for the GPU; ``flush`` reads them once. Per-sample values are kept per quality level (``name_qL``)."""

    def __init__(self, levels: int, device: torch.device) -> None:
        self.levels, self.device = levels, device
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}

    def add_per_level(self, name: str, level: torch.Tensor, values: torch.Tensor) -> None:
        """``level`` (B,) in 1..L, ``values`` (B,)."""
        if name not in self.sums:
            self.sums[name] = torch.zeros(self.levels, dtype=torch.float64, device=self.device)
            self.counts[name] = torch.zeros(self.levels, dtype=torch.float64, device=self.device)
        index = level.long() - 1
        self.sums[name].index_add_(0, index, values.detach().double())
        self.counts[name].index_add_(0, index, torch.ones_like(index, dtype=torch.float64))

    def add(self, name: str, value: torch.Tensor) -> None:
        """A scalar (e.g. the loss) once per step."""
        if name not in self.sums:
            self.sums[name] = torch.zeros((), dtype=torch.float64, device=self.device)
            self.counts[name] = torch.zeros((), dtype=torch.float64, device=self.device)
        self.sums[name] += value.detach().double()
        self.counts[name] += 1

    def flush(self, log_path: Path, **extra) -> dict:
        """Append the means to ``log.jsonl`` (as :func:`flush_log` does), clear; return the row."""
        window: dict[str, list[float]] = {}
        for name, total in self.sums.items():
            sums, counts = total.cpu().tolist(), self.counts[name].cpu().tolist()
            if isinstance(sums, float):
                window[name] = [sums / counts]
                continue
            for lv, (sv, cv) in enumerate(zip(sums, counts, strict=True), start=1):
                if cv:
                    window[f"{name}_q{lv}"] = [sv / cv]
        self.sums.clear()
        self.counts.clear()
        return flush_log(window, log_path, **extra)


def model_from_folder(root: str | Path) -> tuple[LcfModel, Weights]:
    """The whole model of a weights folder (encoder, entropy networks, every decoder) as a float32 LcfModel, with the
    folder (:func:`lcf.loader.load_model`, the codec's loader); its entropy networks may be stored as integer layers
    (this lcf: dequantized) or as float tensors (before integer networks, model ids up to aaa070525e9b...). The
    factorized density of z comes from ``z_density.safetensors`` when the folder has it (lease exports), else it
    stays untrained (``lcf.train.lease`` fits it to the folder's z tables). TrainError with the reason for a folder
    that is not a complete lcf weights folder."""
    try:
        weights = load_weights(root)
        model = load_model(weights)
    except LcfError as exc:
        raise TrainError(f"{root}: {exc}") from None
    density = load_z_density(root)
    unexpected = sorted(set(density) - set(model.state_dict()))
    if unexpected:
        raise TrainError(f"{root}: not a complete lcf weights folder (unexpected {unexpected[:5]})")
    model.load_state_dict(density, strict=False)
    return model, weights


def model_from_weights(root: str | Path) -> tuple[LcfModel, int]:
    """The teacher model of a shipped weights folder (float32) and the training step it was exported at: a new
    training run can start from it (``--init-weights``) without its checkpoint."""
    try:
        full, weights = model_from_folder(root)
    except TrainError as exc:
        raise TrainError(f"--init-weights {exc}") from None
    model = LcfModel(full.config)
    model.load_state_dict(
        {
            k: v
            for k, v in full.state_dict().items()
            if not k.startswith("decoders.") or k.startswith("decoders.teacher.")
        }
    )
    return model, int(weights.manifest.info.get("steps", 0))


def load_teacher(run: str | Path, device: torch.device | str = "cpu") -> tuple[LcfModel, dict]:
    """The model of a training run's checkpoint (a fit run of this module) and {run, step, train_config}.

    ``run`` may also be a distillation run: then its pinned teacher is used, so that several students can be
    distilled from one teacher while that teacher's training run goes on."""
    if not checkpoint.exists(run):
        raise TrainError(f"no teacher checkpoint in {run}; train one first (python -m lcf.train fit)")
    ckpt = checkpoint.load_checkpoint(run, device)
    if ckpt.get("kind") == CHECKPOINT_KIND:
        model = LcfModel(ModelConfig.from_dict(ckpt["model_config"])).to(device)
        model.load_state_dict(ckpt["teacher_model"])
        return model, ckpt["teacher_meta"]
    model = LcfModel(ModelConfig.from_dict(ckpt["model_config"])).to(device)
    model.load_state_dict(ckpt["model"])
    return model, {"run": str(run), "step": int(ckpt["step"]), "train_config": ckpt.get("train_config", {})}


def model_from_run(run: str | Path) -> tuple[LcfModel, int]:
    """The networks of another run's checkpoint (a fit run, or a distillation run's pinned teacher) and the step
    it reached: a new run can start from them (``--init-run``) with Adam afresh."""
    if not checkpoint.exists(run):
        raise TrainError(f"--init-run {run}: no checkpoint there")
    model, meta = load_teacher(run)
    return model, int(meta["step"])


def starting_point(cfg: TrainConfig, model_cfg: ModelConfig) -> tuple[LcfModel, int]:
    """The model and step a new run starts from: ``--init-weights`` (a shipped folder) or ``--init-run`` (another
    run's checkpoint); TrainError when it holds a model of other widths than the run asks for."""
    flag, source = ("--init-weights", cfg.init_weights) if cfg.init_weights else ("--init-run", cfg.init_run)
    model, step = model_from_weights(source) if cfg.init_weights else model_from_run(source)
    if model.config != model_cfg:
        raise TrainError(
            f"{flag} {source} holds a {model.config.to_dict()} model; "
            f"pass --N {model.config.N} --M {model.config.M} --Mz {model.config.Mz}"
        )
    what = (
        f"the weights in {source} (exported at step {step})"
        if cfg.init_weights
        else (f"the checkpoint of {source} (step {step})")
    )
    print(f"new run from {what}", flush=True)
    return model, step


def module_names(train_only: str) -> list[str]:
    """``--train-only`` as a list of distinct module names, sorted ("h_a, g_a,g_a" -> ["g_a", "h_a"])."""
    return sorted({n.strip() for n in train_only.split(",") if n.strip()})


def trainable_parameters(model: LcfModel, train_only: str) -> list[torch.nn.Parameter]:
    """The parameters the optimiser updates: every one (``train_only`` empty) or those of the named top-level
    modules; the others get ``requires_grad = False`` (no weight gradients computed, bit-identical after training).
    TrainError for a name that is not a module of the model."""
    names = module_names(train_only)
    if not names:
        return list(model.parameters())
    modules = dict(model.named_children())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise TrainError(f"--train-only: {', '.join(unknown)} not among the model's modules ({', '.join(modules)})")
    keep = [p for n in names for p in modules[n].parameters()]
    chosen = {id(p) for p in keep}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    return keep


def restore_progress(ckpt: dict, optimiser: torch.optim.Optimizer, sampler: CropSampler, files: list) -> int:
    """Resume a run where its checkpoint left it: optimiser, data order (when the data files are the same) and torch
    RNG; returns the step. The networks are the caller's (fit and distill store different ones)."""
    if "optimiser" in ckpt:
        optimiser.load_state_dict(ckpt["optimiser"])
    else:
        print("the checkpoint holds no optimiser state (packed --model-only): Adam starts afresh", flush=True)
    if ckpt.get("data_files") == [str(f) for f in files] and "sampler" in ckpt:
        sampler.set_state(ckpt["sampler"])
    torch.set_rng_state(ckpt["torch_rng"].cpu())
    if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu())
    return ckpt["step"]


def rng_states() -> dict:
    """The torch RNG states a checkpoint keeps (the CUDA one too: training noise is drawn on the device)."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
    }


def train_step(
    model: LcfModel,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    level: torch.Tensor,
    lambdas: torch.Tensor,
    cfg: TrainConfig,
    step: int,
) -> LossTerms:
    """One optimisation step of Eq. (1) on batch ``x`` with per-sample quality ``level`` (1..L); lr set by caller."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        out = model(x, level.float())
    terms = rate_distortion_loss(x, out, lambdas[level - 1], cfg.l1_weight if step < cfg.l1_steps else 0.0)
    optimiser.zero_grad(set_to_none=True)
    terms.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    optimiser.step()
    return terms


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; return the last logged metrics."""
    run, device = prepare_run(cfg.run, cfg.device, cfg.threads)
    resuming = checkpoint.exists(run)

    model_cfg = ModelConfig(N=cfg.N, M=cfg.M, Mz=cfg.Mz)
    torch.manual_seed(cfg.seed)
    model, step = LcfModel(model_cfg), 0
    if not resuming and (cfg.init_weights or cfg.init_run):
        model, step = starting_point(cfg, model_cfg)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    place(model, device, memory_format)
    optimiser = torch.optim.Adam(trainable_parameters(model, cfg.train_only), lr=cfg.lr)
    files = find_images(cfg.data)
    sampler = CropSampler(load_images(files, cfg.crop), cfg.crop, cfg.batch, seed=cfg.seed)
    if resuming:
        ckpt = checkpoint.load_checkpoint(run, device)
        if ckpt["model_config"] != model_cfg.to_dict():
            raise TrainError(f"{run} was trained with {ckpt['model_config']}, not {model_cfg.to_dict()}")
        was = ckpt.get("train_config", {}).get("train_only", "")
        if module_names(was) != module_names(cfg.train_only):
            raise TrainError(
                f"{run} trains --train-only {was!r}; resume it with the same option (got {cfg.train_only!r})"
            )
        model.load_state_dict(ckpt["model"])
        step = restore_progress(ckpt, optimiser, sampler, files)
        print(f"resumed from {run} at step {step}", flush=True)

    lambdas = torch.tensor(model_cfg.levels, device=device)
    levels = len(model_cfg.levels)
    log_path = run / "log.jsonl"
    start = last_save = time.monotonic()
    window = LevelWindow(levels, device)
    last: dict = {}

    def save() -> None:
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise TrainError(f"the model has non-finite weights at step {step}; last checkpoint kept in {run}")
        checkpoint.save_checkpoint(
            run,
            {
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "step": step,
                "sampler": sampler.state(),
                "data_files": [str(f) for f in files],
                **rng_states(),
                "model_config": model_cfg.to_dict(),
                "train_config": asdict(cfg),
            },
        )

    model.train()
    while step < cfg.steps and (time.monotonic() - start) < cfg.minutes * 60:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(cfg, step)
        x = sampler.next(device, memory_format)
        level = torch.randint(1, levels + 1, (x.shape[0],), device=device)
        terms = train_step(model, optimiser, x, level, lambdas, cfg, step)
        step += 1

        window.add_per_level("psnr", level, terms.psnr)
        window.add_per_level("bpp", level, terms.bpp_y + terms.bpp_z)
        window.add("loss", terms.loss)
        if step % cfg.log_every == 0:
            last = window.flush(
                log_path, step=step, lr=learning_rate(cfg, step), minutes=(time.monotonic() - start) / 60
            )
            if not math.isfinite(last["loss"]):
                raise TrainError(f"loss is not finite before step {step}; last checkpoint kept in {run}")
            summary = "  ".join(
                f"q{lv}:{last.get(f'bpp_q{lv}', float('nan')):.3f}bpp/{last.get(f'psnr_q{lv}', float('nan')):.2f}dB"
                for lv in (1, 4, 7)
            )
            print(f"step {step}  loss {last['loss']:.4f}  {summary}", flush=True)
        if time.monotonic() - last_save > cfg.save_every:
            save()
            last_save = time.monotonic()
    save()
    print(f"stopped at step {step}; checkpoint in {run}", flush=True)
    return last
