"""Decoder benchmark: every decoder (g_s variant) of a weights folder, and the skipping of all-zero channels.

    python benchmarks/decoders.py --weights DIR [--images DIR] [--qualities 1,3,5,7] [--max-images N]
                                  [--low 1 --high 7] [--zero 0.3,0.6] [--repeats 5] [--threads N] [--out FILE]
                                  [--published CSV [--anchor vtm]] [--plot PNG]

Writes a markdown fragment for docs/BENCHMARKS.md (default ``benchmarks/results/decoders.md``) with:

1. per decoder: arch, parameters and size on disk;
2. g_s with and without zero-channel skipping on a Kodak-size latent (768x512 -> M x 32 x 48) with a share of
   all-zero channels (``--zero``): the multiply-accumulates saved (exact) and the time saved (fastest of
   ``--repeats``, interleaved); the largest difference between the two outputs;
3. with ``--images``: per decoder the R-D points (the bits are the same for every decoder), BD-rate against the
   teacher (lcf.bench.bdrate, pchip and cubic), decode time per image (g_s only, and entropy decode + g_s);
   with ``--published``: BD-rate against a published curve (``--anchor``, default vtm) too, and with ``--plot``
   the R-D curves of every decoder (and the published anchor) in one PNG;
4. with ``--images``: the paper's Table II on this model: all-zero channels per image at a low and a high quality,
   and the full decode time of the default decoder when the zero channels are skipped (the file as lcf writes it,
   g_s skipping) vs not (the same latents re-coded with every channel marked coded, g_s reading every channel).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lcf.bench.bdrate import bd_rate
from lcf.bench.metrics import ms_ssim, psnr
from lcf.bench.published import read_published
from lcf.bench.report import plot_rd
from lcf.bench.results import RDCurve, RDPoint
from lcf.bench.runner import MS_SSIM_MIN_SIDE
from lcf.bench.scripts import (
    add_image_options,
    command_line,
    floats,
    images_of,
    write_fragment,
)
from lcf.codec import Codec, Symbols
from lcf.container import Chunk, encode_channel_bitmap, read_container, write_container
from lcf.image import load_image
from lcf.nn.students import latent_reading_convs, synthesise_coded

KODAK_LATENT = (32, 48)  # 512 x 768 / 16


clock = time.perf_counter  # --clock cpu: time.process_time (CPU seconds of this process; for a busy machine)


def _paired_min_times(fa, fb, repeats: int) -> tuple[float, float]:
    """Fastest of ``repeats`` runs of each, interleaved (a b a b ...) so that drifts of a busy machine hit both."""
    fa(), fb()  # warm-up (oneDNN primitive creation, allocator)
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((fa, ta), (fb, tb)):
            start = clock()
            fn()
            times.append(clock() - start)
    return min(ta), min(tb)


def _macs(g_s: torch.nn.Module, m: int) -> tuple[dict[torch.nn.Module, int], int]:
    """Multiply-accumulates per Kodak-size latent of every convolution and GDN of g_s, and their total."""
    from lcf.nn.layers import GDN

    macs: dict[torch.nn.Module, int] = {}

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            macs[module] = output.numel() * k
        else:  # GDN: a 1x1 convolution of x² with C x C weights
            macs[module] = output.numel() * output.shape[1]

    handles = [mod.register_forward_hook(hook) for mod in g_s.modules() if isinstance(mod, (torch.nn.Conv2d, GDN))]
    try:
        with torch.inference_mode():
            g_s(torch.zeros(1, m, *KODAK_LATENT))
    finally:
        for h in handles:
            h.remove()
    return macs, sum(macs.values())


def decoder_table(codec: Codec) -> list[str]:
    rows = ["| decoder | kind | N | attention | residual | parameters | size |", "|---|---|---|---|---|---:|---:|"]
    for name in codec.decoder_names:
        info = codec.weights.decoder_info(name)
        arch = codec.weights.decoder_arch(name)
        default = " (default)" if name == codec.weights.default_decoder else ""
        rows.append(
            f"| {name}{default} | {arch.kind} | {arch.N} | {arch.attention} | {arch.residual} | "
            f"{info.parameters or 0:,} | {(info.bytes or 0) / 2**20:.2f} MiB |"
        )
    return rows


def skip_table(codec: Codec, zero: list[float], repeats: int) -> list[str]:
    """g_s alone on a Kodak-size latent with a share of all-zero channels: full vs skipping."""
    m = codec.config.M
    gen = torch.Generator().manual_seed(0)
    rows = [
        (
            "| decoder | GMAC | first layer's share | zero channels | MACs saved | g_s full | g_s skipping | "
            "time saved | max abs diff |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in codec.decoder_names:
        codec._ensure_decoder(name)
        g_s = codec.model.decoders[name]
        macs, total = _macs(g_s, m)
        reading = sum(macs[c] for c in latent_reading_convs(g_s)) / total
        for share in zero:
            coded = torch.ones(m, dtype=torch.bool)
            coded[torch.randperm(m, generator=gen)[: round(share * m)]] = False
            y = torch.round(2 * torch.randn(1, m, *KODAK_LATENT, generator=gen)) * coded.view(1, -1, 1, 1)
            zeros = m - int(coded.sum())
            with torch.inference_mode():
                full, skip = _paired_min_times(
                    lambda g_s=g_s, y=y: g_s(y), lambda g_s=g_s, y=y, c=coded: synthesise_coded(g_s, y, c), repeats
                )
                diff = float((g_s(y) - synthesise_coded(g_s, y, coded)).abs().max())
            rows.append(
                f"| {name} | {total / 1e9:.1f} | {100 * reading:.2f}% | {zeros}/{m} ({share:.0%}) | "
                f"{100 * reading * zeros / m:.2f}% | {full * 1e3:.0f} ms | {skip * 1e3:.0f} ms | "
                f"{100 * (1 - skip / full):.1f}% | {diff:.1e} |"
            )
    return rows


def _all_channels_coded(codec: Codec, data: bytes) -> bytes:
    """The same latents re-coded with every channel marked coded (what a codec without skipping would write)."""
    container = read_container(data)
    symbols = codec.decode_symbols(container)
    full = Symbols(z_hat=symbols.z_hat, y_hat=symbols.y_hat, coded=np.ones_like(symbols.coded))
    hyper, anchor, nonanchor, _ = codec.code_symbols(full, estimate=False)
    replaced = {"CMAP": encode_channel_bitmap(full.coded), "HYPR": hyper, "ANCH": anchor, "NANC": nonanchor}
    chunks = [
        Chunk(c.type, replaced.get(c.type, c.payload)) for c in container.chunks if c.type not in ("HEAD", "LEND")
    ]
    return write_container(container.header, chunks)


def measure_images(codec: Codec, files: list[Path], qualities: list[float]) -> dict:
    """Encode each image once per quality; decode the streams once; run every decoder's g_s on the symbols."""
    names = codec.decoder_names
    for name in names:
        codec._ensure_decoder(name)
    rows = []
    for path in files:
        prepared = load_image(path)
        pixels = prepared.rgb.shape[0] * prepared.rgb.shape[1]
        for q in qualities:
            data = codec.encode(prepared, q)
            start = clock()
            container = read_container(data)
            symbols = codec.decode_symbols(container)
            t_entropy = clock() - start
            for name in names:
                start = clock()
                rgb = codec.synthesise(symbols, container.header, name)
                t_gs = clock() - start
                big_enough = min(rgb.shape[:2]) > MS_SSIM_MIN_SIDE
                rows.append(
                    {
                        "image": path.name,
                        "quality": q,
                        "decoder": name,
                        "bpp": len(data) * 8 / pixels,
                        "psnr": psnr(prepared.rgb, rgb),
                        "ms_ssim": ms_ssim(prepared.rgb, rgb) if big_enough else float("nan"),
                        "t_entropy": t_entropy,
                        "t_gs": t_gs,
                        "zero_channels": int((~symbols.coded).sum()),
                    }
                )
            print(
                f"{path.name} q{q:g}: {len(data) * 8 / pixels:.3f} bpp, entropy decode {t_entropy:.2f} s, "
                + ", ".join(f"{r['decoder']} {r['psnr']:.2f} dB/{r['t_gs']:.2f} s" for r in rows[-len(names) :]),
                file=sys.stderr,
                flush=True,
            )
    return {"rows": rows}


