#!/usr/bin/env python
"""Coverage-guided fuzzing of the .lcf container reader with atheris (no model: thousands of inputs a second).

    python fuzz/fuzz_container.py fuzz/corpus/container -atheris_runs=1000000   # grows the corpus in that folder
    python fuzz/fuzz_container.py -max_total_time=600                            # seeds only, corpus in a temp dir
    python fuzz/fuzz_container.py crash-1234abcd                                 # replay what libFuzzer saved
    python fuzz/fuzz_container.py --plain --runs 1000000 --seed 7               # without atheris (random mutations)

Each input is read, with the default :class:`lcf.container.Limits` (what every user gets), by ``read_container``,
``read_header_only`` (from bytes and from a file object) and ``walk_chunks``: once as it is and once with every
chunk's CRC recomputed, so that the damage reaches the checks behind the CRC (header fields, order rules, CMAP bits,
ALPH inflation). Half of the mutations change one chunk's payload and keep the framing (``fuzz_decode.mutate_chunk``).

A finding (libFuzzer saves the input as crash-*): an exception that is not an LcfError; an LcfError without the
byte offset of the problem (only an empty file has none); a file that reads as valid but is not what the writer
writes for its header and chunks (``write_container(header, chunks) != data``: two byte strings for one content), or
whose header ``read_header_only`` reads otherwise; an input over -timeout (default here 10 s) or -rss_limit_mb
(default here 1024, the 1 GiB that docs/SECURITY.md promises).

The seeds are the spec's conformance vectors and sample files of every container feature; ``fuzz/corpus/container``
keeps a small corpus between runs (``-merge=1`` keeps it minimal).
"""

from __future__ import annotations

import io
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_decode import fix_crcs, mutate_chunk  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class Finding(AssertionError):
    """Something the container reader must never do."""


def seed_files() -> list[bytes]:
    """The conformance vectors and sample files of every container feature (alpha, metadata, unknown chunks)."""
    from lcf.container import ColorFormat
    from lcf.container.samples import sample_file

    seeds = [path.read_bytes() for path in sorted((ROOT / "spec" / "vectors").glob("*.lcf"))]
    seeds += [
        sample_file(),
        sample_file(alpha=True, metadata=True, unknown=True, width=40, height=30),
        sample_file(alpha=True, width=64, height=64, latent_channels=5),
        sample_file(width=1, height=1, color=ColorFormat.GRAY8, decoder="a.b-c_d", quality=1.0),
        sample_file(width=2**24 - 1, height=1, latent_channels=65535, hyper_channels=1, quality=7.0),
    ]
    return seeds


def check(data: bytes) -> None:
    """Read ``data`` as it is and with its CRCs recomputed; raise Finding on a bug."""
    for blob in (data, fix_crcs(data)):
        try:
            _check_one(blob)
        except Finding:
            raise
        except Exception as exc:
            raise Finding(f"{type(exc).__name__} escaped the container reader: {exc}") from exc


def _check_one(data: bytes) -> None:
    from lcf.container import read_container, read_header_only, walk_chunks, write_container
    from lcf.errors import LcfError

    try:
        container = read_container(data)
    except LcfError as exc:
        if exc.offset is None and data:
            raise Finding(f"{type(exc).__name__} without an offset: {exc}") from exc
        container = None
    for read in (
        lambda: read_header_only(data),
        lambda: read_header_only(io.BytesIO(data)),
        lambda: list(walk_chunks(data)),
    ):
        try:
            read()
        except LcfError as error:
            if container is not None:
                raise Finding("a file read_container accepts is refused by read_header_only or walk_chunks") from error
    if container is None:
        return
    if read_header_only(data) != container.header:
        raise Finding("read_header_only and read_container read different headers")
    if write_container(container.header, container.chunks) != data:
        raise Finding("an accepted file is not what the writer writes for its header and chunks")


