#!/usr/bin/env python
"""Kodak rate-distortion benchmark: classical codecs through Pillow (and lcf, when an integrator passes its hook).

    python benchmarks/kodak.py --images DIR --out DIR [--codecs jpeg420,webp,...] [--quick]
                               [--published CSV] [--references webp,jpeg2000,published:vtm] [--resume]

Writes into --out: kodak_per_image.csv, kodak_rd.csv (curves), kodak_bd.csv, kodak_rd.png and kodak.md (a markdown
fragment for docs/BENCHMARKS.md). Nothing outside --images/--out/--published is read; in particular ../shared is
not needed. lcf itself is measured by calling ``lcf.bench.run_benchmark(..., lcf_encode_decode=hook)`` from code.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lcf.bench import report
from lcf.bench.classical import AVIF_SPEED
from lcf.bench.runner import CLASSICAL, DEFAULT_PUBLISHED, DEFAULT_REFERENCES, run_benchmark


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", required=True, type=Path, help="folder of lossless test images (e.g. the 24 Kodak PNGs)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created)")
    p.add_argument(
        "--codecs",
        type=_csv_list,
        default=list(CLASSICAL),
        help=f"comma-separated codec ids (default: {','.join(CLASSICAL)})",
    )
    p.add_argument("--quick", action="store_true", help="3 settings per codec on the first 4 images (smoke run)")
    p.add_argument("--max-images", type=int, default=None, help="use only the first N images (sorted by name)")
    p.add_argument("--published", type=Path, default=None, help="published curves CSV (codec,quality,bpp,psnr_rgb,...)")
    p.add_argument(
        "--published-codecs",
        type=_csv_list,
        default=list(DEFAULT_PUBLISHED),
        help="which published codecs to plot (default: %(default)s); 'all' for every one",
    )
    p.add_argument(
        "--references",
        type=_csv_list,
        default=list(DEFAULT_REFERENCES),
        help="curve ids each measured codec gets a BD-rate against (default: %(default)s)",
    )
    p.add_argument("--resume", action="store_true", help="keep rows already in <out>/kodak_per_image.csv")
    p.add_argument("--name", default="kodak", help="file name stem of the outputs (default: %(default)s)")
    args = p.parse_args(argv)

    published_codecs = None if args.published_codecs == ["all"] else args.published_codecs
    result = run_benchmark(
        args.images,
        codecs=args.codecs,
        out_dir=args.out,
        quick=args.quick,
        max_images=args.max_images,
        published_csv=args.published,
        published_codecs=published_codecs,
        references=args.references,
        resume=args.resume,
        name=args.name,
    )
    report.print_curves(result.curves)
    if result.bd_references:
        report.print_bd(result.bd_references, title="BD-rate of each measured codec vs references")
    command = "python benchmarks/kodak.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    md = result.files["markdown"]
    md.write_text(
        f"Command: `{command}` (measurement wall time {result.elapsed_s:.0f} s; AVIF speed {AVIF_SPEED}).\n\n"
        + md.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    for kind, path in result.files.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
