"""Corruption-detection sweep: damage .lcf files in every way a disk, a transfer or a hand can, decode each damaged
file as ``lcf decode`` does (``lcf.api.decode_file`` into a folder holding a user's file), and count the outcomes.

    python benchmarks/corruption_sweep.py                                   # built-in images, shipped weights
    python benchmarks/corruption_sweep.py --images ../shared/data/kodak --max-images 1 --random 2000

Files: a small one (a 96x64 image built in code; every byte position is damaged) and larger ones (a 512x384 image
built in code, plus the first ``--max-images`` of ``--images``; ``--random`` random positions each, ``--random-deep``
for the damage that reaches the decoder). Damage classes:

* ``bit flip``: every bit of every byte (small file) / random (byte, bit) (larger files). The CRC stays.
* ``truncation``: every length 0 .. n-1 / random lengths.
* ``insertion``: 1 random byte at every position / 1..16 random bytes at random positions.
* ``deletion``: 1 byte at every position / 1..16 bytes at random positions.
* ``bit flip (CRCs recomputed)``: one random bit of every byte (small) / random (larger), then every chunk's CRC is
  recomputed, so the damage reaches the header checks, the stream decoders and g_s. lcf cannot detect every such
  change (a changed symbol can decode to another valid image): these count how many it still catches, and that
  none crashes. A flip inside a CRC field is undone by the recomputation and is not counted.

Outcomes: **caught** (an ``LcfError``: exit codes 3 format, 4 corrupt, 5 limit, 6 model), **decoded** (no error;
pixels differ from the undamaged file's, or not), **crash** (any other exception, or an ``LcfError`` made by the
codec's last-resort wrapper, ``lcf.codec.UNEXPECTED``). Checked for every case: the damaged file is unchanged after
the decode, a failed decode leaves no output and no temporary file, the user's file beside it is unchanged; the
slowest case and the process's peak RSS (which includes PyTorch and the weights) are reported. Targets
(docs/SECURITY.md): every damage of the first four classes caught, no crash, no hang, peak RSS under 1 GiB, no user
file touched.

**Decompression bombs** (``--bombs``): valid files whose symbols are all zero claim an image of each size (a few
kB for megapixels); each is decoded in a fresh process, with the default memory budget and with
``LCF_MAX_MEMORY=1`` (GiB), and its outcome, time and peak RSS are reported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lcf import api
from lcf.bench.scripts import command_line, write_fragment
from lcf.codec import UNEXPECTED
from lcf.errors import LcfError

CLASSES = ("bit flip", "truncation", "insertion", "deletion", "bit flip (CRCs recomputed)")
PREAMBLE = 10  # signature + version


def fix_crcs(data: bytes | bytearray) -> bytes:
    """Recompute the CRC of every chunk that can still be framed (the damage is judged on its content)."""
    out = bytearray(data)
    pos = PREAMBLE
    while pos + 12 <= len(out):
        end = pos + 12 + int.from_bytes(out[pos : pos + 4], "big")
        if end > len(out):
            break
        out[end - 4 : end] = zlib.crc32(out[pos + 4 : end - 4]).to_bytes(4, "big")
        pos = end
    return bytes(out)


def damaged(kind: str, data: bytes, rng: random.Random, every: bool, count: int) -> Iterator[tuple[bytes, int]]:
    """(damaged copy, position) of class ``kind``: every position when ``every``, else ``count`` random ones."""
    n = len(data)
    if kind == "bit flip":
        cases = (
            [(i, b) for i in range(n) for b in range(8)]
            if every
            else [(rng.randrange(n), rng.randrange(8)) for _ in range(count)]
        )
        for i, b in cases:
            yield data[:i] + bytes([data[i] ^ (1 << b)]) + data[i + 1 :], i
    elif kind == "truncation":
        for length in range(n) if every else (rng.randrange(n) for _ in range(count)):
            yield data[:length], length
    elif kind == "insertion":
        for i in range(n + 1) if every else (rng.randrange(n + 1) for _ in range(count)):
            yield data[:i] + rng.randbytes(1 if every else rng.randint(1, 16)) + data[i:], i
    elif kind == "deletion":
        for i in range(n) if every else (rng.randrange(n) for _ in range(count)):
            yield data[:i] + data[i + (1 if every else rng.randint(1, 16)) :], i
    elif kind == "bit flip (CRCs recomputed)":
        for i in range(n) if every else (rng.randrange(n) for _ in range(count)):
            out = fix_crcs(data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :])
            if out != data:  # a flip inside a CRC field is undone by the recomputation
                yield out, i
    else:
        raise ValueError(kind)


@dataclass
class Tally:
    cases: int = 0
    caught: Counter = field(default_factory=Counter)  # exit code -> count
    decoded_changed: int = 0
    decoded_same: int = 0
    crashes: list[str] = field(default_factory=list)
    file_problems: list[str] = field(default_factory=list)
    slowest: float = 0.0
    decoded_at: Counter = field(default_factory=Counter)  # where the damage was, for files that decoded


class Folder:
    """A folder holding the damaged file, a user's file, and the output: checked after every decode."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(exist_ok=True)
        self.src, self.dst, self.user = root / "in.lcf", root / "out.png", root / "holiday.png"
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(self.user)
        self.user_digest = hashlib.sha256(self.user.read_bytes()).digest()

    def problems(self, data: bytes, failed: bool) -> list[str]:
        found = []
        if self.src.read_bytes() != data:
            found.append("the damaged file was changed")
        if hashlib.sha256(self.user.read_bytes()).digest() != self.user_digest:
            found.append("the user's file was changed")
        names = {p.name for p in self.root.iterdir()}
        expected = {self.src.name, self.user.name} | (set() if failed else {self.dst.name})
        if names != expected:
            found.append(f"the folder holds {sorted(names)}, expected {sorted(expected)}")
        return found


