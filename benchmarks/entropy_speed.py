"""Speed of lcf's entropy layer on Kodak-sized latents (768 x 512 image) with synthetic, realistic parameters.

y: 192 x 32 x 48 = 294,912 symbols, half anchors (GLLMM, K = 9), half non-anchors (GMM, K = 3); z: 128 x 8 x 12.
The PENs' raw slots (integers in units of 2^-12: logits, means, softplus^-1 of the scales) are drawn at random and
mapped by int_params; symbols are drawn from the mixtures they describe, so the rates are those of a well-fitted
model.

    python benchmarks/entropy_speed.py [--repeat 3] [--max-scale 10] [--seed 0] [--cpu]

Prints, per stream, the best-of-N wall time of int_params / encode / decode, the coded size, and its overhead against
estimate_bits and against the ideal float-free information content of the integer mixtures.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import numpy as np

from lcf.entropy import (
    FamilyTables,
    ZTables,
    build_z_tables,
    decode_mixture_stream,
    decode_z_stream,
    encode_mixture_stream,
    encode_z_stream,
    estimate_bits,
    estimate_z_bits,
    int_params,
)
from lcf.entropy.params import ANCHOR_FAMILIES, MEAN_FRAC_BITS, NONANCHOR_FAMILIES, IntParams

N_ANCHOR = N_NONANCHOR = 192 * 32 * 48 // 2
Z_SHAPE = (128, 8, 12)


def synthetic_raw(n: int, families: tuple[str, ...], max_scale: float, rng: np.random.Generator):
    """Raw PEN slots with log-uniform element scales in [0.11, max_scale], and symbols drawn from the mixtures that
    int_params makes of them (component by its integer weight, then the family's noise at the integer mean and the
    scale of the slot)."""
    k = len(families)
    base = np.exp(rng.uniform(np.log(0.11), np.log(max_scale), (n, 1)))
    scales = np.clip(base * np.exp(rng.normal(0.0, 0.3, (n, k))), 0.11, 64.0)
    means = rng.normal(0.0, 1.0, (n, 1)) * base + rng.normal(0.0, 0.3, (n, k)) * base
    slots = [rng.normal(0.0, 2.0, (n, k)), means, np.log(np.expm1(scales))]
    if k == 9:
        slots.append(rng.normal(0.0, 2.0, (n, 3)))  # family logits
    raw = np.rint(np.concatenate(slots, axis=1) * 4096).astype(np.int64)
    p: IntParams = int_params(raw)
    comp = (p.weights.cumsum(axis=1) > rng.integers(0, p.weights.sum(axis=1, keepdims=True))).argmax(axis=1)
    rows = np.arange(n)
    fam = np.array(families)[comp]
    noise = np.where(fam == "G", rng.normal(size=n), np.where(fam == "L", rng.laplace(size=n), rng.logistic(size=n)))
    mean = p.means[rows, comp] / 2**MEAN_FRAC_BITS  # integer means in units of 1/16 (spec/entropy.md, section 2)
    y = np.rint(mean + scales[rows, comp] * noise).astype(np.int32)
    return raw, y


def synthetic_z(rng: np.random.Generator) -> tuple[ZTables, np.ndarray]:
    c, h, w = Z_SHAPE
    lz = 32
    scale = np.exp(rng.uniform(np.log(0.2), np.log(4.0), c))
    v = np.arange(-lz, lz + 1)
    pmf = np.exp(-np.abs(v)[None, :] / scale[:, None])
    pmf /= pmf.sum(axis=1, keepdims=True) * 1.0001
    tables = ZTables.from_arrays(build_z_tables(pmf, np.full(c, 1e-4)))
    z = np.rint(rng.laplace(size=(c, h, w)) * scale[:, None, None]).astype(np.int32)
    return tables, z


def best_of(repeat: int, fn):
    """Best-of-N time of fn(); CPU time of this process with --cpu (robust on a busy machine), else wall time."""
    clock = time.process_time if CPU_TIME else time.perf_counter
    best, out = float("inf"), None
    for _ in range(repeat):
        t = clock()
        out = fn()
        best = min(best, clock() - t)
    return best, out


CPU_TIME = False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-scale", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu", action="store_true", help="report process CPU time instead of wall time")
    args = ap.parse_args()
    global CPU_TIME
    CPU_TIME = args.cpu
    rng = np.random.default_rng(args.seed)

    t, tables = best_of(1, FamilyTables.build)
    print(
        f"family tables: built and loaded in {t:.2f} s; stored {tables.pmf.nbytes} bytes, in memory "
        f"{tables.cdf.nbytes + tables.pmf.nbytes} bytes"
    )
    total_enc = total_dec = total_q = 0.0
    for name, n, fams in (("anchors", N_ANCHOR, ANCHOR_FAMILIES), ("non-anchors", N_NONANCHOR, NONANCHOR_FAMILIES)):
        raw, y = synthetic_raw(n, fams, args.max_scale, rng)
        tq, p = best_of(args.repeat, partial(int_params, raw))
        te, data = best_of(args.repeat, partial(encode_mixture_stream, y, p, tables))
        td, out = best_of(args.repeat, partial(decode_mixture_stream, data, p, tables))
        if not np.array_equal(out, y):
            raise SystemExit(f"{name}: round trip failed")
        est = estimate_bits(y, p, tables)
        total_enc, total_dec, total_q = total_enc + te, total_dec + td, total_q + tq
        print(
            f"{name:12s} n={n} K={len(fams)}: int_params {tq * 1e3:6.1f} ms  encode {te * 1e3:6.1f} ms  "
            f"decode {td * 1e3:6.1f} ms  {len(data)} bytes ({8 * len(data) / n:.3f} bits/symbol, "
            f"{8 * len(data) / est - 1:+.4%} vs estimate)"
        )
    zt, z = synthetic_z(rng)
    te, data = best_of(args.repeat, lambda: encode_z_stream(z, zt))
    td, out = best_of(args.repeat, lambda: decode_z_stream(data, Z_SHAPE, zt))
    if not np.array_equal(out, z):
        raise SystemExit("z: round trip failed")
    total_enc, total_dec = total_enc + te, total_dec + td
    est = estimate_z_bits(z, zt)
    print(
        f"{'z':12s} {Z_SHAPE}: encode {te * 1e3:6.1f} ms  decode {td * 1e3:6.1f} ms  {len(data)} bytes "
        f"({8 * len(data) / est - 1:+.4%} vs estimate)"
    )
    print(
        f"total: encode {total_enc * 1e3:.0f} ms + decode {total_dec * 1e3:.0f} ms = "
        f"{(total_enc + total_dec) * 1e3:.0f} ms (int_params, once per side: {total_q * 1e3:.0f} ms)"
    )


if __name__ == "__main__":
    main()
