"""What one training step of the model asks of a device, counted (not timed) on any machine: the arithmetic of the
forward and backward passes and the number of tensor operations each launches.

    python benchmarks/train_step_cost.py [--weights weights] [--crop 256] [--batch 16] [--out FILE]

The step is ``lcf.train.loop``'s forward and loss, then ``backward``, on random crops, with every quality level
drawn in turn. Arithmetic: ``torch.utils.flop_counter`` (convolutions and matrix products, 2 FLOP per
multiply-add; the deformable sampling and the element-wise layers are not counted, so this is a lower bound).
Operations: every aten operator called, less those that only make a view (on a GPU each of the others is at least
one kernel launch). Compare with the measured steps/s of ``benchmarks/train_throughput.py``: FLOP per step times
steps/s against the device's arithmetic rate says whether a step is bound by arithmetic or by launches.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from lcf.bench.scripts import command_line, write_fragment
from lcf.train.loop import model_from_weights
from lcf.train.losses import rate_distortion_loss

VIEW_OPS = {
    "view",
    "_unsafe_view",
    "reshape",
    "expand",
    "permute",
    "transpose",
    "t",
    "unsqueeze",
    "squeeze",
    "as_strided",
    "slice",
    "select",
    "split",
    "split_with_sizes",
    "chunk",
    "unbind",
    "narrow",
    "alias",
    "detach",
    "unfold",
    "view_as_real",
    "view_as_complex",
    "_reshape_alias",
}


class OpCounter(TorchDispatchMode):
    """Counts the aten operators called under it that are not mere views, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name not in VIEW_OPS:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def step_cost(model: torch.nn.Module, crop: int, batch: int) -> dict:
    """FLOP and operator counts of one forward + loss and one backward of ``model`` on a random batch."""
    model.train()
    model.zero_grad(set_to_none=True)  # as the training step does: no gradient to accumulate into
    levels = torch.tensor(model.config.levels)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, crop, crop, generator=gen)
    level = torch.arange(batch) % len(levels) + 1
    flops = FlopCounterMode(display=False)
    with flops:
        with OpCounter() as fwd:
            terms = rate_distortion_loss(x, model(x, level.float()), levels[level - 1], 0.0)
        forward_flop = flops.get_total_flops()
        with OpCounter() as bwd:
            terms.loss.backward()
    return {
        "forward_gflop": forward_flop / 1e9,
        "total_gflop": flops.get_total_flops() / 1e9,
        "forward_ops": sum(fwd.ops.values()),
        "backward_ops": sum(bwd.ops.values()),
        "top_forward_ops": fwd.ops.most_common(6),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="weights", help="the model of this weights folder (its teacher decoder)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/train_step_cost.md"))
    args = p.parse_args(argv)
    if args.crop % 64 or args.crop <= 0 or args.batch < 1:
        raise SystemExit("--crop must be a positive multiple of 64 and --batch at least 1")
    model, step = model_from_weights(args.weights)
    cost = step_cost(model, args.crop, args.batch)
    per_crop = cost["total_gflop"] / args.batch
    c = model.config
    lines = [
        f"Command: `{command_line('train_step_cost', argv)}`",
        "",
        f"Model N = {c.N}, M = {c.M}, Mz = {c.Mz} (weights of step {step}); batch {args.batch} of "
        f"{args.crop}x{args.crop}; torch {torch.__version__}",
        "",
        "| | forward + loss | backward | step |",
        "| --- | ---: | ---: | ---: |",
        f"| convolution and matrix GFLOP | {cost['forward_gflop']:.1f} | "
        f"{cost['total_gflop'] - cost['forward_gflop']:.1f} | {cost['total_gflop']:.1f} |",
        f"| operators (not views) | {cost['forward_ops']} | {cost['backward_ops']} | "
        f"{cost['forward_ops'] + cost['backward_ops']} |",
        "",
        f"{per_crop:.1f} GFLOP per {args.crop}x{args.crop} crop. Most frequent forward operators: "
        + ", ".join(f"{name} {n}" for name, n in cost["top_forward_ops"])
        + ".",
    ]
    write_fragment(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
