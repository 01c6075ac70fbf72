"""What one ``lcf encode`` call with several inputs saves over one call per image (issue 21).

Each call of the command pays for starting Python, importing PyTorch and loading the weights before it encodes
anything; ``lcf encode A B C -d OUT`` pays it once. This script times, on the same images:

* separate: ``lcf encode IMG -o SEP/IMG.lcf``, one call after the other, for every image;
* one call: ``lcf encode IMG... -d ONE/``.

The two are interleaved (the order alternates from round to round) because the machine may be shared: each
measurement records the 1-minute load average before and after it. The outputs of both are checked to be the same
bytes. Prints (and with --out writes) a markdown table: the wall time of each, per round, their ratio, and the
median ratio.

    python benchmarks/cli_startup.py --images /work/shared/data/kodak --count 10 --rounds 3 \\
        --out benchmarks/results/cli_startup.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def lcf_command() -> list[str]:
    """The installed ``lcf`` script, as a user runs it (else ``python -m lcf_cli.main``)."""
    script = shutil.which("lcf")
    return [script] if script else [sys.executable, "-m", "lcf_cli.main"]


def timed(commands: list[list[str]]) -> tuple[float, float, float]:
    """(seconds, load before, load after) of running ``commands`` one after the other; each must succeed."""
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    for command in commands:
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.decode()}")
    return time.perf_counter() - start, load_before, os.getloadavg()[0]


def measure(images: list[Path], rounds: int, extra: list[str]) -> list[dict[str, float]]:
    lcf = lcf_command()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(rounds):
            sep, one = Path(tmp) / f"sep{k}", Path(tmp) / f"one{k}"
            sep.mkdir()
            separate = [[*lcf, "encode", str(img), "-o", str(sep / (img.stem + ".lcf")), *extra] for img in images]
            together = [[*lcf, "encode", *map(str, images), "-d", str(one), *extra]]
            order = [("separate", separate), ("one", together)]
            if k % 2:
                order.reverse()
            row: dict[str, float] = {"round": k + 1}
            for name, commands in order:
                seconds, before, after = timed(commands)
                row[name], row[f"{name}_load"] = seconds, max(before, after)
                print(f"round {k + 1}: {name:8s} {seconds:7.2f} s  (load {before:.1f} -> {after:.1f})", flush=True)
            for img in images:
                if (sep / (img.stem + ".lcf")).read_bytes() != (one / (img.stem + ".lcf")).read_bytes():
                    raise SystemExit(f"{img.name}: the two ways gave different files")
            row["ratio"] = row["separate"] / row["one"]
            rows.append(row)
    return rows


def report(rows: list[dict[str, float]], images: list[Path], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        f"{len(images)} images ({images[0].name} .. {images[-1].name}), {os.cpu_count()} CPUs; wall time of "
        f"{len(images)} separate `lcf encode` calls against one call with all {len(images)} inputs (`-d`); load = "
        "the higher 1-minute load average before/after",
        "",
        "| round | separate s | load | one call s | load | ratio |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['round']:.0f} | {row['separate']:.2f} | {row['separate_load']:.1f} | {row['one']:.2f} | "
                     f"{row['one_load']:.1f} | {row['ratio']:.2f}x |")
    ratios = [row["ratio"] for row in rows]
    lines += ["", f"median ratio {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x); "
                  f"median per image: separate {statistics.median(r['separate'] for r in rows) / len(images):.2f} s, "
                  f"one call {statistics.median(r['one'] for r in rows) / len(images):.2f} s"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, required=True, help="folder of PNG images (the first --count)")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", type=Path, help="weights folder (default: the bundled weights)")
    parser.add_argument("--out", type=Path, help="write the markdown table here too")
    args = parser.parse_args(argv)
    images = sorted(args.images.glob("*.png"))[: args.count]
    if len(images) < 2:
        raise SystemExit(f"need at least 2 PNG images in {args.images}")
    extra = ["--weights", str(args.weights)] if args.weights else []
    rows = measure(images, args.rounds, extra)
    argv = sys.argv[1:] if argv is None else argv
    text = report(rows, images, " ".join(["python benchmarks/cli_startup.py", *argv]))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