def run_case(
    folder: Folder, data: bytes, reference: np.ndarray, weights: str | None, tally: Tally, where: str = ""
) -> None:
    folder.src.write_bytes(data)
    tally.cases += 1
    start = time.perf_counter()
    failed = True
    try:
        api.decode_file(folder.src, folder.dst, weights=weights)
        failed = False
    except LcfError as exc:
        if UNEXPECTED in exc.message:
            tally.crashes.append(f"last-resort wrapper: {exc}")
        else:
            tally.caught[exc.exit_code] += 1
    except Exception as exc:  # noqa: BLE001 - what the sweep hunts
        tally.crashes.append(f"{type(exc).__name__}: {exc}")
    tally.slowest = max(tally.slowest, time.perf_counter() - start)
    tally.file_problems += folder.problems(data, failed)
    if not failed:
        with Image.open(folder.dst) as image:
            pixels = np.asarray(image.convert("RGB"))
        same = pixels.shape == reference.shape and np.array_equal(pixels, reference)
        tally.decoded_same += same
        tally.decoded_at[where] += 1
        tally.decoded_changed += not same
        folder.dst.unlink()  # ours: made by this case


def synthetic(width: int, height: int, seed: int) -> Image.Image:
    """Gradient, noise and edges: coded channels, escapes and texture like a photo's."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 128 + 0 * x], axis=-1)
    rgb[height // 2 :, : width // 2] = rng.integers(0, 256, (height - height // 2, width // 2, 3))
    rgb[: height // 2, width // 2 :] = np.where(
        ((x // 8 + y // 8) % 2 == 0)[: height // 2, width // 2 :, None], 230, 25
    )
    return Image.fromarray(rgb.astype(np.uint8))


def bomb(codec, side: int, coded_channels: int = 0) -> bytes:
    """A valid file of a ``side`` x ``side`` image whose z and y are all zero, with the first ``coded_channels``
    channels marked coded (their zeros coded in ANCH/NANC: a decoder builds their entropy parameters; 0: none)."""
    from lcf.codec import Symbols
    from lcf.container import Chunk, Header, encode_channel_bitmap, write_container

    m, mz, cells = codec.config.M, codec.config.Mz, -(-side // 64)
    z, y = np.zeros((mz, cells, cells), np.int32), np.zeros((m, 4 * cells, 4 * cells), np.int32)
    coded = np.zeros(m, bool)
    coded[:coded_channels] = True
    hyper, anchor, nonanchor, _ = codec.code_symbols(Symbols(z, y, coded), estimate=False)
    header = Header(
        width=side,
        height=side,
        color=0,
        model_id=codec.weights.model_id,
        quality=4.0,
        decoder=codec.weights.default_decoder,
        latent_channels=m,
        hyper_channels=mz,
    )
    return write_container(
        header,
        [
            Chunk("CMAP", encode_channel_bitmap(coded)),
            Chunk("HYPR", hyper),
            Chunk("ANCH", anchor),
            Chunk("NANC", nonanchor),
        ],
    )


def peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM of /proc/self/status, which starts afresh at exec (ru_maxrss
    keeps the parent's peak across fork and exec, so a child would report its parent's); ru_maxrss elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bomb_worker(src: str, weights: str | None) -> None:
    """Decode ``src`` as ``lcf decode`` does; print the outcome, seconds and peak RSS as JSON."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            api.decode_file(src, Path(tmp) / "out.png", weights=weights)
            outcome = "decoded"
        except LcfError as exc:
            outcome = f"{type(exc).__name__} (exit {exc.exit_code})"
    print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - start, "rss_mib": peak_rss_mib()}))


