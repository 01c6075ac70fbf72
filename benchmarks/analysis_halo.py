"""How wide g_a's tile halo must be: tiled latents against the whole pass, per halo, on real images.

    python benchmarks/analysis_halo.py --images ../shared/data/kodak --max-images 2 --halos 2,3,4,5,6,8 \
        [--tile 8] [--downsamplings 3] [--quality 4] [--weights DIR] [--out FILE]

g_a's deformable convolutions sample at learnt offsets, so its reach depends on the weights and the image, not on
the architecture alone (``lcf.nn.tiling.analyse_tiled``). This runs g_a's head in small tiles (``--tile`` head
output pixels, so that most latents sit near a tile edge) with each halo, and compares the latent y = g_a(x)·gain(q)
with the whole pass's: the largest |Δy| and how many of the rounded symbols differ. Float rounding alone leaves
|Δy| near 1e-4; a halo the offsets reach past leaves far more. Writes a markdown fragment (default
``benchmarks/results/analysis_halo.md``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lcf.bench.scripts import add_image_options, command_line, images_of, write_fragment
from lcf.codec import Codec
from lcf.container.header import PAD
from lcf.image import load_image
from lcf.nn.tiling import HEAD_DOWNSAMPLINGS, analyse_tiled


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_image_options(p, qualities=[4])
    p.add_argument("--halos", type=ints, default=[2, 3, 4, 5, 6, 8], help="halos to try, in head output pixels")
    p.add_argument("--tile", type=int, default=8, help="tile side in head output pixels (default 8)")
    p.add_argument(
        "--downsamplings",
        type=int,
        default=HEAD_DOWNSAMPLINGS,
        help=f"down-sampling modules in g_a's head (default {HEAD_DOWNSAMPLINGS})",
    )
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/analysis_halo.md"))
    args = p.parse_args(argv)
    files = images_of(args)
    codec = Codec(args.weights)
    codec._ensure_encoder()
    model = codec.model
    cell = 2**args.downsamplings
    rows = [
        f"| image | quality | halo (cells of {cell} px) | max abs Δy | symbols that differ |",
        "|---|---:|---:|---:|---:|",
    ]
    with torch.inference_mode():
        for path in files:
            rgb = load_image(path).rgb
            x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float().div(255)
            h, w = x.shape[-2:]
            x = torch.nn.functional.pad(x, (0, -w % PAD, 0, -h % PAD), mode="replicate")
            x = x.contiguous(memory_format=torch.channels_last)  # as the codec runs g_a on the CPU
            for q in args.qualities:
                gain = model.gain.gain(torch.tensor([q]))
                whole = model.g_a(x) * gain
                for halo in args.halos:
                    y = analyse_tiled(model.g_a, x, args.tile, halo, args.downsamplings) * gain
                    diff = float((y - whole).abs().max())
                    changed = int((torch.round(y) != torch.round(whole)).sum())
                    rows.append(f"| {path.name} | {q:g} | {halo} | {diff:.1e} | {changed} of {whole.numel()} |")
                    print(rows[-1], flush=True)
    head = (
        f"Command: `{command_line('analysis_halo', argv)}`; tiles of {args.tile} cells "
        f"({args.tile * cell} input pixels), weights model id {codec.weights.model_id.hex()[:8]}"
    )
    write_fragment(args.out, [head, "", *rows])


if __name__ == "__main__":
    main()
