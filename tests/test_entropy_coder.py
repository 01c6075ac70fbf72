"""lcf.entropy.coder: constriction reproduces our integer PMFs exactly; byte order; damaged streams (spec section 7)."""

import constriction
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lcf.entropy import coder
from lcf.entropy.coder import StreamDecoder, StreamEncoder
from lcf.entropy.tables import CODER_TOTAL
from lcf.errors import CorruptDataError


def random_pmf(rng: np.random.Generator, n: int, a: int) -> np.ndarray:
    """Rows of integers >= 1 summing to 2**24, with many symbols at the minimum count 1."""
    raw = rng.random((n, a)) ** 8
    raw[rng.random((n, a)) < 0.5] = 0.0
    raw[:, 0] += 1e-3
    f = 1 + np.floor(raw / raw.sum(axis=1, keepdims=True) * (CODER_TOTAL - a)).astype(np.int64)
    f[:, -1] += CODER_TOTAL - f.sum(axis=1)
    return f


@given(st.integers(0, 2**32 - 1), st.integers(2, 520))
def test_constriction_uses_exactly_our_counts(seed, a):
    """Encoding one symbol into an empty ANS coder leaves its state = the symbol's left cumulative count, so the
    compressed word shows exactly which integer interval constriction's fast quantisation gave the symbol."""
    rng = np.random.default_rng(seed)
    f = random_pmf(rng, 1, a)
    cum = np.concatenate([[0], np.cumsum(f[0])])
    for sym in {0, 1, a - 1, int(rng.integers(0, a)), int(np.argmin(f[0]))}:
        ans = constriction.stream.stack.AnsCoder()
        model = constriction.stream.model.Categorical(perfect=False)
        ans.encode_reverse(np.array([sym], dtype=np.int32), model, coder._probabilities(f))
        words = ans.get_compressed()
        assert (int(words[0]) if len(words) else 0) == cum[sym]
        # and the next interval starts where ours does: symbol sym + 1 encodes to cum[sym + 1]
        if sym + 1 < a:
            ans = constriction.stream.stack.AnsCoder()
            ans.encode_reverse(np.array([sym + 1], dtype=np.int32), model, coder._probabilities(f))
            assert int(ans.get_compressed()[0]) == cum[sym + 1]


@given(st.integers(0, 2**32 - 1), st.integers(2, 70), st.integers(0, 400))
def test_least_likely_symbols_round_trip(seed, a, n):
    rng = np.random.default_rng(seed)
    f = random_pmf(rng, n, a)
    least = np.argmin(f, axis=1)  # count 1 of 2**24
    enc = StreamEncoder()
    enc.push(least, f)
    data = enc.finish()
    assert len(data) % 4 == 0
    # information content: 24 bits per count-1 symbol (plus at most two words of coder state)
    assert 8 * len(data) <= np.sum(24 - np.log2(f[np.arange(n), least])) + 64
    dec = StreamDecoder(data)
    assert np.array_equal(dec.pull(f), least)
    dec.finish()


def test_segments_pull_in_push_reverse_order_and_encoding_is_deterministic():
    rng = np.random.default_rng(1)
    parts = [(rng.integers(0, a, n), random_pmf(rng, n, a)) for n, a in ((50, 3), (0, 5), (200, 40), (7, 2))]

    def encode():
        enc = StreamEncoder()
        for sym, f in reversed(parts):
            enc.push(sym, f)
        return enc.finish()

    data = encode()
    assert encode() == data
    dec = StreamDecoder(data)
    for sym, f in parts:
        assert np.array_equal(dec.pull(f), sym)
    dec.finish()


def test_words_are_little_endian():
    enc = StreamEncoder()
    enc.push(np.array([5]), np.array([[1] * 5 + [CODER_TOTAL - 5]]))
    data = enc.finish()
    ans = constriction.stream.stack.AnsCoder()
    model = constriction.stream.model.Categorical(perfect=False)
    ans.encode_reverse(np.array([1], dtype=np.int32), model, coder._probabilities(coder.SENTINEL_PMF[None, :]))
    ans.encode_reverse(
        np.array([5], dtype=np.int32), model, coder._probabilities(np.array([[1] * 5 + [CODER_TOTAL - 5]]))
    )
    words = ans.get_compressed()
    assert data == b"".join(int(w).to_bytes(4, "little") for w in words)


