"""What the scripts in ``benchmarks/`` share: their image options, the torch threads, the markdown fragment they write.

p = argparse.ArgumentParser(...)
add_image_options(p, qualities=[1, 4, 7])         # --images --max-images --qualities --threads
args = p.parse_args(argv)
files = images_of(args)                           # sets the threads too
...
write_fragment(args.out, [f"Command: `{command_line('rate_vs_estimate', argv)}`", "", *table])
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from lcf.bench.runner import list_images


def floats(text: str) -> list[float]:
    """'1,4,7' -> [1.0, 4.0, 7.0]"""
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_image_options(
    p: argparse.ArgumentParser, *, qualities: Sequence[float] = (1, 2, 3, 4, 5, 6, 7), images_required: bool = True
) -> None:
    default = ",".join(f"{q:g}" for q in qualities)
    p.add_argument(
        "--images",
        required=images_required,
        type=Path,
        default=None,
        help="folder of test images (e.g. the 24 Kodak PNGs)",
    )
    p.add_argument("--max-images", type=int, default=None, help="use only the first N images (sorted by name)")
    p.add_argument(
        "--qualities", type=floats, default=list(map(float, qualities)), help=f"quality levels (default {default})"
    )
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")


def images_of(args: argparse.Namespace) -> list[Path]:
    """Set the torch threads asked for; the images of ``--images`` (the first ``--max-images``)."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        return list_images(args.images)[: args.max_images]
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How this run was started, for the fragment: ``python benchmarks/<script>.py ARGS``."""
    return f"python benchmarks/{script}.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))


def write_fragment(path: Path, lines: Sequence[str]) -> None:
    """Write the markdown fragment (for docs/BENCHMARKS.md) and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"markdown: {path}", file=sys.stderr)
