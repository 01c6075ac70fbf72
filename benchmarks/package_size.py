"""What the weights cost: in the wheel (zip-deflated), in the tracked tree (what every GPU lease call carries), and
what a released model's decode-only copy (manifest + entropy model + one decoder) adds to both, per decoder.

    python benchmarks/package_size.py [--weights weights] [--wheel dist/lcf-0.1.0-py3-none-any.whl]

Deflate at zipfile's default level stands in for the wheel's compression (setuptools writes wheels with
ZIP_DEFLATED); --wheel also reports a built wheel's real size. The tracked tree is `git ls-files` (the working copy's
sizes), when git is there. Prints a Markdown table (docs/BENCHMARKS.md, "What the weights cost").
"""

from __future__ import annotations

import argparse
import subprocess
import zlib
from pathlib import Path

from lcf.manifest import MANIFEST
from lcf.weights import read_manifest

MB = 1e6


def deflated(path: Path) -> int:
    return len(zlib.compress(path.read_bytes(), zlib.Z_DEFAULT_COMPRESSION))


def tracked_bytes(root: Path) -> tuple[int, int] | None:
    """Bytes of every tracked file and of those under weights/, or None without git."""
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    paths = [root / n for n in names.decode().split("\0") if n]
    sizes = {p: p.stat().st_size for p in paths if p.is_file()}
    weights = sum(size for p, size in sizes.items() if p.relative_to(root).parts[0] == "weights")
    return sum(sizes.values()), weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=Path(__file__).resolve().parent.parent / "weights")
    parser.add_argument("--wheel", type=Path, default=None, help="a built wheel, to report its size")
    args = parser.parse_args()
    manifest = read_manifest(args.weights)
    files = [MANIFEST, manifest.encoder_file, manifest.entropy_file, *(d.file for d in manifest.decoders.values())]
    raw = {f: (args.weights / f).stat().st_size for f in files}
    packed = {f: deflated(args.weights / f) for f in files}
    print(f"model {manifest.model_id.hex()} in {args.weights}\n")
    print("| file | bytes | deflated (wheel) |\n|---|---|---|")
    for f in files:
        print(f"| {f} | {raw[f]:,} | {packed[f]:,} |")
    print(f"| **all** | **{sum(raw.values()):,}** | **{sum(packed.values()):,}** |\n")
    print("A released model (decode-only copy: manifest + entropy + one decoder), per decoder kept:\n")
    print("| decoder | tracked tree (MB) | wheel (MB) |\n|---|---|---|")
    base = [MANIFEST, manifest.entropy_file]
    for name, entry in manifest.decoders.items():
        kept = [*base, entry.file]
        print(f"| {name} | {sum(raw[f] for f in kept) / MB:.2f} | {sum(packed[f] for f in kept) / MB:.2f} |")
    tracked = tracked_bytes(args.weights.resolve().parent)
    if tracked is not None:
        print(f"\ntracked tree: {tracked[0] / MB:.2f} MB, of which weights/ {tracked[1] / MB:.2f} MB")
    if args.wheel is not None:
        print(f"wheel {args.wheel.name}: {args.wheel.stat().st_size / MB:.2f} MB")


if __name__ == "__main__":
    main()
