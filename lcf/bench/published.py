"""Published Kodak R-D points (``../shared/reference/kodak_published.csv``) as ``RDCurve``s marked "published".

The CSV has the columns ``codec, quality, bpp, psnr_rgb, ms_ssim, source_file``: one row per R-D point, values
averaged over the 24 Kodak images by whoever published them (mostly CompressAI's ``results/image/kodak/*.json``).
The path is always an argument; nothing here assumes ``../shared`` exists.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

from lcf.bench.results import RDCurve, RDPoint

REQUIRED_COLUMNS = ("codec", "quality", "bpp", "psnr_rgb", "ms_ssim", "source_file")


def _number(text: str, path: Path, line: int, column: str) -> float:
    if text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: column {column!r} is {text!r}, not a number") from None


def read_published(path: str | Path) -> list[RDCurve]:
    """One curve per codec in file order, points sorted by bpp; ``note`` holds the distinct source files."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(REQUIRED_COLUMNS)}")
        points: dict[str, list[RDPoint]] = defaultdict(list)
        sources: dict[str, list[str]] = defaultdict(list)
        for line, row in enumerate(reader, start=2):
            codec = row["codec"].strip()
            if not codec:
                raise ValueError(f"{path}:{line}: empty codec name")
            points[codec].append(
                RDPoint(
                    param=row["quality"].strip(),
                    bpp=_number(row["bpp"], path, line, "bpp"),
                    psnr=_number(row["psnr_rgb"], path, line, "psnr_rgb"),
                    ms_ssim=_number(row["ms_ssim"], path, line, "ms_ssim"),
                )
            )
            src = row["source_file"].strip()
            if src and src not in sources[codec]:
                sources[codec].append(src)
    return [
        RDCurve(
            codec=codec,
            points=tuple(sorted(pts, key=lambda p: p.bpp)),
            source="published",
            note="; ".join(sources[codec]),
        )
        for codec, pts in points.items()
    ]
