"""Rate control: the quality that meets a file-size or PSNR target (``lcf encode --target-size/-bpp/-psnr``).

Quality is continuous but stored to 1/256, so the answer is a point k/256 of the grid k = 256..1792 (quality 1..7):

* ``--target-size B`` / ``--target-bpp X``: the best quality whose file has at most B bytes (X·pixels/8 rounded
  down): the largest k with size(k) ≤ B, as ``cwebp -size`` and ``avifenc`` pipelines use it.
* ``--target-psnr P``: the smallest file whose decoded image (the file's recommended decoder, exactly as a decoder
  will produce it) has a PSNR of at least P dB: the smallest k with PSNR(k) ≥ P.

What does not depend on the quality is done once (:meth:`lcf.codec.Codec.analysis`: loading, padding, g_a, the alpha
and metadata chunks); each probe redoes only what does: the gain, h_a, rounding and, for a size, the entropy coding
of the three streams into the exact container (its size is the file's, not an estimate), for a PSNR, the synthesis
g_s (a PSNR probe codes nothing: the decoded pixels depend only on ŷ). ::

    image ─ load, pad, g_a ─ features ──┬─ ·gain(q1) ─ h_a ─ round ─ code ── size(q1)   (size / bpp targets)
                (once)                  ├─ ·gain(q2) ─ round ─ g_s ── PSNR(q2)           (PSNR targets)
                                        └─ ...  the chosen q: the file of a plain encode at q, byte for byte

Search (:func:`search`): size and PSNR rise with quality in practice, not provably, so nothing relies on it
blindly. A residual r(k) (log size − log target, or PSNR − target) is probed at quality 4, then extrapolated with the
slope seen (a prior slope for the second probe) until the target is bracketed, then interpolated inside the bracket
(regula falsi with the Illinois modification, bisection as a last resort) until two adjacent grid points straddle
it. The answer is then the best feasible probe seen (the largest feasible k for a size, the smallest for a PSNR), so a
non-monotone curve costs at most optimality, never the target. A target no quality meets (a size below quality 1's
file, a PSNR above the best one) is an :class:`UnreachableTargetError` naming the nearest reachable value, unless
``keep_nearest``, which returns that nearest file, flagged ``met=False``.

Effort > 0 (latent refinement, which depends on the quality): the search runs first at effort 0 (cheap probes),
then again with refined probes started from that answer and its slope, so the file is byte for byte a plain
``lcf encode -q Q --effort E``; each refined probe costs a refinement (a few per image).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from lcf.constants import DEFAULT_QUALITY, MAX_QUALITY, MIN_QUALITY
from lcf.container.header import QUALITY_SCALE
from lcf.errors import UnreachableTargetError, UsageError
from lcf.options import check_effort
from lcf.reports import psnr

if TYPE_CHECKING:
    from lcf.codec import Analysis, Codec, Symbols

K_MIN, K_MAX = int(MIN_QUALITY * QUALITY_SCALE), int(MAX_QUALITY * QUALITY_SCALE)  # the quality grid, in 1/256
K_START = int(DEFAULT_QUALITY * QUALITY_SCALE)  # the first probe
# Prior slopes per quality unit, for the second probe only (later ones use the slopes they see). Measured with the
# shipped weights on kodim01 (sizes 13,792 -> 40,948 bytes and PSNR 25.16 -> 27.19 dB from quality 1 to 7).
SIZE_SLOPE = 0.18  # ln(bytes)
PSNR_SLOPE = 0.35  # dB
MAX_PROBES = 40  # a bound on a search that should take ~5; reaching it still returns the best feasible probe

KINDS = ("size", "bpp", "psnr")
UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")


def parse_size(text: str | int) -> int:
    """A file size -> bytes: ``12000``, ``10KB``, ``1.5MB``, ``2MiB``, ``10 kB``. Units are case-insensitive and
    all mean bytes: B, k/kB, M/MB, G/GB are powers of 1000 (as file managers and ``ls -h --si`` count), KiB, MiB,
    GiB powers of 1024. A fraction of a byte is dropped (``1.0005kB`` = 1000 bytes). UsageError below 1 byte."""
    if isinstance(text, int) and not isinstance(text, bool):
        number, unit = Decimal(text), ""
    else:
        match = _SIZE.fullmatch(str(text))
        if match is None or match.group(2).lower() not in UNITS:
            raise UsageError(
                f"{text!r} is not a size; give bytes (12000) or a number with a unit: kB, MB, GB "
                "(powers of 1000) or KiB, MiB, GiB (powers of 1024), e.g. 10KB, 1.5MB"
            )
        try:
            number, unit = Decimal(match.group(1)), match.group(2).lower()
        except InvalidOperation:  # pragma: no cover (the pattern admits only decimal numbers)
            raise UsageError(f"{text!r} is not a size") from None
    size = int(number * UNITS[unit])
    if size < 1:
        raise UsageError(f"a target size must be at least 1 byte, got {text!r}")
    return size


@dataclass(frozen=True)
class Target:
    """What to aim for: ``kind`` "size" (``value`` bytes, at most), "bpp" (bits per pixel of the whole file, at
    most) or "psnr" (dB, at least, of the decoded image against the input's RGB, as ``lcf encode -v`` reports it)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UsageError(f"a target is one of {', '.join(KINDS)}, got {self.kind!r}")
        value = self.value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise UsageError(f"a {self.kind} target must be a positive number, got {value!r}")
        if self.kind == "size":
            if int(value) != value:
                raise UsageError(f"a size target is a whole number of bytes, got {value!r}")
            object.__setattr__(self, "value", int(value))

    @classmethod
    def size(cls, size: str | int) -> Target:
        """A size target from bytes or a string with a unit (:func:`parse_size`)."""
        return cls("size", parse_size(size))

    def max_bytes(self, pixels: int) -> int:
        """The largest file that meets a size or bpp target for an image of ``pixels`` pixels."""
        return int(self.value) if self.kind == "size" else math.floor(self.value * pixels / 8)

    def describe(self) -> str:
        if self.kind == "size":
            return f"{int(self.value):,} bytes"
        return f"{self.value:g} bpp" if self.kind == "bpp" else f"{self.value:g} dB PSNR"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}


