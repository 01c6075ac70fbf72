"""What storing the weights in float16 costs: two weights folders of one checkpoint, compared on the same images.

    python -m lcf.train export --run runs/cpu --out weights                  # float32 (or the shipped folder)
    python -m lcf.train export --run runs/cpu --out /tmp/w16 --dtype float16
    python benchmarks/weights_precision.py --a weights --b /tmp/w16 --images DIR [--max-images N]
                                           [--qualities 1,2,3,4,5,6,7] [--out FILE]

Each image is encoded and decoded with each folder's own encoder, entropy model and default decoder (the model
identifiers differ, so files never cross). Per quality level: mean bpp (file bytes) and mean PSNR (RGB) of both, and
their differences; over the curve: BD-PSNR (dB at equal rate) and BD-rate of B against A (lcf.bench.bdrate, pchip).
The weights card's rule: ship float16 when it costs under 0.02 dB at equal rate. Writes a markdown fragment
(default ``benchmarks/results/weights_precision.md``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from lcf.bench.bdrate import bd_quality, bd_rate
from lcf.bench.metrics import psnr
from lcf.bench.scripts import add_image_options, command_line, images_of, write_fragment
from lcf.codec import Codec
from lcf.image import load_image

THRESHOLD_DB = 0.02


def folder_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.glob("*.safetensors"))


def measure(codec: Codec, files: list[Path], qualities: list[float]) -> dict[float, tuple[float, float]]:
    """{quality: (mean bpp, mean PSNR)} over ``files``."""
    points: dict[float, list[tuple[float, float]]] = {q: [] for q in qualities}
    for path in files:
        prepared = load_image(path)
        pixels = prepared.rgb.shape[0] * prepared.rgb.shape[1]
        for q in qualities:
            data = codec.encode(prepared, q)
            points[q].append((len(data) * 8 / pixels, psnr(prepared.rgb, codec.decode(data).rgb)))
        print(f"{codec.weights.root}: {path.name} done", file=sys.stderr, flush=True)
    return {q: (float(np.mean([p[0] for p in v])), float(np.mean([p[1] for p in v]))) for q, v in points.items()}


def report(a: Path, b: Path, pa: dict, pb: dict, n_images: int, image_dir: Path) -> list[str]:
    qs = sorted(pa)
    label_a, label_b = (Codec(r).weights.manifest.info.get("storage_dtype", "float32") for r in (a, b))
    rows = [
        "| quality | " + f"{label_a}: bpp / PSNR | {label_b}: bpp / PSNR | Δbpp | ΔPSNR (dB) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for q in qs:
        (ra, da), (rb, db) = pa[q], pb[q]
        rows.append(
            f"| {q:g} | {ra:.4f} / {da:.3f} | {rb:.4f} / {db:.3f} | {(rb / ra - 1) * 100:+.2f}% | {db - da:+.4f} |"
        )
    rates_a, psnr_a = [pa[q][0] for q in qs], [pa[q][1] for q in qs]
    rates_b, psnr_b = [pb[q][0] for q in qs], [pb[q][1] for q in qs]
    bd_db = bd_quality(rates_a, psnr_a, rates_b, psnr_b)
    bd_pct = bd_rate(rates_a, psnr_a, rates_b, psnr_b)
    verdict = "within" if abs(bd_db) < THRESHOLD_DB or bd_db > 0 else "over"
    return [
        f"{n_images} images of {image_dir.name}; A = `{a}` ({label_a}, {folder_bytes(a) / 1e6:.1f} MB of "
        f"safetensors), B = `{b}` ({label_b}, {folder_bytes(b) / 1e6:.1f} MB).",
        "",
        *rows,
        "",
        f"B against A: BD-PSNR {bd_db:+.4f} dB, BD-rate {bd_pct:+.3f}% (pchip); {verdict} the "
        f"{THRESHOLD_DB} dB budget of the weights card.",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", required=True, type=Path, help="reference weights folder (float32)")
    p.add_argument("--b", required=True, type=Path, help="weights folder to compare (float16)")
    add_image_options(p)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/weights_precision.md"))
    args = p.parse_args(argv)
    files = images_of(args)
    start = time.perf_counter()
    pa = measure(Codec(args.a), files, args.qualities)
    pb = measure(Codec(args.b), files, args.qualities)
    md = [
        f"Command: `{command_line('weights_precision', argv)}`",
        "",
        *report(args.a, args.b, pa, pb, len(files), args.images),
        "",
        f"Measurement wall time {time.perf_counter() - start:.0f} s.",
    ]
    write_fragment(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