def mutate(data: bytes, rng: random.Random, mutate_bytes) -> bytes:
    """Half the time one chunk's payload (framing and CRCs kept valid), else the whole file."""
    if rng.random() < 0.5:
        return mutate_chunk(data, lambda payload: mutate_bytes(payload, max(2 * len(payload), 16)), rng)
    return mutate_bytes(data, max(2 * len(data), 64))


def random_bytes_mutator(rng: random.Random):
    """A byte-level mutator for runs without atheris: flips, random bytes, insertions, deletions, copies, extreme
    32-bit values, truncation (1 to 8 of them)."""

    def mutate_bytes(data: bytes, max_size: int) -> bytes:
        out = bytearray(data)
        for _ in range(rng.choice((1, 1, 2, 3, 8))):
            op, i = rng.randrange(7), rng.randrange(len(out) + 1)
            if op == 0 and out:
                out[min(i, len(out) - 1)] ^= 1 << rng.randrange(8)
            elif op == 1 and out:
                out[min(i, len(out) - 1)] = rng.randrange(256)
            elif op == 2:
                out[i:i] = rng.randbytes(rng.choice((1, 4, 12, 100)))
            elif op == 3:
                del out[i : i + rng.choice((1, 4, 12, 100))]
            elif op == 4:
                j = rng.randrange(len(out) + 1)
                out[j:j] = out[i : i + rng.randrange(1, 40)]
            elif op == 5:
                value = rng.choice((0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, rng.randrange(2**32)))
                out[i : i + 4] = value.to_bytes(4, "big")
            elif op == 6:
                del out[i:]
        return bytes(out[:max_size])

    return mutate_bytes


def plain(runs: int, seed: int, corpus: Path | None) -> int:
    """Fuzz without atheris: ``runs`` random mutants of the seeds (and of ``corpus``'s files). Returns 0, or 1 and
    the saved input on a finding."""
    import resource

    rng = random.Random(seed)
    seeds = seed_files() + ([p.read_bytes() for p in sorted(corpus.iterdir()) if p.is_file()] if corpus else [])
    mutate_bytes = random_bytes_mutator(rng)
    start, slowest = time.perf_counter(), 0.0
    for n in range(runs):
        data = mutate(rng.choice(seeds), rng, mutate_bytes)
        t = time.perf_counter()
        try:
            check(data)
        except Finding as exc:
            path = Path(f"crash-plain-{seed}-{n}")
            path.write_bytes(data)
            print(f"finding at run {n}: {exc}; input saved to {path}", file=sys.stderr)
            return 1
        slowest = max(slowest, time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"lcf container fuzz (plain, seed {seed}): {runs} runs in {time.perf_counter() - start:.0f} s, "
        f"0 findings, slowest {slowest * 1e3:.1f} ms, peak RSS {peak:.0f} MiB",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str]) -> int:
    if "--plain" in argv:

        def option(name: str, default: int) -> int:
            return int(argv[argv.index(name) + 1]) if name in argv else default

        corpus = next((Path(a) for a in argv[1:] if not a.startswith("-") and Path(a).is_dir()), None)
        return plain(option("--runs", 100_000), option("--seed", int(time.time())), corpus)

    import atheris

    with atheris.instrument_imports(include=["lcf.container", "lcf.errors"]):
        import lcf.container  # noqa: F401

    args = [a for a in argv[1:] if a.startswith("-")]
    paths = [a for a in argv[1:] if not a.startswith("-")]
    if not paths or not Path(paths[0]).is_file():  # a corpus folder (made if missing), not an input to replay
        corpus = Path(paths[0]) if paths else Path(__import__("tempfile").mkdtemp(prefix="lcf-fuzz-container-"))
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seed_files()):
            (corpus / f"seed-{i:02d}.lcf").write_bytes(seed)
        paths = [str(corpus), *paths[1:]]
    defaults = {"-timeout=": "10", "-rss_limit_mb=": "1024", "-max_len=": "16384"}
    args += [k + v for k, v in defaults.items() if not any(a.startswith(k) for a in args)]

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        return mutate(data, random.Random(seed), atheris.Mutate)[:max_size]

    atheris.Setup([argv[0], *args, *paths], check, custom_mutator=custom_mutator)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