def _pct(value: float) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:+.2f}%"


def decoder_curves(codec: Codec, rows: list[dict], qualities: list[float]) -> list[RDCurve]:
    """One R-D curve per decoder: mean bpp, PSNR and MS-SSIM over the images at each quality."""
    curves = []
    for name in codec.decoder_names:
        points = []
        for q in qualities:
            mine = [r for r in rows if r["decoder"] == name and r["quality"] == q]
            points.append(
                RDPoint(
                    param=f"{q:g}",
                    bpp=float(np.mean([r["bpp"] for r in mine])),
                    psnr=float(np.mean([r["psnr"] for r in mine])),
                    ms_ssim=float(np.mean([r["ms_ssim"] for r in mine])),
                    n_images=len(mine),
                )
            )
        curves.append(RDCurve(codec=name, points=tuple(sorted(points, key=lambda p: p.bpp))))
    return curves


def _bd(ref: RDCurve, test: RDCurve, method: str = "pchip") -> float:
    return bd_rate(ref.column("bpp"), ref.column("psnr"), test.column("bpp"), test.column("psnr"), method=method)


def rd_tables(codec: Codec, rows: list[dict], qualities: list[float], anchor: RDCurve | None = None) -> list[str]:
    curves = decoder_curves(codec, rows, qualities)
    ref = next(c for c in curves if c.codec == codec.weights.default_decoder)
    vs_anchor = f" BD-rate vs {anchor.label} (pchip) |" if anchor is not None else ""
    out = [
        (
            "| decoder | "
            + " | ".join(f"q{q:g}: bpp / PSNR" for q in qualities)
            + f" | BD-rate vs teacher (pchip / cubic) |{vs_anchor} g_s per image | entropy decode + g_s per image |"
        ),
        "|---|" + "---:|" * (len(qualities) + 3 + (anchor is not None)),
    ]
    for curve in curves:
        name = curve.codec
        mine = [r for r in rows if r["decoder"] == name]
        t_gs = np.mean([r["t_gs"] for r in mine])
        t_full = np.mean([r["t_gs"] + r["t_entropy"] for r in mine])
        bd = "—"
        if name != ref.codec and len(qualities) >= 2:
            cubic = _bd(ref, curve, "cubic") if len(qualities) >= 4 else float("nan")
            bd = f"{_pct(_bd(ref, curve))} / {_pct(cubic)}"
        extra = f" {_pct(_bd(anchor, curve))} |" if anchor is not None else ""
        by_q = {p.param: p for p in curve.points}
        points = [by_q[f"{q:g}"] for q in qualities]
        out.append(
            f"| {name} | "
            + " | ".join(f"{pt.bpp:.3f} / {pt.psnr:.2f}" for pt in points)
            + f" | {bd} |{extra} {t_gs:.2f} s | {t_full:.2f} s |"
        )
    return out


