"""Where decoding time goes: entropy decoding (bytes -> ẑ, ŷ: the integer networks and the rANS streams) against the
whole decode (plus g_s and the conversion to pixels), per Kodak-sized image on this machine's CPU.

    python benchmarks/decode_split.py --images ../shared/data/kodak --max-images 4 --qualities 1,4,7 --threads 2

Each file is encoded once, then decoded --repeats times; the best time of each part is kept (robust to a busy
machine). Uses only ``Codec.encode``, ``Codec.decode_symbols`` and ``Codec.decode``, so it also runs against older
checkouts of lcf (``PYTHONPATH=<checkout>``) to compare them on the same machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lcf.bench.scripts import add_image_options, command_line, images_of, write_fragment
from lcf.codec import Codec
from lcf.container import read_container


def best(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    add_image_options(p, qualities=(1, 4, 7))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/decode_split.md"))
    args = p.parse_args(argv)
    files = images_of(args)
    start = time.perf_counter()
    codec = Codec(args.weights)
    md = [
        f"Command: `{command_line('decode_split', argv)}`; model id {codec.weights.model_id.hex()}; "
        f"{len(files)} images of {args.images.name}; best of {args.repeats}, mean over images.",
        "",
        "| quality | bytes per image | entropy decoding s | whole decode s |",
        "|---:|---:|---:|---:|",
    ]
    for q in args.qualities:
        sizes, symbols, whole = [], [], []
        for path in files:
            data = codec.encode(str(path), q)
            container = read_container(data)
            sizes.append(len(data))
            symbols.append(best(args.repeats, lambda c=container: codec.decode_symbols(c)))
            whole.append(best(args.repeats, lambda d=data: codec.decode(d)))
        n = len(files)
        md.append(f"| {q:g} | {sum(sizes) / n:,.0f} | {sum(symbols) / n:.3f} | {sum(whole) / n:.3f} |")
    md += ["", f"Measurement wall time {time.perf_counter() - start:.0f} s."]
    write_fragment(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
