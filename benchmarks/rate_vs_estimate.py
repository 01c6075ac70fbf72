"""Coded size against the model's estimated rate (issue 4: "the coded size within 1 % of the model's estimate").

    python benchmarks/rate_vs_estimate.py --weights DIR --images DIR [--max-images N] [--qualities 1,4,7]
                                          [--threads N] [--out FILE]

For each image and quality, these sizes in bits:

1. **float ŷ**: -log2 of the likelihoods of ŷ under the network's float32 mixtures (``LcfModel.forward`` in eval
   mode), over every latent element, the all-zero channels included: what training minimises. (A weights folder
   holds the density of ẑ only as integer tables, so ẑ has no float column: its float density stays in the
   training checkpoint.)
2. **tables ŷ**, **tables ẑ**: what the entropy layer's integer probability tables predict for the symbols it codes
   (``Codec.encode_with_stats``: all-zero channels are skipped through the channel bitmap);
3. **streams**: the bytes of the HYPR, ANCH and NANC streams (constriction's output, with each stream's 24-bit end
   marker);
4. **file**: the whole ``.lcf`` file (signature, chunk framing and CRCs, HEAD, CMAP).

It prints and writes (default ``benchmarks/results/rate_vs_estimate.md``) the mean of each per quality and the
relative differences: ŷ tables vs float (quantisation of the probabilities), streams vs tables (the coder's
overhead), file vs the model's estimate (float ŷ + tables ẑ: everything).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lcf.bench.scripts import add_image_options, command_line, images_of, write_fragment
from lcf.codec import Codec
from lcf.container.header import PAD
from lcf.image import load_image


def float_model_bits(codec: Codec, rgb: np.ndarray, quality: float) -> float:
    """-log2 p(ŷ) of the float network for this image, padded as the codec pads it."""
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].to(torch.float32).div(255.0)
    h, w = x.shape[-2:]
    hp, wp = -(-h // PAD) * PAD, -(-w // PAD) * PAD
    if (hp, wp) != (h, w):
        x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
    with torch.inference_mode():
        out = codec.model(x, torch.tensor([quality]))
    return float(-torch.log2(out["likelihoods"]["y"].double()).sum())


def measure(codec: Codec, files: list[Path], qualities: list[float]) -> list[dict]:
    codec._ensure_encoder()
    codec._ensure_decoder(codec.weights.default_decoder)
    rows = []
    for path in files:
        prepared = load_image(path)
        for q in qualities:
            data, stats = codec.encode_with_stats(prepared, q)
            bits = stats["bits_estimated"]
            rows.append(
                {
                    "image": path.name,
                    "quality": q,
                    "float": float_model_bits(codec, prepared.rgb, q),
                    "tables_y": float(bits["anchor"] + bits["nonanchor"]),
                    "tables_z": float(bits["hyper"]),
                    "streams": 8.0 * sum(stats["stream_bytes"].values()),
                    "file": 8.0 * len(data),
                }
            )
        print(f"{path.name} done", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], qualities: list[float]) -> list[str]:
    out = [
        "| quality | float ŷ (bytes) | tables ŷ | tables ẑ | streams | file | ŷ: tables vs float "
        "| streams vs tables | file vs estimate |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for q in [*qualities, None]:
        mine = [r for r in rows if q is None or r["quality"] == q]
        m = {k: float(np.mean([r[k] for r in mine])) / 8 for k in ("float", "tables_y", "tables_z", "streams", "file")}
        tables, estimate = m["tables_y"] + m["tables_z"], m["float"] + m["tables_z"]
        label = f"{q:g}" if q is not None else "all"
        out.append(
            f"| {label} | {m['float']:,.0f} | {m['tables_y']:,.0f} | {m['tables_z']:,.0f} | "
            f"{m['streams']:,.0f} | {m['file']:,.0f} | {(m['tables_y'] / m['float'] - 1) * 100:+.2f}% | "
            f"{(m['streams'] / tables - 1) * 100:+.2f}% | {(m['file'] / estimate - 1) * 100:+.2f}% |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    add_image_options(p)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rate_vs_estimate.md"))
    args = p.parse_args(argv)
    files = images_of(args)
    start = time.perf_counter()
    codec = Codec(args.weights)
    rows = measure(codec, files, args.qualities)
    md = [
        f"Command: `{command_line('rate_vs_estimate', argv)}`; model id {codec.weights.model_id.hex()}; "
        f"{len(files)} images of {args.images.name}; mean bytes per image.",
        "",
        *table(rows, args.qualities),
        "",
        f"Measurement wall time {time.perf_counter() - start:.0f} s.",
    ]
    write_fragment(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
