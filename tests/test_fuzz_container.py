"""Random-mutation fuzzing of the container reader: nothing but LcfError, no hang, no allocation beyond the limits.

The suite runs a few thousand seeded cases. For a longer run: ``python tests/test_fuzz_container.py --cases 1000000
--seed 7``. Half of the mutants get their CRCs recomputed, so that the damage reaches the checks behind the CRC
(header fields, order rules, CMAP, ALPH inflation).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
import zlib

from lcf.container import Limits, read_container, read_header_only, walk_chunks
from lcf.container.samples import sample_file
from lcf.errors import LcfError

LIMITS = Limits(max_pixels=100 * 100, max_chunk_length=64 * 1024, max_file_size=256 * 1024)
# Bound on what one read may allocate: a copy of the file, its payloads, and an alpha plane of max_pixels (+1).
MEMORY_BOUND = 4 * LIMITS.max_file_size + LIMITS.max_pixels + 64 * 1024

SEEDS = [
    sample_file(),
    sample_file(alpha=True, metadata=True, unknown=True, width=40, height=30),
    sample_file(alpha=True, width=64, height=64, latent_channels=5),
]


def fix_crcs(data: bytearray) -> bytearray:
    """Recompute the CRC of every chunk that can still be framed, so the mutation is judged on its content."""
    pos = 10
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 12 + length
        if end > len(data):
            break
        data[end - 4 : end] = zlib.crc32(data[pos + 4 : end - 4]).to_bytes(4, "big")
        pos = end
    return data


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3, 8))):
        op = rng.randrange(7)
        i = rng.randrange(len(out) + 1)
        if op == 0 and out:  # flip bits
            out[min(i, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and out:  # random byte
            out[min(i, len(out) - 1)] = rng.randrange(256)
        elif op == 2:  # insert
            out[i:i] = rng.randbytes(rng.choice((1, 4, 12, 100)))
        elif op == 3:  # delete
            del out[i : i + rng.choice((1, 4, 12, 100))]
        elif op == 4:  # duplicate a range
            j = rng.randrange(len(out) + 1)
            out[j:j] = out[i : i + rng.randrange(1, 40)]
        elif op == 5:  # an extreme 32-bit value (lengths, sizes)
            value = rng.choice((0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, rng.randrange(2**32)))
            out[i : i + 4] = value.to_bytes(4, "big")
        elif op == 6:  # truncate
            del out[i:]
    if rng.random() < 0.5:
        fix_crcs(out)
    return bytes(out)


def check_one(data: bytes) -> None:
    """Read ``data`` every way; only LcfError may come out."""
    for read in (
        lambda: read_container(data, LIMITS),
        lambda: read_header_only(data, LIMITS),
        lambda: list(walk_chunks(data, LIMITS)),
    ):
        try:
            read()
        except LcfError:
            pass


def run(cases: int, seed: int) -> tuple[int, float, float]:
    """Fuzz ``cases`` mutants; returns (cases accepted as valid, worst seconds per case, worst peak bytes)."""
    rng = random.Random(seed)
    accepted, worst_time, worst_peak = 0, 0.0, 0
    tracemalloc.start()
    try:
        for n in range(cases):
            data = mutate(rng, rng.choice(SEEDS))
            tracemalloc.reset_peak()
            start = time.perf_counter()
            try:
                check_one(data)
                read_container(data, LIMITS)
                accepted += 1
            except LcfError:
                pass
            except Exception as exc:  # pragma: no cover - this is the failure being hunted
                raise AssertionError(
                    f"case {n} (seed {seed}): {type(exc).__name__}: {exc}; input {data.hex()}"
                ) from exc
            worst_time = max(worst_time, time.perf_counter() - start)
            worst_peak = max(worst_peak, tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    return accepted, worst_time, worst_peak


def test_fuzz_container_reader() -> None:
    accepted, worst_time, worst_peak = run(cases=3000, seed=20240601)
    assert worst_peak < MEMORY_BOUND, worst_peak
    assert worst_time < 2.0, worst_time
    assert accepted < 3000  # the mutations do break files


def test_fuzz_seed_files_are_valid() -> None:
    for data in SEEDS:
        read_container(data, LIMITS)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    result = run(args.cases, args.seed)
    print(
        f"seed {args.seed}: {args.cases} cases, {result[0]} accepted, worst {result[1] * 1e3:.1f} ms, "
        f"peak {result[2]} bytes"
    )
    sys.exit(0)
