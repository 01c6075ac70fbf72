"""Peak memory of decoding decompression bombs: valid .lcf files of a few kB that claim a large image.

Each bomb's symbols are all zero; it marks no channel, one channel or every channel as coded (the decoder then
builds the entropy parameters of none, one or all of the latent channels). Each file is decoded as ``lcf decode``
does (to a PNG) in a fresh process, once per memory budget, and its outcome, seconds and peak RSS (``VmHWM``, with
PyTorch and the weights) are written as a markdown table (docs/SECURITY.md, "Decompression bombs").

    python benchmarks/decode_bombs.py --sides 4096,5632,8192 --coded 0,1 --budgets default
    python benchmarks/decode_bombs.py --sides 2816,5632 --coded 96 --budgets default,1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corruption_sweep import bomb  # noqa: E402

from lcf import api  # noqa: E402
from lcf.bench.scripts import command_line, write_fragment  # noqa: E402

WORKER = Path(__file__).resolve().parent / "corruption_sweep.py"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--sides", default="4096,5632", help="claimed image sides, comma-separated")
    p.add_argument("--coded", default="0,1", help="coded channels per bomb, comma-separated (the model's M: all)")
    p.add_argument("--budgets", default="default,1", help="LCF_MAX_MEMORY values in GiB ('default': unset)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/decode_bombs.md"))
    args = p.parse_args(argv)
    weights = None if args.weights is None else str(args.weights.resolve())
    codec = api.get_codec(weights)
    rows = [
        "| claimed image | coded channels | file bytes | `LCF_MAX_MEMORY` | outcome | seconds | peak RSS MiB |",
        "|---|---:|---:|---|---|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="lcf-bombs-") as tmp:
        for side in (int(v) for v in args.sides.split(",") if v):
            for coded in sorted({min(int(v), codec.config.M) for v in args.coded.split(",") if v}):
                path = Path(tmp) / f"bomb-{side}-{coded}.lcf"
                path.write_bytes(bomb(codec, side, coded))
                for budget in (v.strip() for v in args.budgets.split(",") if v.strip()):
                    env = dict(os.environ)
                    env.pop("LCF_MAX_MEMORY", None)
                    if budget != "default":
                        env["LCF_MAX_MEMORY"] = budget
                    done = subprocess.run(
                        [sys.executable, str(WORKER), "--bomb-worker", str(path), weights or ""],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    r = json.loads(done.stdout.strip().splitlines()[-1])
                    row = (
                        f"| {side}x{side} ({side * side / 1e6:.1f} MP) | {coded} | {path.stat().st_size:,} | "
                        f"{'unset (8 GiB)' if budget == 'default' else budget} | {r['outcome']} | "
                        f"{r['seconds']:.1f} | {r['rss_mib']:,.0f} |"
                    )
                    print(row, file=sys.stderr)
                    rows.append(row)
    write_fragment(args.out, [f"Command: `{command_line('decode_bombs', argv)}`.", "", *rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
