"""The rate-control options of ``lcf encode`` and ``lcf batch`` (:mod:`lcf.ratecontrol`): a target instead of a
quality, and what ``-v`` prints about it."""

from __future__ import annotations

from typing import Annotated

import typer

from lcf.constants import DEFAULT_QUALITY, MAX_QUALITY, MIN_QUALITY
from lcf.errors import UsageError
from lcf.ratecontrol import Outcome, Target, parse_size

Quality = Annotated[
    float | None,
    typer.Option(
        "--quality",
        "-q",
        min=MIN_QUALITY,
        max=MAX_QUALITY,
        show_default=False,
        help="1 (smallest) .. 7 (best); any value in between; default 4. Not with a --target-*.",
    ),
]
TargetSize = Annotated[
    str | None,
    typer.Option(
        "--target-size",
        metavar="BYTES",
        show_default=False,
        help="The best quality whose file fits in BYTES: 12000, 10KB, 1.5MB (k, M, G: powers of 1000) or 2MiB "
        "(KiB, MiB, GiB: powers of 1024).",
    ),
]
TargetBpp = Annotated[
    float | None,
    typer.Option(
        "--target-bpp",
        metavar="X",
        show_default=False,
        help="The best quality whose file has at most X bits per pixel.",
    ),
]
TargetPsnr = Annotated[
    float | None,
    typer.Option(
        "--target-psnr",
        metavar="DB",
        show_default=False,
        help="The smallest file whose decoded image has a PSNR of at least DB dB.",
    ),
]
KeepNearest = Annotated[
    bool,
    typer.Option(
        "--keep-nearest",
        help="When no quality meets the target, write the nearest file (quality 1 for a size too small, the best PSNR "
        "for a PSNR too high) with a warning instead of failing with exit code 9.",
    ),
]


def choose(
    quality: float | None, size: str | None, bpp: float | None, psnr: float | None, keep_nearest: bool
) -> tuple[float, Target | None]:
    """(quality, target) from the options; UsageError when they conflict. The quality is 4 unless given."""
    given = [
        (name, value)
        for name, value in (("--target-size", size), ("--target-bpp", bpp), ("--target-psnr", psnr))
        if value is not None
    ]
    if len(given) > 1:
        raise UsageError(f"{' and '.join(name for name, _ in given)} cannot be combined: give one target")
    if given and quality is not None:
        raise UsageError(f"--quality and {given[0][0]} cannot be combined: the target chooses the quality")
    if keep_nearest and not given:
        raise UsageError("--keep-nearest needs a target: --target-size, --target-bpp or --target-psnr")
    if not given:
        return (DEFAULT_QUALITY if quality is None else quality), None
    name, value = given[0]
    try:
        target = Target.size(value) if isinstance(value, str) else Target(name.removeprefix("--target-"), value)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc.message}") from None
    return DEFAULT_QUALITY, target


def describe(outcome: Outcome, quality: float | None, effort: int) -> str:
    """One line for ``-v``: the target, whether it was met, the quality chosen (exactly: ``-q`` with it writes the
    same file) and how many probes it took."""
    target = Target(outcome.kind, outcome.value)
    end = ""
    if outcome.met and quality == MAX_QUALITY and outcome.kind != "psnr":
        end = " (the highest: the target allows more)"
    elif outcome.met and quality == MIN_QUALITY and outcome.kind == "psnr":
        end = " (the lowest: it already reaches more)"
    state = "met" if outcome.met else "not met, nearest kept"
    level = f" at effort {effort}" if effort else ""
    return f"target {target.describe()} {state}: quality {quality!r}{end}, {outcome.probes} probes{level}"


__all__ = ["KeepNearest", "Quality", "TargetBpp", "TargetPsnr", "TargetSize", "choose", "describe", "parse_size"]