def table_two(codec: Codec, files: list[Path], levels: dict[str, float]) -> list[str]:
    """Paper Table II on this model, for the default decoder."""
    name = codec.weights.default_decoder
    out = [
        (
            "| bit rate | quality | all-zero channels (mean per image) | total channels | dec. time (skipping) | "
            "dec. time (full) | reduction |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, q in levels.items():
        zeros, t_skip, t_full = [], [], []
        for path in files:
            data = codec.encode(load_image(path), q)
            everything = _all_channels_coded(codec, data)
            codec.skip_zero_channels = True
            start = clock()
            a = codec.decode(data, decoder=name)
            t_skip.append(clock() - start)
            codec.skip_zero_channels = False
            start = clock()
            b = codec.decode(everything, decoder=name)
            t_full.append(clock() - start)
            codec.skip_zero_channels = True
            if (
                not np.array_equal(a.symbols.y_hat, b.symbols.y_hat)
                or np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max() > 1
            ):
                raise SystemExit(f"{path}: decoding with and without skipping differs")
            zeros.append(int((~a.symbols.coded).sum()))
        ts, tf = float(np.mean(t_skip)), float(np.mean(t_full))
        out.append(
            f"| {label} | {q:g} | {np.mean(zeros):.1f} | {codec.config.M} | {ts:.2f} s | {tf:.2f} s | "
            f"{100 * (1 - ts / tf):.1f}% |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, type=Path, help="weights folder (manifest.json)")
    add_image_options(p, qualities=(1, 3, 5, 7), images_required=False)
    p.add_argument("--low", type=float, default=1.0, help="Table II low-rate quality (default 1)")
    p.add_argument("--high", type=float, default=7.0, help="Table II high-rate quality (default 7)")
    p.add_argument("--zero", type=floats, default=[0.0, 0.3, 0.6], help="shares of all-zero channels (g_s timing)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of the g_s benchmark (fastest counts)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time; cpu: CPU time of this process (use with --threads 1 on a busy machine)",
    )
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/decoders.md"), help="markdown fragment")
    p.add_argument("--published", type=Path, default=None, help="published R-D points (lcf.bench.published CSV)")
    p.add_argument("--anchor", default="vtm", help="the published codec to compute BD-rates against (default vtm)")
    p.add_argument("--plot", type=Path, default=None, help="PNG with the R-D curves of every decoder")
    args = p.parse_args(argv)
    files = images_of(args) if args.images is not None else []
    anchor = None
    if args.published is not None:
        anchor = next((c for c in read_published(args.published) if c.codec == args.anchor), None)
        if anchor is None:
            raise SystemExit(f"{args.published} has no curve named {args.anchor!r}")
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    start = time.perf_counter()
    codec = Codec(args.weights)
    command = command_line("decoders", argv)
    timing = "CPU time of the process" if args.clock == "cpu" else "wall-clock time"
    md = [
        f"Command: `{command}`; torch {torch.__version__}, {torch.get_num_threads()} threads, {timing}.",
        "",
        "**Decoders** (every decoder decodes every file of this model; the bits do not depend on it)",
        "",
        *decoder_table(codec),
        "",
        (
            f"**Zero-channel skipping in g_s** (Kodak-size latent {codec.config.M} x {KODAK_LATENT[0]} x "
            f"{KODAK_LATENT[1]}; fastest of {args.repeats}, interleaved; the first layer of g_s reads only the coded "
            "channels; MACs saved = first layer's share of the MACs x share of zero channels)"
        ),
        "",
        *skip_table(codec, args.zero, args.repeats),
        "",
    ]
    if files:
        rows = measure_images(codec, files, args.qualities)["rows"]
        caveat = (
            f"; the published {anchor.label} points are means over all 24 Kodak images" if anchor is not None else ""
        )
        md += [
            (
                f"**Rate-distortion and decode time per decoder** ({len(files)} images of {args.images.name}; "
                "mean bpp / PSNR (dB, RGB) per quality; decode times are means per image over all qualities"
                f"{caveat})"
            ),
            "",
            *rd_tables(codec, rows, args.qualities, anchor),
            "",
            (
                f"**Table II of the paper on this model** (decoder {codec.weights.default_decoder}; 'full' = the "
                "same latents coded with every channel marked coded and g_s reading every channel)"
            ),
            "",
            *table_two(codec, files, {"low": args.low, "high": args.high}),
            "",
        ]
        if args.plot is not None:
            curves = decoder_curves(codec, rows, args.qualities) + ([anchor] if anchor is not None else [])
            plot_rd(curves, args.plot, title=f"lcf decoders, {len(files)} images of {args.images.name}")
            md += [f"R-D curves of every decoder: `{args.plot}`.", ""]
    md.append(f"Measurement wall time {time.perf_counter() - start:.0f} s.")
    write_fragment(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
