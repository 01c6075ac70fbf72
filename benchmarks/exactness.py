"""Bit-exact round trips with a weights folder: every quality level, every image of a folder.

    python benchmarks/exactness.py [--weights DIR] --images DIR [--max-images N] [--qualities 1,2,3,4,5,6,7]

For each image and quality: encode; decode the streams twice, once with 1 torch thread and once with 2; both must
give exactly the encoder's symbols (ẑ, ŷ and the channel bitmap), and decoding the whole file twice must give the
same pixels. Exits 1 and names the first mismatch otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from lcf.bench.scripts import add_image_options, images_of
from lcf.codec import Codec
from lcf.container import read_container
from lcf.image import load_image


def check(codec: Codec, path: Path, quality: float) -> str | None:
    """None when the round trip is exact, else what differs."""
    prepared, q, encoded = codec.analyse(load_image(path), quality)
    data = codec.encode(prepared, q)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            decoded = codec.decode_symbols(read_container(data))
            for name in ("z_hat", "y_hat", "coded"):
                if not np.array_equal(getattr(decoded, name), getattr(encoded, name)):
                    return f"{name} differs from the encoder's with {threads} thread(s)"
    finally:
        torch.set_num_threads(before)
    if not np.array_equal(codec.decode(data).rgb, codec.decode(data).rgb):
        return "two decodes of the same file give different pixels"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    add_image_options(p)
    args = p.parse_args(argv)
    files = images_of(args)
    codec = Codec(args.weights)
    for path in files:
        for q in args.qualities:
            problem = check(codec, path, q)
            if problem is not None:
                print(f"NOT EXACT: {path.name} quality {q:g}: {problem}", file=sys.stderr)
                return 1
        print(f"{path.name}: qualities {', '.join(f'{q:g}' for q in args.qualities)} exact", flush=True)
    print(f"all {len(files) * len(args.qualities)} round trips bit-exact (model id {codec.weights.model_id.hex()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
