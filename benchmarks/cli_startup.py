"""What one ``lcf encode`` call with several inputs saves over one call per image (issue 21).

Each call of the command pays for starting Python, importing PyTorch and loading the weights before it encodes
anything; ``lcf encode A B C -d OUT`` pays it once. This script times, on the same images:

* separate: ``lcf encode IMG -o SEP/IMG.lcf``, one call after the other, for every image;
* one call: ``lcf encode IMG... -d ONE/``.

The two are interleaved (the order alternates from round to round) because the machine may be shared: each
measurement records the 1-minute load average before and after it, and the CPU time (user + system) of the
processes it ran, which a loaded machine inflates much less than the wall time. The outputs of both are checked to
be the same bytes. Prints (and with --out writes) a markdown table: the wall and CPU time of each, per round, their
ratios, the median ratios, and the ratio of the best (smallest) time of each, which other jobs disturb least.

    python benchmarks/cli_startup.py --images /work/shared/data/kodak --count 10 --rounds 3 \\
        --out benchmarks/results/cli_startup.md

With ``--single IMAGE`` it measures instead the start-up target of issue 21: one ``lcf encode IMAGE -o X.lcf`` from
the shell against ``python -c "import torch"`` plus the encode itself in a warm process (the median of three encodes
of IMAGE by one :class:`lcf.Codec` after a first one) plus 0.3 s, interleaved round by round; the ratio
shell / (import torch + warm encode + 0.3 s) is at most 1 when the target is met.

    python benchmarks/cli_startup.py --single /work/shared/data/kodak/kodim05.png --rounds 5 \\
        --out benchmarks/results/cli_startup_single.md
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path


def lcf_command() -> list[str]:
    """The ``lcf`` console script that pip installed for this interpreter, as ``import torch`` is timed with this
    interpreter itself: not a version manager's shim found first on PATH (pyenv's is a bash script that costs about
    0.06 s before Python starts, for ``python`` as much as for ``lcf``); else the ``lcf`` on PATH, else ``python -m
    lcf_cli.main``."""
    installed = Path(sysconfig.get_path("scripts")) / "lcf"
    if installed.is_file() and os.access(installed, os.X_OK):
        return [str(installed)]
    script = shutil.which("lcf")
    return [script] if script else [sys.executable, "-m", "lcf_cli.main"]


def timed(commands: list[list[str]]) -> tuple[float, float, float, float]:
    """(wall seconds, CPU seconds, load before, load after) of running ``commands`` one after the other; each must
    succeed."""
    load_before = os.getloadavg()[0]
    cpu_before = _children_cpu()
    start = time.perf_counter()
    for command in commands:
        result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.decode()}")
    return time.perf_counter() - start, _children_cpu() - cpu_before, load_before, os.getloadavg()[0]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
                seconds, cpu, before, after = timed(commands)
                row[name], row[f"{name}_cpu"], row[f"{name}_load"] = seconds, cpu, max(before, after)
                print(
                    f"round {k + 1}: {name:8s} {seconds:7.2f} s, CPU {cpu:7.2f} s  (load {before:.1f} -> {after:.1f})",
                    flush=True,
                )
            for img in images:
                if (sep / (img.stem + ".lcf")).read_bytes() != (one / (img.stem + ".lcf")).read_bytes():
                    raise SystemExit(f"{img.name}: the two ways gave different files")
            row["ratio"] = row["separate"] / row["one"]
            row["cpu_ratio"] = row["separate_cpu"] / row["one_cpu"]
            rows.append(row)
    return rows


def report(rows: list[dict[str, float]], images: list[Path], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        (
            f"{len(images)} images ({images[0].name} .. {images[-1].name}), {os.cpu_count()} CPUs; wall time of "
            f"{len(images)} separate `lcf encode` calls against one call with all {len(images)} inputs (`-d`); CPU = "
            "user + system time of the processes; load = the higher 1-minute load average before/after"
        ),
        "",
        "| round | separate s | CPU s | load | one call s | CPU s | load | ratio | CPU ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['round']:.0f} | {row['separate']:.2f} | {row['separate_cpu']:.2f} | "
            f"{row['separate_load']:.1f} | {row['one']:.2f} | {row['one_cpu']:.2f} | {row['one_load']:.1f} | "
            f"{row['ratio']:.2f}x | {row['cpu_ratio']:.2f}x |"
        )
    ratios, cpu_ratios = [row["ratio"] for row in rows], [row["cpu_ratio"] for row in rows]
    lines += [
        "",
        (
            f"median ratio {statistics.median(ratios):.2f}x (min {min(ratios):.2f}x, max {max(ratios):.2f}x), "
            f"CPU {statistics.median(cpu_ratios):.2f}x; median per image: separate "
            f"{statistics.median(r['separate'] for r in rows) / len(images):.2f} s, one call "
            f"{statistics.median(r['one'] for r in rows) / len(images):.2f} s"
        ),
        "",
        (
            f"best of each (the least disturbed run): separate {min(r['separate'] for r in rows):.2f} s, one call "
            f"{min(r['one'] for r in rows):.2f} s: "
            f"{min(r['separate'] for r in rows) / min(r['one'] for r in rows):.2f}x"
        ),
    ]
    return "\n".join(lines) + "\n"


TARGET_MARGIN = 0.3  # seconds the whole command may take beyond import torch + the encode itself (issue 21)

WARM_ENCODE = """
import sys, time, statistics
import lcf
from PIL import Image
image = Image.open(sys.argv[1]); image.load()
codec = lcf.Codec(sys.argv[2] if len(sys.argv) > 2 else None)
codec.encode(image, 4.0)  # the first encode of a process pays its warm-ups; the target counts the coding only
times, cpus = [], []
for _ in range(3):
    start, cpu = time.perf_counter(), time.process_time()
    codec.encode(image, 4.0)
    times.append(time.perf_counter() - start); cpus.append(time.process_time() - cpu)
