"""Rate control on a folder of images: how close ``--target-size`` and ``--target-psnr`` land, and what they cost.

    python benchmarks/rate_control.py --images DIR [--max-images N] [--sizes 12KB,18KB,24KB] [--psnrs 27,28,29]
                                      [--effort 0] [--weights DIR] [--threads N] [--out FILE] [--no-check]

For each image it times one plain encode (``Codec.encode`` of the loaded image at quality 4, after a warm-up encode
and decode, so that no target pays for loading the decoder that PSNR probes run), then runs
:func:`lcf.ratecontrol.encode_to_target` for every size and PSNR target and records the quality chosen, the number of
probes, the time (wall and CPU time of the process, both against the plain encode's, as median / mean
(max) over the images; CPU time and the median are the steadier on a shared machine), and the error:

* size targets: how far below the target the file lands, (target − bytes) / target (never negative: a size target
  is a limit);
* PSNR targets: how far above the target the decoded PSNR lands, PSNR − target in dB (never negative).

Targets that no quality meets (a size below quality 1's file, a PSNR above quality 7's) and targets met at an end of
the quality range (quality 7 fits the size, quality 1 reaches the PSNR) are counted apart: the error there says
nothing about the search. Unless ``--no-check``, each file is also compared with a plain encode at the chosen quality
(they must be byte-identical). Writes a markdown fragment (default ``benchmarks/results/rate_control.md``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from lcf.bench.scripts import add_image_options, command_line, floats, images_of, write_fragment
from lcf.codec import Codec
from lcf.errors import UnreachableTargetError
from lcf.image import load_image
from lcf.ratecontrol import Target, encode_to_target, parse_size


def sizes(text: str) -> list[int]:
    """'12KB,18KB' -> [12000, 18000]"""
    try:
        return [parse_size(t) for t in text.split(",") if t.strip()]
    except Exception as exc:  # noqa: BLE001 (an argparse message, not a traceback)
        raise argparse.ArgumentTypeError(str(exc)) from None


def measure(codec: Codec, files: list[Path], targets: list[Target], effort: int, check: bool) -> tuple[list, dict]:
    rows, plain_seconds = [], {}
    for path in files:
        prepared = load_image(path)
        codec.decode(codec.encode(prepared, 4.0))  # warm-up: allocator, encoder and recommended decoder's weights
        start, cpu = time.perf_counter(), time.process_time()
        codec.encode(prepared, 4.0, None, effort)
        plain_seconds[path.name] = (time.perf_counter() - start, time.process_time() - cpu)
        for target in targets:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                result = encode_to_target(codec, prepared, target, effort=effort)
            except UnreachableTargetError as exc:
                rows.append(
                    {
                        "image": path.name,
                        "target": target,
                        "outcome": "unreachable",
                        "message": str(exc),
                        "seconds": (time.perf_counter() - start, time.process_time() - cpu),
                    }
                )
                continue
            seconds = (time.perf_counter() - start, time.process_time() - cpu)
            if check and result.data != codec.encode(prepared, result.quality, None, effort):
                raise SystemExit(
                    f"{path.name} {target.describe()}: not byte-identical to a plain encode at quality {result.quality}"
                )
            end = (target.kind == "size" and result.quality == 7.0) or (target.kind == "psnr" and result.quality == 1)
            error = (
                (target.value - result.bytes) / target.value if target.kind == "size" else result.psnr - target.value
            )
            rows.append(
                {
                    "image": path.name,
                    "target": target,
                    "outcome": "end" if end else "met",
                    "error": error,
                    "quality": result.quality,
                    "probes": len(result.probes),
                    "seconds": seconds,
                    "bytes": result.bytes,
                    "psnr": result.psnr,
                }
            )
        print(f"{path.name}: plain {plain_seconds[path.name][0]:.2f} s", file=sys.stderr, flush=True)
    return rows, plain_seconds


def table(rows: list[dict], plain_seconds: dict, targets: list[Target]) -> list[str]:
    out = [
        "| target | met inside 1..7 | met at an end | unreachable | mean error | worst error | probes mean / max "
        "| time / plain encode: wall, median / mean (max) | CPU, median / mean (max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for target in targets:
        mine = [r for r in rows if r["target"] == target]
        met = [r for r in mine if r["outcome"] == "met"]
        ends = sum(r["outcome"] == "end" for r in mine)
        unreachable = sum(r["outcome"] == "unreachable" for r in mine)
        searched = [r for r in mine if r["outcome"] != "unreachable"]
        if target.kind == "size":
            fmt = lambda e: f"{100 * e:.3f} % under"  # noqa: E731
        else:
            fmt = lambda e: f"+{e:.4f} dB"  # noqa: E731
        errors = [r["error"] for r in met]
        mean = fmt(statistics.fmean(errors)) if errors else "—"
        worst = fmt(max(errors)) if errors else "—"
        probes = [r["probes"] for r in searched]
        wall = [r["seconds"][0] / plain_seconds[r["image"]][0] for r in mine]
        cpu = [r["seconds"][1] / plain_seconds[r["image"]][1] for r in mine]
        out.append(
            f"| {target.describe()} | {len(met)} | {ends} | {unreachable} | {mean} | {worst} | "
            f"{statistics.fmean(probes) if probes else 0:.1f} / {max(probes, default=0)} | "
            f"{ratios(wall)} | {ratios(cpu)} |"
        )
    return out


def ratios(values: list[float]) -> str:
    """'median / mean (max)': the median is the one a busy machine's outliers (one slow encode) barely move."""
    return f"{statistics.median(values):.2f} / {statistics.fmean(values):.2f} ({max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    add_image_options(p)
    p.add_argument("--sizes", type=sizes, default=sizes("12KB,18KB,24KB"), help="size targets (default 12KB,18KB,24KB)")
    p.add_argument("--psnrs", type=floats, default=[27.0, 28.0, 29.0], help="PSNR targets in dB (default 27,28,29)")
    p.add_argument("--effort", type=int, default=0, help="encoder effort of the targets and of the plain encode")
    p.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="do not compare each file with a plain encode at the chosen quality",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rate_control.md"))
    args = p.parse_args(argv)
    files = images_of(args)
    start = time.perf_counter()
    codec = Codec(args.weights)
    targets = [Target("size", s) for s in args.sizes] + [Target("psnr", v) for v in args.psnrs]
    rows, plain_seconds = measure(codec, files, targets, args.effort, args.check)
    plain = statistics.fmean(wall for wall, _ in plain_seconds.values())
    checked = "each file byte-identical to a plain encode at its quality" if args.check else "files not checked"
    md = [
        f"Command: `{command_line('rate_control', argv)}`; model id {codec.weights.model_id.hex()}; "
        f"{len(files)} images of {args.images.name}; effort {args.effort}; one plain encode (quality 4) "
        f"{plain:.2f} s on average; {checked}.",
        "",
        *table(rows, plain_seconds, targets),
        "",
        f"Measurement wall time {time.perf_counter() - start:.0f} s.",
    ]
    write_fragment(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