def test_empty_stream_is_one_word():
    data = StreamEncoder().finish()
    assert data == (CODER_TOTAL - 1).to_bytes(4, "little")
    StreamDecoder(data).finish()


def test_push_fixed_chunks(monkeypatch):
    monkeypatch.setattr(coder, "MAX_ROWS_FIXED", 3)
    sym = np.arange(20) % 4
    row = np.array([1, 2, 3, CODER_TOTAL - 6])
    enc = StreamEncoder()
    enc.push_fixed(sym, row)
    dec = StreamDecoder(enc.finish())
    assert np.array_equal(dec.pull_fixed(20, row), sym)
    dec.finish()


def test_push_rejects_symbols_outside_the_rows():
    with pytest.raises(ValueError):
        StreamEncoder().push(np.array([3]), np.array([[1, 2, CODER_TOTAL - 3]]))


@pytest.fixture(scope="module")
def good_stream():
    rng = np.random.default_rng(3)
    f = random_pmf(rng, 500, 20)
    sym = rng.integers(0, 20, 500)
    enc = StreamEncoder()
    enc.push(sym, f)
    return enc.finish(), f, sym


def decode_all(data: bytes, f: np.ndarray) -> np.ndarray:
    dec = StreamDecoder(data)
    out = dec.pull(f)
    dec.finish()
    return out


def test_length_not_multiple_of_four(good_stream):
    data = good_stream[0]
    for cut in (1, 2, 3):
        with pytest.raises(CorruptDataError, match="multiple of 4"):
            StreamDecoder(data[:-cut])


def test_truncated_streams_are_corrupt(good_stream):
    data, f, _ = good_stream
    for keep in range(0, len(data), 4 * max(1, len(data) // 40)):
        with pytest.raises(CorruptDataError):
            decode_all(data[:keep], f)  # words lost from the end (the first read)
        with pytest.raises(CorruptDataError):
            decode_all(data[len(data) - keep :], f)  # words lost from the start (the last read)


def test_leftover_and_appended_words_are_corrupt(good_stream):
    data, f, _ = good_stream
    with pytest.raises(CorruptDataError):
        decode_all(data + b"\x07\x00\x00\x00", f)
    with pytest.raises(CorruptDataError):
        decode_all(b"\x07\x00\x00\x00" + data, f)
    with pytest.raises(CorruptDataError):
        dec = StreamDecoder(data)
        dec.pull(f[:-1])  # one symbol less than coded
        dec.finish()
    with pytest.raises(CorruptDataError):
        decode_all(data[:-4] + b"\x00\x00\x00\x00", f)  # constriction refuses a zero last word


@given(st.binary(max_size=400))
def test_random_bytes_never_escape_as_another_error(blob):
    rng = np.random.default_rng(len(blob))
    f = random_pmf(rng, 64, 9)
    with pytest.raises(CorruptDataError):
        decode_all(blob, f)


@given(st.integers(0, 2**32 - 1), st.integers(1, 30), st.booleans())
def test_decoding_fewer_or_more_symbols_than_coded_is_corrupt(seed, n, peaked):
    """Even when the missing symbol is the cheapest one (index 0 of a PMF that puts almost all mass on it)."""
    rng = np.random.default_rng(seed)
    f = random_pmf(rng, n + 1, 5)
    if peaked:
        f[:] = [CODER_TOTAL - 4, 1, 1, 1, 1]
    sym = np.zeros(n, dtype=np.int64) if peaked else rng.integers(0, 5, n)
    enc = StreamEncoder()
    enc.push(sym, f[:n])
    data = enc.finish()
    for rows in (f[: n - 1], f):  # one symbol fewer, one more
        dec = StreamDecoder(data)
        with pytest.raises(CorruptDataError):
            dec.pull(rows)
            dec.finish()