@dataclass(frozen=True)
class Probe:
    """One quality tried: the exact file size (size and bpp targets) or the decoded PSNR (PSNR targets)."""

    quality: float
    effort: int
    bytes: int | None = None
    psnr: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"quality": self.quality, "effort": self.effort, "bytes": self.bytes, "psnr": _json_float(self.psnr)}


@dataclass(frozen=True)
class Outcome:
    """What a target came to, for reports (``EncodeReport.target``, ``--json``): the target, whether it was met,
    the number of probes, and when it was not, why (``message``) and the nearest reachable value (``nearest``, in the
    target's unit: the smallest file's bytes or bpp, the best PSNR in dB)."""

    kind: str
    value: float
    met: bool
    probes: int
    message: str | None = None
    nearest: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``"target"`` object of the ``--json`` records: lcf batch's (every file), lcf encode's for a file failed
        for its target; a written file's (``asdict`` of its EncodeReport) has the same fields. ``kind``, ``value``,
        ``met``, ``probes``, ``message``, ``nearest``."""
        return asdict(self)


@dataclass(frozen=True)
class RateResult:
    """The file rate control chose: ``data`` is byte for byte ``Codec.encode(image, quality, decoder, effort)``.
    ``met`` is False only for the nearest file of an unreachable target kept with ``keep_nearest``. ``psnr`` is the
    decoded image's PSNR (None for a size target unless measured); ``probes`` every quality tried, in order."""

    data: bytes = field(repr=False)
    target: Target
    quality: float
    effort: int
    decoder: str
    met: bool
    width: int
    height: int
    psnr: float | None
    probes: tuple[Probe, ...]
    message: str | None = None  # why the target was not met (with keep_nearest), else None
    nearest: float | None = None  # the nearest reachable value when the target was not met (Outcome.nearest)

    @property
    def bytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return len(self.data) * 8 / (self.width * self.height)

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.target.kind, self.target.value, self.met, len(self.probes), self.message, self.nearest)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.as_dict(),
            "met": self.met,
            "quality": self.quality,
            "effort": self.effort,
            "decoder": self.decoder,
            "bytes": self.bytes,
            "bpp": self.bpp,
            "psnr": _json_float(self.psnr),
            "probes": len(self.probes),
            "message": self.message,
            "nearest": _json_float(self.nearest),
        }


def _json_float(value: float | None) -> float | str | None:
    return "inf" if value is not None and math.isinf(value) else value


# -- the search on the grid ----------------------------------------------------------------------------------------


def search(
    residual: Callable[[int], float],
    *,
    start: int = K_START,
    slope: float,
    k_min: int = K_MIN,
    k_max: int = K_MAX,
    max_probes: int = MAX_PROBES,
) -> dict[int, float]:
    """Probe ``residual(k)`` (rising with k in practice; < 0 is the "low" side) on the grid k_min..k_max until two
    adjacent points straddle 0, or an end of the grid is on the wrong side (all high down to k_min, or all low up to
    k_max), or ``max_probes``. ``slope``: the prior rise of the residual per grid step, for extrapolating before two
    probes give one. Returns every probe, {k: residual}; the caller picks the best feasible one."""
    seen: dict[int, float] = {}
    retained = ""  # which end each probe inside a bracket moved, "l" or "h", in order
    k = min(max(start, k_min), k_max)
    while True:
        seen[k] = float(residual(k))
        lo, hi = _bracket(seen)
        if lo is not None and hi is not None:
            retained += "l" if k == lo else "h"
            if hi - lo == 1:
                break
        if (lo is None and hi == k_min) or (hi is None and lo == k_max) or len(seen) >= max_probes:
            break
        k = _next(seen, lo, hi, slope, k_min, k_max, retained)
        if k in seen:  # cannot happen with a consistent bracket; a guard against looping on a non-monotone curve
            break
    return seen


