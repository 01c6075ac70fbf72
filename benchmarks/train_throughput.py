"""Training throughput of the real training step (``lcf.train.loop.train_step``) per precision, memory format and
batch size.

    python benchmarks/train_throughput.py --data DIR [DIR ...] [--weights weights] [--device cuda]
                                          [--crop 256] [--batch 16] [--warmup 5] [--steps 20]
                                          [--configs fp32,bf16,fp32+cl,bf16+cl,fp32@32,fp32@64] [--out FILE]
                                          [--choose FILE]

Each configuration starts from the same weights (``--weights``, the shipped teacher; ``--fresh`` for a new model
of ``--N/--M/--Mz``), the same batches and the same noise, runs ``--warmup`` steps untimed (cuDNN autotuning,
allocator), then ``--steps`` timed steps (the device synchronised before and after). ``fp32`` uses the TF32 matrix
units on CUDA; ``bf16`` is autocast with the likelihoods kept in float32; ``+cl`` puts the model and batches in
channels_last; ``@B`` runs batches of B instead of ``--batch`` (a step of this small model costs about as much at
batch 16 as at 32 on an H100 if it is bound by kernel launches, not arithmetic: the images/s column says). The loss
of the first step against the first config's at ``--batch`` tells how far a precision moves the objective (other
batches draw other samples: their column compares nothing). ``--choose`` picks among the configs at ``--batch``
only: the batch size changes the training itself, so it is a decision for the person starting the run, not for
this script.
On the CPU only ``fp32`` is allowed (the issue's CPU runs are measured by ``python -m lcf.train fit`` itself).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from lcf.bench.scripts import command_line, write_fragment
from lcf.nn import LcfModel, ModelConfig
from lcf.train.data import CropSampler, find_images, load_images
from lcf.train.loop import TrainConfig, model_from_weights, prepare_run, train_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(config: str, args: argparse.Namespace, images: list, device: torch.device) -> dict:
    config, _, batch = config.partition("@")
    precision, _, layout = config.partition("+")
    batch = int(batch) if batch else args.batch
    cfg = TrainConfig(
        data=args.data,
        run="",
        device=args.device,
        precision=precision,
        channels_last=layout == "cl",
        crop=args.crop,
        batch=batch,
        lr=1e-4,
        l1_steps=0,
    )
    if args.fresh:
        torch.manual_seed(0)
        model = LcfModel(ModelConfig(N=args.N, M=args.M, Mz=args.Mz))
    else:
        model, _ = model_from_weights(args.weights)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    lambdas = torch.tensor(model.config.levels, device=device)
    sampler = CropSampler(images, args.crop, batch, seed=0)
    torch.manual_seed(1)
    first_loss = None
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            _sync(device)
            start = time.perf_counter()
        x = sampler.next(device, fmt)
        level = torch.arange(x.shape[0], device=device) % len(model.config.levels) + 1
        terms = train_step(model, optimiser, x, level, lambdas, cfg, step=i)
        if first_loss is None:
            first_loss = terms.loss.item()
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    return {
        "config": config + (f"@{batch}" if batch != args.batch else ""),
        "batch": batch,
        "steps_per_s": args.steps / seconds,
        "first_loss": first_loss,
        "peak_gib": peak,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", required=True, help="folders of training images")
    p.add_argument("--weights", default="weights", help="start from this weights folder's teacher")
    p.add_argument("--fresh", action="store_true", help="a new model of --N/--M/--Mz instead of --weights")
    p.add_argument("--N", type=int, default=64)
    p.add_argument("--M", type=int, default=96)
    p.add_argument("--Mz", type=int, default=64)
    p.add_argument("--device", default="cuda")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--configs", default="fp32,bf16,fp32+cl,bf16+cl,fp32@32,fp32@64")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--choose",
        type=Path,
        default=None,
        help="write the fastest config at --batch whose first-step loss is within 1 %% of the first config's here",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train_throughput.md"))
    args = p.parse_args(argv)
    _, device = prepare_run("/tmp/lcf-throughput", args.device, args.threads)
    images = load_images(find_images(args.data), args.crop)
    rows = [measure(c.strip(), args, images, device) for c in args.configs.split(",") if c.strip()]
    base = next((r for r in rows if r["batch"] == args.batch), rows[0])["first_loss"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = [
        f"Device: {name}, torch {torch.__version__}; batch {args.batch} (unless @B) of {args.crop}x{args.crop}, "
        f"{args.steps} timed steps after {args.warmup}",
        "",
        "| config | batch | steps/s | images/s | first-step loss vs first config at --batch | peak GPU memory |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        table.append(
            f"| {r['config']} | {r['batch']} | {r['steps_per_s']:.2f} | {r['steps_per_s'] * r['batch']:.1f} | "
            f"{(r['first_loss'] / base - 1) * 100:+.3f} % | {r['peak_gib']:.1f} GiB |"
        )
    write_fragment(args.out, [f"Command: `{command_line('train_throughput', argv)}`", "", *table])
    if args.choose is not None:
        ok = [r for r in rows if r["batch"] == args.batch and abs(r["first_loss"] / base - 1) < 0.01]
        args.choose.write_text(max(ok, key=lambda r: r["steps_per_s"])["config"] + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