def bombs(codec, sides: list[int], weights: str | None, tmp: Path) -> list[str]:
    rows = [
        "| claimed image | file bytes | LCF_MAX_MEMORY | outcome | seconds | peak RSS MiB |",
        "|---|---:|---|---|---:|---:|",
    ]
    for side in sides:
        path = tmp / f"bomb-{side}.lcf"
        path.write_bytes(bomb(codec, side))
        for budget in (None, "1"):
            env = dict(os.environ)
            env.pop("LCF_MAX_MEMORY", None)
            if budget:
                env["LCF_MAX_MEMORY"] = budget
            done = subprocess.run(
                [sys.executable, __file__, "--bomb-worker", str(path), weights or ""],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(
                f"| {side}x{side} ({side * side / 1e6:.1f} MP) | {path.stat().st_size:,} | "
                f"{budget or 'unset (8 GiB)'} | {r['outcome']} | {r['seconds']:.1f} | {r['rss_mib']:,.0f} |"
            )
    return rows


def place(data: bytes, position: int) -> str:
    """Where ``position`` lies in the undamaged file: the chunk and the field (HEAD: its payload offset)."""
    from lcf.container import walk_chunks

    for c in walk_chunks(data):
        if c.offset <= position < c.crc_offset + 4:
            if position >= c.crc_offset:
                return f"{c.type} CRC"
            if position < c.payload_offset:
                return f"{c.type} length/type"
            offset = position - c.payload_offset
            return f"HEAD payload byte {offset}" if c.type == "HEAD" else f"{c.type} payload"
    return "signature/version" if position < PREAMBLE else "end of file"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f} %" if whole else "-"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--bomb-worker"]:
        bomb_worker(argv[1], argv[2] or None)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    p.add_argument("--images", type=Path, default=None, help="folder of larger test images (e.g. Kodak PNGs)")
    p.add_argument("--max-images", type=int, default=1)
    p.add_argument("--quality", type=float, default=4.0)
    p.add_argument("--small", default="96x64", help="size of the small image whose every byte is damaged")
    p.add_argument("--large", default="512x384", help="size of the larger built-in image ('' for none)")
    p.add_argument("--random", type=int, default=2000, help="random cases per larger file and cheap class")
    p.add_argument(
        "--random-deep",
        type=int,
        default=200,
        help="random cases per larger file of the CRC-recomputed class (each is a whole decode)",
    )
    p.add_argument("--classes", default=",".join(CLASSES), help="some of: " + ", ".join(CLASSES))
    p.add_argument("--bombs", default="1024,4096", help="sides of the decompression bombs ('' for none)")
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/corruption_sweep.md"))
    args = p.parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    if unknown := set(classes) - set(CLASSES):
        raise SystemExit(f"unknown classes {sorted(unknown)}; known: {', '.join(CLASSES)}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    weights = None if args.weights is None else str(args.weights.resolve())
    codec = api.get_codec(weights)
    sw, sh = (int(v) for v in args.small.split("x"))
    sources = [(f"{sw}x{sh} built-in", synthetic(sw, sh, 1), True)]
    if args.large:
        lw, lh = (int(v) for v in args.large.split("x"))
        sources.append((f"{lw}x{lh} built-in", synthetic(lw, lh, 2), False))
    if args.images is not None:
        for path in sorted(args.images.glob("*.png"))[: args.max_images]:
            sources.append((path.name, Image.open(path).convert("RGB"), False))
    rng = random.Random(args.seed)
    rss_start = peak_rss_mib()
    rows, totals = [], {c: Tally() for c in classes}
    with tempfile.TemporaryDirectory(prefix="lcf-sweep-") as tmp:
        folder = Folder(Path(tmp) / "user")
        for name, image, every in sources:
            data = codec.encode(image, args.quality)
            reference = codec.decode(data).rgb
            for kind in classes:
                count = args.random_deep if kind == "bit flip (CRCs recomputed)" else args.random
                tally = Tally()
                for case, position in damaged(kind, data, rng, every, count):
                    run_case(folder, case, reference, weights, tally, f"{name}: {place(data, position)}")
                rows.append((name, len(data), "every position" if every else f"{count} random", kind, tally))
                total = totals[kind]
                total.cases += tally.cases
                total.caught.update(tally.caught)
                total.decoded_changed += tally.decoded_changed
                total.decoded_same += tally.decoded_same
                total.crashes += tally.crashes
                total.file_problems += tally.file_problems
                total.slowest = max(total.slowest, tally.slowest)
                total.decoded_at.update(tally.decoded_at)
                print(
                    f"{name} {kind}: {tally.cases} cases, {sum(tally.caught.values())} caught, "
                    f"{len(tally.crashes)} crashes",
                    file=sys.stderr,
                )
        peak = peak_rss_mib()  # before the bombs: building one holds a whole image's entropy parameters
        bomb_rows = bombs(codec, [int(s) for s in args.bombs.split(",") if s], weights, Path(tmp))
    md = [
        f"Command: `{command_line('corruption_sweep', argv)}`; model id {codec.weights.model_id.hex()}, quality "
        f"{args.quality:g}, seed {args.seed}.",
        "",
        "| file | bytes | positions | damage | cases | caught | exit 3 / 4 / 5 / 6 | decoded, pixels changed | "
        "decoded, same pixels | crashes | file problems | slowest s |",
        "|---|---:|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, size, positions, kind, t in rows + [("**all**", "", "", kind, totals[kind]) for kind in classes]:
        caught = sum(t.caught.values())
        codes = " / ".join(str(t.caught.get(code, 0)) for code in (3, 4, 5, 6))
        md.append(
            f"| {name} | {size} | {positions} | {kind} | {t.cases:,} | {caught:,} ({percent(caught, t.cases)}) "
            f"| {codes} | {t.decoded_changed:,} | {t.decoded_same:,} | {len(t.crashes)} | "
            f"{len(t.file_problems)} | {t.slowest:.2f} |"
        )
    findings = [c for t in totals.values() for c in t.crashes + t.file_problems]
    md += [
        "",
        f"Peak RSS of the sweep process: {peak:,.0f} MiB ({rss_start:,.0f} MiB after loading "
        f"PyTorch and the entropy model, before the first decode). Findings: {len(findings)}.",
    ]
    md += [f"* {f}" for f in sorted(set(findings))[:20]]
    decoded_at = Counter()
    for t in totals.values():
        decoded_at.update(t.decoded_at)
    if decoded_at:
        md += [
            "",
            "Damaged files that decoded, by where the damage was: "
            + "; ".join(f"{k} ({v})" for k, v in sorted(decoded_at.items()))
            + ".",
        ]
    if len(bomb_rows) > 2:
        md += ["", "Decompression bombs (each decoded in a fresh process):", "", *bomb_rows]
    md += ["", f"Wall time {time.perf_counter() - start:.0f} s."]
    write_fragment(args.out, md)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
