"""lcf.entropy.streams: mixture and z streams, escapes, damaged data (spec/entropy.md, sections 6 to 9)."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_entropy_tables import random_int_params

from lcf.entropy import (
    FamilyTables,
    IntParams,
    ZTables,
    build_z_tables,
    coder,
    decode_mixture_stream,
    decode_z_stream,
    encode_mixture_stream,
    encode_z_stream,
    estimate_bits,
    estimate_z_bits,
    int_params,
    mixture,
    streams,
)
from lcf.entropy.params import ANCHOR_FAMILIES, NONANCHOR_FAMILIES, WEIGHT_TOTAL
from lcf.errors import CorruptDataError

HUGE = [2**31 - 1, -(2**31), 2**30, -(2**30), 100_000, -100_000, 100_001, -99_999, 1 << 20]


@pytest.fixture(scope="module")
def tables():
    return FamilyTables.build()


@pytest.fixture(scope="module")
def ztables():
    rng = np.random.default_rng(5)
    lz = 12
    scale = np.exp(rng.uniform(-1.5, 1.5, 16))
    v = np.arange(-lz, lz + 1)
    pmf = np.exp(-np.abs(v)[None, :] / scale[:, None])
    pmf /= pmf.sum(axis=1, keepdims=True)
    return ZTables.from_arrays(build_z_tables(pmf, np.full(16, 1e-3)))


def symbols_for(p: IntParams, seed: int, escapes: float = 0.02) -> np.ndarray:
    """Mostly values near the means, some far outside any window, some huge."""
    rng = np.random.default_rng(seed)
    n = p.n
    comp = rng.integers(0, p.k, n)
    y = (p.means[np.arange(n), comp] >> 4) + np.rint(rng.laplace(0, 2, n)).astype(np.int64)
    far = rng.random(n) < escapes
    y[far] = rng.integers(-(2**31), 2**31, far.sum())
    huge = rng.random(n) < escapes
    y[huge] = rng.choice(HUGE, huge.sum())
    return y.astype(np.int32)


@given(st.integers(0, 2**32 - 1), st.integers(0, 200), st.sampled_from([ANCHOR_FAMILIES, NONANCHOR_FAMILIES]))
def test_mixture_round_trip(tables, seed, n, families):
    p = random_int_params(seed, n, families)
    y = symbols_for(p, seed)
    data = encode_mixture_stream(y, p, tables)
    out = decode_mixture_stream(data, p, tables)
    assert out.dtype == np.int32 and np.array_equal(out, y)
    est = estimate_bits(y, p, tables)
    assert abs(8 * len(data) - est) <= 0.005 * est + 64


def test_mixture_round_trip_with_small_chunks(tables, monkeypatch):
    monkeypatch.setattr(mixture, "CHUNK_ENTRIES", 50)
    monkeypatch.setattr(coder, "MAX_ROWS_FIXED", 5)
    p = random_int_params(11, 300, ANCHOR_FAMILIES)
    y = symbols_for(p, 11, escapes=0.1)
    assert np.array_equal(decode_mixture_stream(encode_mixture_stream(y, p, tables), p, tables), y)


def test_every_value_can_escape(tables):
    n = len(HUGE) * 3
    p = IntParams(
        np.full((n, 3), [WEIGHT_TOTAL, 0, 0]), np.zeros((n, 3), int), np.zeros((n, 3), int), NONANCHOR_FAMILIES
    )
    y = np.array(HUGE * 3, dtype=np.int64)
    y[len(HUGE) :] = np.array([-2, 2, 3, -3, 4, 1000, -1000, 2**31 - 1, -(2**31)] * 2)
    assert np.array_equal(decode_mixture_stream(encode_mixture_stream(y, p, tables), p, tables), y)


def test_realistic_mixtures_code_close_to_the_estimate(tables):
    rng = np.random.default_rng(2)
    n = 5000
    for k in (9, 3):  # raw slots as the integer PENs give them (units of 2**-12): logits, means, softplus^-1(scale)
        base = np.exp(rng.uniform(np.log(0.11), np.log(10), (n, 1)))
        scales = np.clip(base * np.exp(rng.normal(0, 0.3, (n, k))), 0.11, 64)
        means = rng.normal(0, 1, (n, 1)) * base + rng.normal(0, 0.3, (n, k)) * base
        raw = [rng.normal(0, 2, (n, k)), means, np.log(np.expm1(scales))]
        if k == 9:
            raw.append(rng.normal(0, 2, (n, 3)))  # family logits
        p = int_params(np.rint(np.concatenate(raw, axis=1) * 4096).astype(np.int64))
        y = np.rint(means[:, 0] + rng.laplace(0, 1, n) * scales[:, 0]).astype(np.int32)
        data = encode_mixture_stream(y, p, tables)
        est = estimate_bits(y, p, tables)
        assert 8 * len(data) <= est * 1.005 + 64 and 8 * len(data) >= est - 64
        assert np.array_equal(decode_mixture_stream(data, p, tables), y)


def test_mixture_stream_is_deterministic(tables):
    p = random_int_params(3, 500, ANCHOR_FAMILIES)
    y = symbols_for(p, 3)
    assert encode_mixture_stream(y, p, tables) == encode_mixture_stream(y.copy(), p, tables)


def test_empty_mixture_stream(tables):
    p = random_int_params(0, 0, ANCHOR_FAMILIES)
    data = encode_mixture_stream(np.zeros(0, np.int32), p, tables)
    assert data == b""
    assert decode_mixture_stream(data, p, tables).shape == (0,)
    with pytest.raises(CorruptDataError):
        decode_mixture_stream(b"\xff\xff\xff\x00", p, tables)


def test_mixture_encoder_rejects_bad_symbols(tables):
    p = random_int_params(0, 4, NONANCHOR_FAMILIES)
    for bad in (np.zeros(3, np.int32), np.zeros(4), np.array([0, 0, 0, 2**31])):
        with pytest.raises(ValueError):
            encode_mixture_stream(bad, p, tables)


@pytest.fixture(scope="module")
def coded(tables):
    p = random_int_params(21, 400, ANCHOR_FAMILIES)
    y = symbols_for(p, 21)
    return encode_mixture_stream(y, p, tables), p, y


def test_truncated_mixture_streams_are_corrupt(tables, coded):
    data, p, _ = coded
    for keep in list(range(0, len(data), 4 * max(1, len(data) // 60))) + [len(data) - 4]:
        with pytest.raises(CorruptDataError):
            decode_mixture_stream(data[:keep], p, tables)
        with pytest.raises(CorruptDataError):
            decode_mixture_stream(data[len(data) - keep :], p, tables)
    with pytest.raises(CorruptDataError):
        decode_mixture_stream(data[:-1], p, tables)


def test_stream_for_other_params_is_corrupt_or_decodes(tables, coded):
    data, p, y = coded
    other = random_int_params(22, p.n, ANCHOR_FAMILIES)
    try:
        out = decode_mixture_stream(data, other, tables)
    except CorruptDataError:
        return
    assert out.shape == y.shape  # decoding with wrong parameters can only fail cleanly or give n symbols


@given(st.binary(max_size=600), st.integers(0, 300))
def test_random_bytes_are_corrupt(tables, blob, n):
    assume(n or blob)  # zero elements in zero bytes is the one valid case
    p = random_int_params(n, n, NONANCHOR_FAMILIES)
    with pytest.raises(CorruptDataError):
        decode_mixture_stream(blob, p, tables)


@given(st.integers(0, 2**32 - 1), st.integers(0, 10_000))
def test_bit_flips_never_raise_another_error(tables, coded, seed, where):
    data, p, y = coded
    rng = np.random.default_rng(seed)
    damaged = bytearray(data)
    damaged[where % len(data)] ^= 1 << int(rng.integers(0, 8))
    try:
        out = decode_mixture_stream(bytes(damaged), p, tables)
    except CorruptDataError:
        return
    assert out.shape == y.shape


# ---------------------------------------------------------------------------------------------------------------
# z


@given(st.integers(0, 2**32 - 1), st.integers(0, 6), st.integers(0, 7))
def test_z_round_trip(ztables, seed, h, w):
    rng = np.random.default_rng(seed)
    z = np.rint(rng.laplace(0, 3, (16, h, w))).astype(np.int64)
    far = rng.random(z.shape) < 0.05
    z[far] = rng.choice(HUGE + [13, -13, 12, -12], far.sum())
    data = encode_z_stream(z, ztables)
    out = decode_z_stream(data, (16, h, w), ztables)
    assert out.dtype == np.int32 and np.array_equal(out, z)
    est = estimate_z_bits(z, ztables)
    assert abs(8 * len(data) - est) <= 0.005 * est + 64


def test_z_round_trip_with_small_chunks(ztables, monkeypatch):
    monkeypatch.setattr(streams, "Z_CHUNK_ROWS", 7)
    z = np.random.default_rng(0).integers(-20, 20, (16, 5, 6))
    assert np.array_equal(decode_z_stream(encode_z_stream(z, ztables), (16, 5, 6), ztables), z)


def test_z_damage_and_shape(ztables):
    z = np.random.default_rng(1).integers(-3, 4, (16, 4, 4))
    data = encode_z_stream(z, ztables)
    for bad in (data[:-4], data[4:], data + data[:4], b"", data[:-2]):
        with pytest.raises(CorruptDataError):
            decode_z_stream(bad, (16, 4, 4), ztables)
    assert encode_z_stream(np.zeros((16, 0, 3), int), ztables) == b""
    assert decode_z_stream(b"", (16, 0, 3), ztables).shape == (16, 0, 3)
    with pytest.raises(CorruptDataError):
        decode_z_stream(data, (16, 3, 0), ztables)
    with pytest.raises(ValueError):
        encode_z_stream(np.zeros((15, 4, 4), int), ztables)
    with pytest.raises(ValueError):
        decode_z_stream(data, (16, 16), ztables)