def _bracket(seen: dict[int, float]) -> tuple[int | None, int | None]:
    """(largest low k below the smallest high k, smallest high k); None where there is none."""
    hi = min((k for k, r in seen.items() if not r < 0), default=None)
    lo = max((k for k, r in seen.items() if r < 0 and (hi is None or k < hi)), default=None)
    return lo, hi


def _next(
    seen: dict[int, float], lo: int | None, hi: int | None, slope: float, k_min: int, k_max: int, retained: str
) -> int:
    if lo is not None and hi is not None:
        r_lo, r_hi = seen[lo], seen[hi]
        moved = len(retained) - len(retained.rstrip(retained[-1:] or " "))  # the same end moved this many times
        if moved >= 2:  # Illinois: the other end has not moved for a while, so the line through it overshoots
            if retained[-1] == "h":
                r_lo *= 0.5 ** (moved - 1)
            else:
                r_hi *= 0.5 ** (moved - 1)
        if moved >= 5 or not (math.isfinite(r_hi) and r_hi > r_lo):
            k = (lo + hi) // 2
        else:
            k = round(lo + (hi - lo) * (-r_lo) / (r_hi - r_lo))
        return min(max(k, lo + 1), hi - 1)
    rising = _seen_slope(seen) or slope
    if lo is not None:  # everything low so far (no high point, else they would bracket): go up
        step = -seen[lo] / rising
        return min(k_max, lo + max(1, math.ceil(1.25 * step)))
    assert hi is not None  # a probe is either low or high, and there is one
    step = seen[hi] / rising  # everything high so far: go down (to k_min at once if the residual is infinite)
    return k_min if not math.isfinite(step) else max(k_min, hi - max(1, math.ceil(1.25 * step)))


def _seen_slope(seen: dict[int, float]) -> float | None:
    """The residual's rise per step between the two probes farthest apart, if it rises and is finite."""
    finite = sorted(k for k, r in seen.items() if math.isfinite(r))
    if len(finite) < 2:
        return None
    a, b = finite[0], finite[-1]
    rise = (seen[b] - seen[a]) / (b - a)
    return rise if rise > 0 else None


# -- a target on a codec -------------------------------------------------------------------------------------------


