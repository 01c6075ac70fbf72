"""Do decoded pixels depend on the number of torch threads, and what does making them not cost?

    python benchmarks/thread_determinism.py --images ../shared/data/kodak --max-images 4 --qualities 4 \
        --thread-counts 1,2,3,4 --repeats 5

Each image is encoded once. **Determinism**: every decoder of the weights decodes every file in a fresh process per
thread count (``torch.set_num_threads``), under each configuration; the table counts the samples that differ from
the 1-thread decode. **Time**: the whole ``Codec.decode`` of each file in this process (``--threads``, default
torch's), the configurations interleaved (rotated each repeat, so a busy shared machine slows them alike), best of
``--repeats`` per file, mean over files, as wall time and as the CPU time of the process (all its threads; steadier
than wall time when other jobs share the cores). ``--timing-only`` skips the determinism check. Configurations:

* ``before``: the first layer of g_s reads the coded channels in the default (NCHW) layout, as lcf did before
  the fix (``lcf.nn.students._layout`` patched); oneDNN's convolution over e.g. 83 input channels then sums in an
  order that depends on the thread count.
* ``after``: lcf as it is (the coded channels keep y's channels_last layout).
* ``native``: ``after`` with oneDNN switched off (``torch.backends.mkldnn``): PyTorch's own convolutions.
* ``one-thread``: ``after`` on one thread (a fixed intra-op thread count).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

import lcf.nn.students as students
from lcf.bench.scripts import add_image_options, command_line, images_of, write_fragment
from lcf.codec import Codec

CONFIGS = ("before", "after", "native", "one-thread")


@contextlib.contextmanager
def configured(config: str) -> Iterator[None]:
    layout, threads, mkldnn = students._layout, torch.get_num_threads(), torch.backends.mkldnn.enabled
    try:
        if config == "before":
            students._layout = lambda x: torch.contiguous_format
        if config == "one-thread":
            torch.set_num_threads(1)
        torch.backends.mkldnn.enabled = config != "native"
        yield
    finally:
        students._layout = layout
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = mkldnn


def worker(spec: dict) -> None:
    """Decode spec["files"] with spec["decoder"] on spec["threads"] threads; save the pixels to spec["out"]."""
    torch.set_num_threads(spec["threads"])
    codec = Codec(spec["weights"])
    with configured(spec["config"]):
        arrays = {Path(f).stem: codec.decode(Path(f).read_bytes(), spec["decoder"]).rgb for f in spec["files"]}
    np.savez(spec["out"], **arrays)


def determinism(
    files: list[Path], weights: str | None, configs: list[str], decoders: list[str], thread_counts: list[int], tmp: Path
) -> list[str]:
    rows = [
        "| configuration | decoder | threads | samples differing from 1 thread | max abs difference |",
        "|---|---|---:|---:|---:|",
    ]
    for config in configs:
        for decoder in decoders:
            reference = None
            for n in sorted(set(thread_counts) | {1}):
                out = tmp / f"{config}-{decoder}-{n}.npz"
                spec = {
                    "config": config,
                    "decoder": decoder,
                    "threads": n,
                    "weights": weights,
                    "files": [str(f) for f in files],
                    "out": str(out),
                }
                subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], check=True)
                with np.load(out) as z:
                    pixels = {k: z[k].astype(np.int16) for k in z.files}
                if reference is None:
                    reference = pixels
                    continue
                differing = sum(int((pixels[k] != reference[k]).sum()) for k in pixels)
                worst = max(int(np.abs(pixels[k] - reference[k]).max()) for k in pixels)
                rows.append(
                    f"| {config} | {decoder} | {n} | {differing:,} of "
                    f"{sum(a.size for a in pixels.values()):,} | {worst} |"
                )
    return rows


def timing(codec: Codec, encoded: list[bytes], configs: list[str], repeats: int) -> list[str]:
    """Best wall and best CPU time (all threads of this process) per file and configuration."""
    wall = {c: [float("inf")] * len(encoded) for c in configs}
    cpu = {c: [float("inf")] * len(encoded) for c in configs}
    for c in configs:  # warm-up: weights loaded, oneDNN primitives created
        with configured(c):
            codec.decode(encoded[0])
    for r in range(repeats):
        for c in configs[r % len(configs) :] + configs[: r % len(configs)]:
            with configured(c):
                for i, data in enumerate(encoded):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    codec.decode(data)
                    wall[c][i] = min(wall[c][i], time.perf_counter() - start)
                    cpu[c][i] = min(cpu[c][i], time.process_time() - start_cpu)
    base, base_cpu = sum(wall[configs[0]]), sum(cpu[configs[0]])
    rows = [
        f"| configuration | decode s per image (wall) | vs {configs[0]} | CPU s per image | vs {configs[0]} |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in configs:
        w, t = sum(wall[c]), sum(cpu[c])
        rows.append(
            f"| {c} | {w / len(encoded):.3f} | {100 * (w / base - 1):+.1f} % | {t / len(encoded):.3f} | "
            f"{100 * (t / base_cpu - 1):+.1f} % |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(json.loads(argv[1]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    add_image_options(p, qualities=(4,))
    p.add_argument("--thread-counts", default="1,2,3,4", help="thread counts of the determinism check")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"some of {','.join(CONFIGS)}")
    p.add_argument("--decoders", default=None, help="decoders of the determinism check (default: all)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--timing-only", action="store_true", help="skip the determinism check")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/thread_determinism.md"))
    args = p.parse_args(argv)
    files = images_of(args)
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configurations {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    start = time.perf_counter()
    codec = Codec(args.weights)
    decoders = args.decoders.split(",") if args.decoders else codec.decoder_names
    weights = None if args.weights is None else str(args.weights.resolve())
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        encoded, lcf_files = [], []
        for path in files:
            for q in args.qualities:
                data = codec.encode(str(path), q)
                encoded.append(data)
                lcf_files.append(tmp / f"{path.stem}-q{q:g}.lcf")
                lcf_files[-1].write_bytes(data)
        thread_counts = [int(t) for t in args.thread_counts.split(",") if t]
        checked = [c for c in configs if c in ("before", "after", "native")]
        det = [] if args.timing_only else determinism(lcf_files, weights, checked, decoders, thread_counts, tmp)
    times = timing(codec, encoded, configs, args.repeats)
    md = [
        f"Command: `{command_line('thread_determinism', argv)}`; model id {codec.weights.model_id.hex()}; "
        f"{len(files)} images of {args.images.name} at qualities {','.join(f'{q:g}' for q in args.qualities)}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads for the timings.",
        "",
        *det,
        "",
        f"Decode time, best of {args.repeats} per file (configurations interleaved), mean over files:",
        "",
        *times,
        "",
        f"Measurement wall time {time.perf_counter() - start:.0f} s.",
    ]
    write_fragment(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
