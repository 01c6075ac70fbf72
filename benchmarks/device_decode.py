"""Decode time on a torch device (a CUDA GPU, or the CPU) for every decoder (g_s variant) of a weights folder.

    python benchmarks/device_decode.py --weights DIR --images DIR [--max-images N] [--qualities 1,4,7]
                                       [--device cuda] [--repeats 5] [--threads N] [--tiles default|none|A,S]
                                       [--out FILE]

Each image is encoded once per quality on ``--device`` (the encode time per image is reported too). Then, per
decoder, each file is decoded once as a warm-up and ``--repeats`` times timed:

1. **whole decode**: ``Codec.decode`` (container, entropy decoding on the CPU in float64, g_s on the device, pixels
   back to the CPU), wall time (perf_counter, with ``torch.cuda.synchronize()`` around it on cuda);
2. **g_s alone**: ``LcfModel.synthesise`` on the decoded ŷ already on the device, in the codec's layout and tiles
   (``--tiles``; the channel bitmap skips the all-zero channels, as decode does); timed with CUDA events on cuda,
   perf_counter on the CPU.

On cuda, the peak GPU memory of each decoder's decodes is reported too (``torch.cuda.max_memory_allocated``).

Times are the median over every image, quality and repeat. Every repeat must give the same pixels as the warm-up
(bit-exact; otherwise the script names the file and exits 1); the PSNR (dB, RGB, mean over images and qualities)
shows that each decoder still gives sane pixels on that device. Writes a markdown fragment (default
``benchmarks/results/device_decode.md``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lcf.bench.metrics import psnr
from lcf.bench.scripts import add_image_options, command_line, images_of, write_fragment
from lcf.codec import Codec, Decoded
from lcf.errors import LcfError
from lcf.image import load_image
from lcf.resources import synthesis_memory_format


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def time_gs(codec: Codec, decoded: Decoded, name: str) -> float:
    """Seconds of g_s alone on the decoded symbols, the inputs already on the device, run as Codec.synthesise runs
    it (its layout and tiles)."""
    device = codec.device
    y_hat = torch.from_numpy(decoded.symbols.y_hat.astype(np.float32))[None].to(device)
    y_hat = y_hat.contiguous(memory_format=synthesis_memory_format(device))
    q = torch.tensor([decoded.header.quality], dtype=torch.float32, device=device)
    coded = torch.from_numpy(decoded.symbols.coded).to(device) if codec.skip_zero_channels else None
    with torch.inference_mode():
        _sync(device)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            codec.model.synthesise(y_hat, q, name, coded=coded, tile=codec.synthesis_tile)
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1e3
        start_s = time.perf_counter()
        codec.model.synthesise(y_hat, q, name, coded=coded, tile=codec.synthesis_tile)
        return time.perf_counter() - start_s


def time_decode(codec: Codec, data: bytes, name: str) -> tuple[Decoded, float]:
    _sync(codec.device)
    start = time.perf_counter()
    decoded = codec.decode(data, decoder=name)
    _sync(codec.device)
    return decoded, time.perf_counter() - start


def encode_all(codec: Codec, files: list[Path], qualities: list[float]) -> tuple[list[dict], list[float]]:
    """Each image at each quality, once: the files (with the source pixels) and the encode seconds per file."""
    streams, seconds = [], []
    codec.encode(load_image(files[0]), qualities[0])  # warm-up: weights to the device, kernels, allocator
    for path in files:
        prepared = load_image(path)
        for q in qualities:
            _sync(codec.device)
            start = time.perf_counter()
            data = codec.encode(prepared, q)
            _sync(codec.device)
            seconds.append(time.perf_counter() - start)
            streams.append({"image": path.name, "quality": q, "rgb": prepared.rgb, "data": data})
    return streams, seconds


def measure_decoder(codec: Codec, streams: list[dict], name: str, repeats: int) -> dict | str:
    """Median g_s and whole-decode seconds and mean PSNR of one decoder; a message if a repeat is not bit-exact."""
    t_gs, t_full, psnrs = [], [], []
    if codec.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(codec.device)
    for s in streams:
        first, _ = time_decode(codec, s["data"], name)  # warm-up
        time_gs(codec, first, name)
        psnrs.append(psnr(s["rgb"], first.rgb))
        for i in range(repeats):
            decoded, seconds = time_decode(codec, s["data"], name)
            if not np.array_equal(decoded.rgb, first.rgb):
                return f"NOT EXACT: decoder {name}, {s['image']} quality {s['quality']:g}: repeat {i + 1} differs"
            t_full.append(seconds)
            t_gs.append(time_gs(codec, decoded, name))
    peak = torch.cuda.max_memory_allocated(codec.device) / 2**20 if codec.device.type == "cuda" else None
    return {
        "gs": statistics.median(t_gs),
        "full": statistics.median(t_full),
        "psnr": float(np.mean(psnrs)),
        "peak": peak,
    }


def tiles(text: str) -> tuple[int | None, int | None] | None:
    """'default' -> None (the codec's defaults for the device); 'none' -> whole images; 'A,S' -> tile sides."""
    if text == "default":
        return None
    if text == "none":
        return (None, None)
    try:
        a, s = (int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected default, none or A,S (two tile sides), got {text!r}") from None
    return (a, s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, type=Path, help="weights folder (manifest.json)")
    add_image_options(p, qualities=(1, 4, 7))
    p.add_argument("--device", default="cuda", help="torch device: cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--repeats", type=int, default=5, help="timed decodes of each file per decoder (median counts)")
    p.add_argument(
        "--tiles",
        type=tiles,
        default=None,
        help="g_a and g_s tiles: default (the codec's for the device), none (whole images) or A,S: "
        "Codec.analysis_tile and Codec.synthesis_tile (lcf.nn.tiling)",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/device_decode.md"), help="markdown fragment")
    args = p.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {args.device} was asked for, but torch {torch.__version__} sees no CUDA GPU "
            "(a CPU-only build, or no driver); use --device cpu"
        )
    files = images_of(args)
    if not files:
        raise SystemExit(f"no images in {args.images}")
    start = time.perf_counter()
    try:
        codec = Codec(args.weights, device=args.device)
    except LcfError as exc:
        raise SystemExit(str(exc)) from None
    if args.tiles is not None:
        codec.analysis_tile, codec.synthesis_tile = args.tiles
    streams, encode_s = encode_all(codec, files, args.qualities)
    rows = [
        (
            "| decoder | params | g_s ms/image (median) | whole decode ms/image (median) | mean PSNR (dB) | "
            "peak GPU MiB |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in codec.decoder_names:
        result = measure_decoder(codec, streams, name, args.repeats)
        if isinstance(result, str):
            print(result, file=sys.stderr)
            return 1
        default = " (default)" if name == codec.weights.default_decoder else ""
        rows.append(
            f"| {name}{default} | {codec.weights.decoder_info(name).parameters or 0:,} | "
            f"{result['gs'] * 1e3:.1f} | {result['full'] * 1e3:.1f} | {result['psnr']:.2f} | "
            + ("n/a |" if result["peak"] is None else f"{result['peak']:,.0f} |")
        )
        print(f"{name} done", file=sys.stderr, flush=True)
    sizes = sorted({f"{s['rgb'].shape[1]}x{s['rgb'].shape[0]}" for s in streams})
    md = [
        f"Command: `{command_line('device_decode', argv)}`",
        "",
        (
            f"Device {args.device}: {device_name(codec.device)}; torch {torch.__version__}; {len(files)} images of "
            f"{args.images.name} ({', '.join(sizes)}) x qualities {', '.join(f'{q:g}' for q in args.qualities)}; "
            f"tiles: g_a {codec.analysis_tile or 'whole'}, g_s {codec.synthesis_tile or 'whole'}; "
            f"{args.repeats} timed repeats after a warm-up, every repeat bit-exact; encode "
            f"{statistics.median(encode_s) * 1e3:.1f} ms/image (median); measurement wall time "
            f"{time.perf_counter() - start:.0f} s."
        ),
        "",
        *rows,
    ]
    write_fragment(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
