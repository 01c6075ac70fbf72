"""Coded size against the model's estimated rate (issue 4: "the coded size within 1 % of the model's estimate").

    python benchmarks/rate_vs_estimate.py --weights DIR --images DIR [--max-images N] [--qualities 1,4,7]
                                          [--threads N] [--out FILE]

For each image and quality, four sizes in bits:

1. **float model**: -log2 of the likelihoods of the network in float32 (``LcfModel.forward`` in eval mode: ŷ and ẑ
   rounded), over every latent element, the all-zero channels included: what training minimises;
2. **integer tables**: what the entropy layer's integer probability tables predict for the symbols it codes
   (``Codec.encode_with_stats``: the all-zero channels are skipped through the channel bitmap);
3. **streams**: the bytes of the HYPR, ANCH and NANC streams (constriction's output, with each stream's 24-bit end
   marker);
4. **file**: the whole ``.lcf`` file (signature, chunk framing and CRCs, HEAD, CMAP).

It prints and writes (default ``benchmarks/results/rate_vs_estimate.md``) the mean of each per quality and the
relative differences: tables vs float (quantisation of the probabilities), streams vs tables (the coder's overhead),
file vs float (everything).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lcf.bench.runner import list_images
from lcf.codec import PAD, Codec
from lcf.image import load_image


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def float_model_bits(codec: Codec, rgb: np.ndarray, quality: float) -> float:
    """-log2 p of the float network for this image, padded as the codec pads it."""
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].to(torch.float32).div(255.0)
    h, w = x.shape[-2:]
    hp, wp = -(-h // PAD) * PAD, -(-w // PAD) * PAD
    if (hp, wp) != (h, w):
        x = F.pad(x, (0, wp - w, 0, hp - h), mode="replicate")
    with torch.inference_mode():
        out = codec.model(x, torch.tensor([quality]))
    return float(sum(-torch.log2(lik.double()).sum() for lik in out["likelihoods"].values()))


def measure(codec: Codec, files: list[Path], qualities: list[float]) -> list[dict]:
    codec._ensure_encoder()
    codec._ensure_decoder(codec.weights.default_decoder)
    rows = []
    for path in files:
        prepared = load_image(path)
        for q in qualities:
            data, stats = codec.encode_with_stats(prepared, q)
            rows.append({"image": path.name, "quality": q,
                         "float": float_model_bits(codec, prepared.rgb, q),
                         "tables": float(sum(stats["bits_estimated"].values())),
                         "streams": 8.0 * sum(stats["stream_bytes"].values()),
                         "file": 8.0 * len(data)})
        print(f"{path.name} done", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], qualities: list[float]) -> list[str]:
    out = ["| quality | float model (bytes) | integer tables | streams | file | tables vs float | streams vs tables "
           "| file vs float |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for q in [*qualities, None]:
        mine = [r for r in rows if q is None or r["quality"] == q]
        m = {k: float(np.mean([r[k] for r in mine])) / 8 for k in ("float", "tables", "streams", "file")}
        label = f"{q:g}" if q is not None else "all"
        out.append(f"| {label} | {m['float']:,.0f} | {m['tables']:,.0f} | {m['streams']:,.0f} | {m['file']:,.0f} | "
                   f"{(m['tables'] / m['float'] - 1) * 100:+.2f}% | {(m['streams'] / m['tables'] - 1) * 100:+.2f}% | "
                   f"{(m['file'] / m['float'] - 1) * 100:+.2f}% |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--images", required=True, type=Path, help="folder of test images (e.g. the 24 Kodak PNGs)")
    p.add_argument("--max-images", type=int, default=None, help="use only the first N images (sorted by name)")
    p.add_argument("--qualities", type=_floats, default=[1, 2, 3, 4, 5, 6, 7], help="quality levels (default 1..7)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rate_vs_estimate.md"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    files = list_images(args.images)[: args.max_images]
    start = time.perf_counter()
    codec = Codec(args.weights)
    rows = measure(codec, files, args.qualities)
    command = "python benchmarks/rate_vs_estimate.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    md = [f"Command: `{command}`; model id {codec.weights.model_id.hex()}; {len(files)} images of "
          f"{args.images.name}; mean bytes per image.", "", *table(rows, args.qualities), "",
          f"Measurement wall time {time.perf_counter() - start:.0f} s."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
