"""The training loop: variable-rate R-D training of :class:`lcf.nn.LcfModel`, resumable and bounded by wall time.

Every call resumes from ``<run>/checkpoint.pt`` when it exists (model, optimiser, step, data-sampler and torch RNG
state), trains until ``--minutes`` have passed or ``--steps`` is reached, and always leaves a checkpoint (also every
``--save-every`` seconds, written atomically). One step draws one quality level per sample (uniformly from 1..7) so
a single set of weights learns every level; λ2 (the L1 sparsity weight) is applied for the first ``--l1-steps``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lcf.nn import LcfModel, ModelConfig
from lcf.train.data import CropSampler, find_images, load_images
from lcf.train.losses import rate_distortion_loss


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
    lr_decay_at: float = 0.85            # fraction of --steps after which lr is halved (the paper's "late decay")
    steps: int = 1_000_000
    minutes: float = 60.0
    save_every: float = 300.0            # seconds
    l1_weight: float = 1e-4              # λ2
    l1_steps: int = 10_000
    clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    threads: int = 0                     # torch intra-op threads; 0 = leave as is
    log_every: int = 50
    extra: dict = field(default_factory=dict)


def _atomic_save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * (0.5 if step >= cfg.lr_decay_at * cfg.steps else 1.0)


def flush_log(window: dict[str, list[float]], log_path: Path, **extra) -> dict:
    """Average the logged values of the last steps, add ``extra``, append it to ``log.jsonl``; clears the window."""
    row = {k: sum(v) / len(v) for k, v in sorted(window.items())}
    row.update(extra)
    with open(log_path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    window.clear()
    return row


def prepare_run(run_dir: str, device: str, threads: int) -> tuple[Path, Path, torch.device]:
    """Set torch threads (0 = leave), create the run folder; return (run, its checkpoint path, the device)."""
    if threads:
        torch.set_num_threads(threads)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    return run, run / "checkpoint.pt", torch.device(device)


def restore_progress(ckpt: dict, optimiser: torch.optim.Optimizer, sampler: CropSampler, files: list) -> int:
    """Resume a run where its checkpoint left it: optimiser, data order (when the data files are the same) and torch
    RNG; returns the step. The networks are the caller's (fit and distill store different ones)."""
    optimiser.load_state_dict(ckpt["optimiser"])
    if ckpt.get("data_files") == [str(f) for f in files]:
        sampler.set_state(ckpt["sampler"])
    torch.set_rng_state(ckpt["torch_rng"])
    return ckpt["step"]


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; return the last logged metrics."""
    run, ckpt_path, device = prepare_run(cfg.run, cfg.device, cfg.threads)

    model_cfg = ModelConfig(N=cfg.N, M=cfg.M, Mz=cfg.Mz)
    torch.manual_seed(cfg.seed)
    model = LcfModel(model_cfg).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    files = find_images(cfg.data)
    sampler = CropSampler(load_images(files, cfg.crop), cfg.crop, cfg.batch, seed=cfg.seed)
    step = 0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ckpt["model_config"] != model_cfg.to_dict():
            raise SystemExit(f"{ckpt_path} was trained with {ckpt['model_config']}, not {model_cfg.to_dict()}")
        model.load_state_dict(ckpt["model"])
        step = restore_progress(ckpt, optimiser, sampler, files)
        print(f"resumed from {ckpt_path} at step {step}", flush=True)

    lambdas = torch.tensor(model_cfg.levels, device=device)
    levels = len(model_cfg.levels)
    log_path = run / "log.jsonl"
    start = last_save = time.monotonic()
    window: dict[str, list[float]] = {}
    last: dict = {}

    def save() -> None:
        _atomic_save(
            {
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "step": step,
                "sampler": sampler.state(),
                "data_files": [str(f) for f in files],
                "torch_rng": torch.get_rng_state(),
                "model_config": model_cfg.to_dict(),
                "train_config": asdict(cfg),
            },
            ckpt_path,
        )

    model.train()
    while step < cfg.steps and (time.monotonic() - start) < cfg.minutes * 60:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(cfg, step)
        x = sampler.next().to(device)
        level = torch.randint(1, levels + 1, (x.shape[0],), device=device)
        lam = lambdas[level - 1]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(x, level.float())
        terms = rate_distortion_loss(x, out, lam, cfg.l1_weight if step < cfg.l1_steps else 0.0)
        optimiser.zero_grad(set_to_none=True)
        terms.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        optimiser.step()
        step += 1

        if not math.isfinite(terms.loss.item()):
            raise SystemExit(f"loss is not finite at step {step}; last checkpoint kept at {ckpt_path}")
        for b in range(x.shape[0]):
            lv = int(level[b])
            window.setdefault(f"psnr_q{lv}", []).append(float(terms.psnr[b]))
            window.setdefault(f"bpp_q{lv}", []).append(float(terms.bpp_y[b] + terms.bpp_z[b]))
        window.setdefault("loss", []).append(terms.loss.item())
        if step % cfg.log_every == 0:
            last = flush_log(window, log_path, step=step, lr=learning_rate(cfg, step),
                             minutes=(time.monotonic() - start) / 60)
            summary = "  ".join(
                f"q{lv}:{last.get(f'bpp_q{lv}', float('nan')):.3f}bpp/{last.get(f'psnr_q{lv}', float('nan')):.2f}dB"
                for lv in (1, 4, 7)
            )
            print(f"step {step}  loss {last['loss']:.4f}  {summary}", flush=True)
        if time.monotonic() - last_save > cfg.save_every:
            save()
            last_save = time.monotonic()
    save()
    print(f"stopped at step {step}; checkpoint {ckpt_path}", flush=True)
    return last