print(statistics.median(times), statistics.median(cpus))
"""


def measure_single(image: Path, rounds: int, extra: list[str]) -> list[dict[str, float]]:
    """Per round, interleaved (the order rotates): the whole ``lcf encode`` from the shell, ``import torch`` alone,
    and the warm in-process encode (median of 3 after a first)."""
    lcf = lcf_command()
    weights = extra[1:] if extra else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(rounds):
            steps = {
                "shell": lambda out=Path(tmp) / f"{k}.lcf": _timed_one(
                    [*lcf, "encode", str(image), "-o", str(out), *extra]
                ),
                "torch": lambda: _timed_one([sys.executable, "-c", "import torch"]),
                "warm": lambda: _warm_encode(image, weights),
            }
            names = list(steps)
            names = names[k % 3 :] + names[: k % 3]
            row: dict[str, float] = {"round": k + 1}
            for name in names:
                seconds, cpu, before, after = steps[name]()
                row[name], row[f"{name}_cpu"], row[f"{name}_load"] = seconds, cpu, max(before, after)
            row["budget"] = row["torch"] + row["warm"] + TARGET_MARGIN
            row["ratio"] = row["shell"] / row["budget"]
            row["cpu_ratio"] = row["shell_cpu"] / (row["torch_cpu"] + row["warm_cpu"] + TARGET_MARGIN)
            print(
                f"round {k + 1}: shell {row['shell']:.2f} s, import torch {row['torch']:.2f} s, warm encode "
                f"{row['warm']:.2f} s -> ratio {row['ratio']:.2f}, CPU ratio {row['cpu_ratio']:.2f} "
                f"(load {row['shell_load']:.1f})",
                flush=True,
            )
            rows.append(row)
    return rows


def _timed_one(command: list[str]) -> tuple[float, float, float, float]:
    """(wall seconds, CPU seconds of the process, load before, load after) of ``command``, which must succeed."""
    import resource

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    load_before, cpu_before, start = os.getloadavg()[0], cpu(), time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.decode()}")
    return time.perf_counter() - start, cpu() - cpu_before, load_before, os.getloadavg()[0]


def _warm_encode(image: Path, weights: list[str]) -> tuple[float, float, float, float]:
    load_before = os.getloadavg()[0]
    result = subprocess.run(
        [sys.executable, "-c", WARM_ENCODE, str(image), *weights], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"the warm encode failed: {result.stderr}")
    wall, cpu = map(float, result.stdout.split()[-2:])
    return wall, cpu, load_before, os.getloadavg()[0]


def report_single(rows: list[dict[str, float]], image: Path, command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        (
            f"{image.name}, {os.cpu_count()} CPUs; wall seconds of one `lcf encode {image.name} -o X.lcf` from the "
            "shell "
            f"(CPU = user + system), of `python -c 'import torch'`, and of one encode in a warm process (median of 3 "
            f"after a first); budget = import torch + warm encode + {TARGET_MARGIN} s; ratio = shell / budget (<= 1: "
            "target met); CPU ratio = the same with CPU seconds (user + system; a loaded machine inflates them much "
            "less); "
            "load = the higher 1-minute load average before/after the shell call"
        ),
        "",
        "| round | shell s | CPU s | load | import torch s | CPU s | warm encode s | CPU s | budget s | ratio "
        "| CPU ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['round']:.0f} | {row['shell']:.2f} | {row['shell_cpu']:.2f} | {row['shell_load']:.1f} | "
            f"{row['torch']:.2f} | {row['torch_cpu']:.2f} | {row['warm']:.2f} | {row['warm_cpu']:.2f} | "
            f"{row['budget']:.2f} | {row['ratio']:.2f} | {row['cpu_ratio']:.2f} |"
        )
    ratios = [row["ratio"] for row in rows]
    median = statistics.median(ratios)
    cpu_median = statistics.median(row["cpu_ratio"] for row in rows)
    lines += [
        "",
        (
            f"median ratio {median:.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}), CPU {cpu_median:.2f}: target "
            f"{'met' if median <= 1 else 'not met'}; medians: shell "
            f"{statistics.median(r['shell'] for r in rows):.2f} s, import torch "
            f"{statistics.median(r['torch'] for r in rows):.2f} s, warm encode "
            f"{statistics.median(r['warm'] for r in rows):.2f} s"
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help="folder of PNG images (the first --count)")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", type=Path, help="weights folder (default: the bundled weights)")
    parser.add_argument("--out", type=Path, help="write the markdown table here too")
    parser.add_argument("--single", type=Path, help="measure the start-up target on this one image instead")
    args = parser.parse_args(argv)
    if args.single:
        extra = ["--weights", str(args.weights)] if args.weights else []
        rows = measure_single(args.single, args.rounds, extra)
        argv = sys.argv[1:] if argv is None else argv
        text = report_single(rows, args.single, " ".join(["python benchmarks/cli_startup.py", *argv]))
        print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        return 0
    if args.images is None:
        parser.error("--images FOLDER (or --single IMAGE) is needed")
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
