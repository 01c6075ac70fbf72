"""Encode and decode time and peak memory per image size, with and without the CPU settings for large images.

    python benchmarks/large_images.py --image ../shared/data/kodak/kodim01.png --sizes 768x512,2048x1536,4032x3024 \
        --quality 4 --threads 2 --repeats 2

The image is resized (Lanczos) to each size: a 12-megapixel phone photo and a Kodak image cost the same per pixel
in the transforms whatever they show; the entropy coding depends on the content a little. Every measurement runs in
a fresh process (so that its peak resident memory is its own and PyTorch reads the huge-page setting anew), with
these settings (``lcf.hugepages``, ``lcf.resources.synthesis_memory_format``):

- ``before``: no huge pages (``THP_MEM_ALLOC_ENABLE=0``), g_s in the default layout, the whole image at once;
- ``huge pages``: huge pages only;   ``g_s channels_last``: the layout only;
- ``after``: both (lcf from commit f3a9966 until g_s ran in tiles);
- ``tiles``: both, and g_a's first and g_s's last modules in tiles (``Codec.analysis_tile``,
  ``Codec.synthesis_tile``, ``lcf.nn.tiling``), the whole g_s at once (lcf until the blocks below);
- ``blocks``: tiles, and the whole g_s in blocks of 128 latent pixels with its reach around each, written into the
  uint8 output block by block, glibc's mmap threshold fixed at 1 MiB (``Codec.synthesis_block``,
  ``lcf.resources.bound_heap``): what lcf does now on a Linux CPU.

Times are ``Codec.encode`` (image file -> bytes) and ``Codec.decode`` (bytes -> pixels) inside the process, best of
``--repeats``; loading PyTorch and the weights, and writing a PNG, are not in them. Memory is the process's peak
resident set (``ru_maxrss``), weights and PyTorch included. ``--split`` adds the entropy decoding alone
(``Codec.decode_symbols``: bytes -> ẑ, ŷ, in a process of its own) with its time and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lcf.bench.scripts import command_line, write_fragment

CONFIGS = {  # name: (huge pages, g_s channels_last, g_s tiles, g_s in blocks)
    "before": (False, False, False, False),
    "huge pages": (True, False, False, False),
    "g_s channels_last": (False, True, False, False),
    "after": (True, True, False, False),
    "tiles": (True, True, True, False),
    "blocks": (True, True, True, True),
}

CHILD = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
import torch
import lcf.codec as codec_module
import lcf.resources
from lcf.container import read_container
if not args["channels_last"]:
    lcf.resources.synthesis_memory_format = lambda device: torch.contiguous_format
torch.set_num_threads(args["threads"])
codec = codec_module.Codec(args["weights"])
if not args["tiles"]:
    codec.analysis_tile = codec.synthesis_tile = None
if not args["blocks"]:
    codec.synthesis_block = None
times = []
for _ in range(args["repeats"]):
    start = time.perf_counter()
    if args["op"] == "encode":
        data = codec.encode(args["src"], args["quality"])
    elif args["op"] == "decode":
        codec.decode(open(args["src"], "rb").read())
    else:  # the entropy decoding alone: bytes -> ẑ, ŷ
        codec.decode_symbols(read_container(open(args["src"], "rb").read()))
    times.append(time.perf_counter() - start)
if args["op"] == "encode":
    open(args["dst"], "wb").write(data)
with open(args["report"], "w") as f:
    json.dump({"seconds": min(times), "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}, f)
"""


def sizes(text: str) -> list[tuple[int, int]]:
    try:
        return [(int(w), int(h)) for w, h in (s.lower().split("x") for s in text.split(",") if s.strip())]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 768x512,4032x3024, got {text!r}") from None


def run_child(op: str, config: str, src: Path, dst: Path, args: argparse.Namespace, work: Path) -> dict:
    huge, channels_last, tiles, blocks = CONFIGS[config]
    report = work / "report.json"
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1" if huge else "0"}
    child = {
        "op": op,
        "src": str(src),
        "dst": str(dst),
        "quality": args.quality,
        "repeats": args.repeats,
        "threads": args.threads,
        "weights": args.weights,
        "channels_last": channels_last,
        "tiles": tiles,
        "blocks": blocks,
        "report": str(report),
    }
    subprocess.run([sys.executable, "-c", CHILD, json.dumps(child)], env=env, check=True)
    return json.loads(report.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", type=Path, required=True, help="a photo, resized to each size")
    p.add_argument("--sizes", type=sizes, default=sizes("768x512,2048x1536,4032x3024"))
    p.add_argument("--quality", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of: {', '.join(CONFIGS)}")
    p.add_argument("--weights", default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--split", action="store_true", help="also time the entropy decoding alone (decode_symbols)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/large_images.md"))
    args = p.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    from PIL import Image

    try:
        source = Image.open(args.image).convert("RGB")
    except OSError as exc:
        raise SystemExit(f"cannot read {args.image}: {exc}") from None
    start = time.perf_counter()
    md = [
        (
            f"Command: `{command_line('large_images', argv)}`; {args.image.name} resized to each size, quality "
            f"{args.quality:g}, {args.threads} threads, best of {args.repeats}; a fresh process per cell."
        ),
        "",
        (
            "| size | megapixels | setting | encode s | encode peak MiB | decode s | decode peak MiB | bytes |"
            + (" entropy decoding s | its peak MiB |" if args.split else "")
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|" + ("---:|---:|" if args.split else ""),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for w, h in args.sizes:
            src = work / f"{w}x{h}.png"
            source.resize((w, h), Image.LANCZOS).save(src, compress_level=1)
            rows = {}
            for config in configs:  # one setting after the other, per size
                dst = work / f"{w}x{h}-{config}.lcf"
                enc = run_child("encode", config, src, dst, args, work)
                dec = run_child("decode", config, dst, dst, args, work)
                sym = run_child("symbols", config, dst, dst, args, work) if args.split else None
                rows[config] = (enc, dec, sym, dst.stat().st_size)
                print(f"{w}x{h} {config}: encode {enc['seconds']:.2f} s, decode {dec['seconds']:.2f} s", flush=True)
            for config, (enc, dec, sym, size) in rows.items():
                md.append(
                    f"| {w}x{h} | {w * h / 1e6:.1f} | {config} | {enc['seconds']:.2f} | {enc['peak_mib']:,.0f} "
                    f"| {dec['seconds']:.2f} | {dec['peak_mib']:,.0f} | {size:,} |"
                    + (f" {sym['seconds']:.2f} | {sym['peak_mib']:,.0f} |" if sym else "")
                )
    md += ["", f"Measurement wall time {time.perf_counter() - start:.0f} s."]
    write_fragment(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