class _Probes:
    """The probes of one image at one effort, with the payload (file bytes and/or symbols) of the two that may be
    returned (the best feasible one and the nearest one) kept, the others dropped."""

    def __init__(
        self,
        codec: Codec,
        analysis: Analysis,
        target: Target,
        decoder: str,
        effort: int,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.codec, self.analysis, self.target = codec, analysis, target
        self.decoder, self.effort, self.progress = decoder, effort, progress
        prepared = analysis.prepared
        self.pixels = prepared.width * prepared.height
        self.limit = target.max_bytes(self.pixels) if target.kind != "psnr" else None
        self.log: list[Probe] = []
        self.payloads: dict[int, tuple[bytes | None, Symbols]] = {}

    def residual(self, k: int) -> float:
        """log(bytes) − log(limit + ½) for sizes (< 0 iff it fits), PSNR − target for PSNR (< 0 iff it misses)."""
        quality = k / QUALITY_SCALE
        symbols = self.codec.symbols_at(self.analysis, quality, self.effort, self.decoder, self.progress)
        if self.limit is not None:
            data = self.codec.write(self.analysis, quality, self.decoder, symbols)[0]
            self._keep(Probe(quality, self.effort, bytes=len(data)), k, data, symbols)
            return math.log(len(data)) - math.log(self.limit + 0.5)
        header = self.codec.header_for(self.analysis.prepared, quality, self.decoder)
        value = psnr(self.analysis.prepared.rgb, self.codec.synthesise(symbols, header, self.decoder))
        self._keep(Probe(quality, self.effort, psnr=value), k, None, symbols)
        return value - float(self.target.value)

    def _keep(self, probe: Probe, k: int, data: bytes | None, symbols: Symbols) -> None:
        self.log.append(probe)
        self.payloads[k] = (data, symbols)
        wanted = {self.best(), self.nearest()}
        for other in [j for j in self.payloads if j not in wanted]:
            del self.payloads[other]

    def feasible(self, probe: Probe) -> bool:
        if self.limit is not None:
            return probe.bytes is not None and probe.bytes <= self.limit
        return probe.psnr is not None and probe.psnr >= self.target.value

    def best(self) -> int | None:
        """The grid point of the best feasible probe: the highest quality that fits, or the lowest that reaches."""
        ks = [_k(p) for p in self.log if self.feasible(p)]
        if not ks:
            return None
        return max(ks) if self.limit is not None else min(ks)

    def nearest(self) -> int:
        """The grid point of the probe nearest the target from the wrong side: the smallest file, the best PSNR."""
        if self.limit is not None:
            return _k(min(self.log, key=lambda p: (p.bytes, p.quality)))
        return _k(max(self.log, key=lambda p: (p.psnr, -p.quality)))


def _k(probe: Probe) -> int:
    return round(probe.quality * QUALITY_SCALE)


def encode_to_target(
    codec: Codec,
    image: Any,
    target: Target,
    *,
    decoder: str | None = None,
    effort: int = 0,
    keep_nearest: bool = False,
    measure: bool = False,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RateResult:
    """Encode ``image`` (anything :meth:`Codec.encode` takes) at the quality that meets ``target`` (see the module
    docstring). ``measure``: also report the PSNR of a size or bpp target's file (one more synthesis; a PSNR
    target's is always known). ``name`` (the source's path) prefixes messages. ``progress(done, total)`` is called
    after each refinement step of each refined probe (effort > 0).

    Raises UnreachableTargetError (exit code 9) when no quality meets the target, unless ``keep_nearest``; and
    whatever :meth:`Codec.encode` raises."""
    if not isinstance(target, Target):
        raise UsageError(f"target must be an lcf.ratecontrol.Target, got {type(target).__name__}")
    effort = check_effort(effort)
    decoder = codec.resolve_decoder(decoder)
    analysis = codec.analysis(image, effort)
    probes = _Probes(codec, analysis, target, decoder, 0, None)
    prior = SIZE_SLOPE if target.kind != "psnr" else PSNR_SLOPE
    seen = search(probes.residual, slope=prior / QUALITY_SCALE)
    log = list(probes.log)
    if effort:
        start = probes.best() or probes.nearest()
        probes = _Probes(codec, analysis, target, decoder, effort, progress)
        search(probes.residual, start=start, slope=_seen_slope(seen) or prior / QUALITY_SCALE)
        log += probes.log
    best = probes.best()
    message, nearest = None, None
    if best is None:
        message, nearest = _unreachable(target, probes, name)
        if not keep_nearest:
            outcome = Outcome(target.kind, target.value, False, len(log), message, nearest)
            raise UnreachableTargetError(message + "; --keep-nearest writes that file instead", outcome=outcome)
    k = best if best is not None else probes.nearest()
    data, symbols = probes.payloads[k]
    quality = k / QUALITY_SCALE
    probe = next(p for p in reversed(probes.log) if _k(p) == k)
    value = probe.psnr
    if data is None:  # a PSNR target: the chosen latents, coded once
        data = codec.write(analysis, quality, decoder, symbols)[0]
    elif measure:
        header = codec.header_for(analysis.prepared, quality, decoder)
        value = psnr(analysis.prepared.rgb, codec.synthesise(symbols, header, decoder))
    prepared = analysis.prepared
    return RateResult(
        data=data,
        target=target,
        quality=quality,
        effort=effort,
        decoder=decoder,
        met=best is not None,
        width=prepared.width,
        height=prepared.height,
        psnr=value,
        probes=tuple(log),
        message=message,
        nearest=nearest,
    )


def _unreachable(target: Target, probes: _Probes, name: str | None) -> tuple[str, float]:
    """Why no quality meets ``target``, and the nearest reachable value in its unit (bytes, bpp or dB)."""
    nearest = next(p for p in reversed(probes.log) if _k(p) == probes.nearest())
    at = f"quality {nearest.quality:g}" + (f", effort {nearest.effort}" if nearest.effort else "")
    where = f"{name}: " if name else ""
    if target.kind == "psnr":
        assert nearest.psnr is not None  # a PSNR probe records its PSNR
        message = (
            f"{where}no quality reaches {target.describe()}: the best is {nearest.psnr:.2f} dB ({at}, "
            f"decoder {probes.decoder})"
        )
        return message, nearest.psnr
    size = nearest.bytes
    assert size is not None  # a size or bpp probe records its file's size
    bpp = size * 8 / probes.pixels
    message = f"{where}no quality fits in {target.describe()}: the smallest file is {size:,} bytes"
    message += f" ({bpp:.4f} bpp, {at})"
    return message, (size if target.kind == "size" else bpp)


__all__ = ["Outcome", "RateResult", "Probe", "Target", "encode_to_target", "parse_size", "search"]
