"""The one module that imports constriction (spec/entropy.md, section 7).

Every symbol is coded with an explicit integer PMF ``f`` (f >= 1, sum = 2**24) through constriction's Categorical
model family with ``perfect=False`` and its ANS coder (32-bit words, 24-bit precision). We hand constriction the
floats ``f - 1``: they are integers below 2**24, exact in float32 and float64, and they sum to 2**24 - A, so the fast
quantisation (which gives each symbol ``floor(cumsum * (2**24 - A) / sum) + index``) reproduces ``f`` exactly: the
coder's model is precisely the integer table of the spec. tests/test_entropy_coder.py checks this.

A stream is constriction's compressed words, each stored as 4 bytes little-endian. ANS is a stack: segments are
pushed in the reverse of the order in which they are pulled. Each stream starts (is pushed first, pulled last) with
a sentinel: symbol 1 under the PMF [2**24 - 1, 1]. It puts the empty coder's state at 2**24 - 1 (24 bits), which
every later symbol strictly increases (no f reaches 2**24); the decoder must read the sentinel back (state exactly
2**24 - 1) and be left with an empty coder. A missing, surplus, exhausted or truncated stream fails that test.
"""

from __future__ import annotations

import constriction
import numpy as np

from ..errors import CorruptDataError
from .tables import CODER_TOTAL

SENTINEL_PMF = np.array([CODER_TOTAL - 1, 1], dtype=np.int64)
MAX_ROWS_FIXED = 1 << 14  # rows materialised at a time when one PMF row is repeated

_FAMILY = constriction.stream.model.Categorical(perfect=False)


def _probabilities(pmf: np.ndarray) -> np.ndarray:
    out = np.empty(pmf.shape, dtype=np.float32)
    np.subtract(pmf, 1, out=out, casting="unsafe")  # integers < 2**24: exact in float32
    return out


class StreamEncoder:
    """Pushes (symbols, PMF rows) segments, last-decoded first, and returns the stream bytes."""

    def __init__(self) -> None:
        self._coder = constriction.stream.stack.AnsCoder()
        self.push_fixed(np.array([1]), SENTINEL_PMF)

    def push(self, symbols: np.ndarray, pmf: np.ndarray) -> None:
        """Encode ``symbols[i]`` (in [0, A)) with PMF row ``pmf[i]`` (n, A); decoders pull them in index order."""
        if symbols.size == 0:
            return
        sym = np.ascontiguousarray(symbols, dtype=np.int32)
        if sym.shape != (pmf.shape[0],) or sym.min() < 0 or sym.max() >= pmf.shape[1]:
            raise ValueError("StreamEncoder.push: symbols do not fit the PMF rows")
        try:
            self._coder.encode_reverse(sym, _FAMILY, _probabilities(pmf))
        except Exception as exc:  # constriction raises plain exceptions; ours is a bug, not a user error
            raise ValueError(f"entropy coder rejected a segment: {exc}") from exc

    def push_fixed(self, symbols: np.ndarray, pmf_row: np.ndarray) -> None:
        """Encode all ``symbols`` with one PMF row."""
        n = symbols.shape[0]
        starts = list(range(0, n, MAX_ROWS_FIXED))
        for a in reversed(starts):
            b = min(a + MAX_ROWS_FIXED, n)
            self.push(symbols[a:b], np.broadcast_to(pmf_row, (b - a, pmf_row.shape[0])))

    def finish(self) -> bytes:
        words = self._coder.get_compressed()
        return np.asarray(words, dtype="<u4").tobytes()


class StreamDecoder:
    """Pulls segments in stream order; ``finish`` checks the sentinel and that the stream was consumed exactly."""

    def __init__(self, data: bytes, what: str = "stream") -> None:
        self.what = what
        if len(data) % 4:
            raise CorruptDataError(f"{what}: length {len(data)} is not a multiple of 4 bytes")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        try:
            self._coder = constriction.stream.stack.AnsCoder(words)
        except Exception as exc:
            raise CorruptDataError(f"{what}: not a valid ANS stream ({exc})") from exc

    def pull(self, pmf: np.ndarray) -> np.ndarray:
        """Decode one symbol per PMF row (n, A); returns int64 symbols in [0, A)."""
        if pmf.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        try:
            out = self._coder.decode(_FAMILY, _probabilities(pmf))
        except Exception as exc:
            raise CorruptDataError(f"{self.what}: does not decode ({exc})") from exc
        return np.asarray(out, dtype=np.int64)

    def pull_fixed(self, n: int, pmf_row: np.ndarray) -> np.ndarray:
        parts = [np.zeros(0, dtype=np.int64)]
        for a in range(0, n, MAX_ROWS_FIXED):
            b = min(a + MAX_ROWS_FIXED, n)
            parts.append(self.pull(np.broadcast_to(pmf_row, (b - a, pmf_row.shape[0]))))
        return np.concatenate(parts)

    def finish(self) -> None:
        if self.pull_fixed(1, SENTINEL_PMF)[0] != 1:
            raise CorruptDataError(
                f"{self.what}: the end-of-stream check failed (truncated, damaged, or not coded with these parameters)"
            )
        try:  # is_empty() alone would miss words left behind a zero word pulled in by the last refill
            empty = self._coder.is_empty() and self._coder.num_words() == 0
        except Exception as exc:
            raise CorruptDataError(f"{self.what}: does not decode ({exc})") from exc
        if not empty:
            raise CorruptDataError(f"{self.what}: data left over after the last symbol (damaged or not this model)")


__all__ = ["StreamDecoder", "StreamEncoder"]
