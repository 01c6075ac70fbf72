"""Fuzzing the whole decode path: mutated valid files, CRCs repaired so the damage reaches the codec.

Only an LcfError may come out, never a torch/numpy/constriction exception (nor the codec's last-resort wrapper
around one), never an image of the wrong shape. The longer, coverage-guided run is ``fuzz/fuzz_decode.py``
(atheris); this test shares its model, seeds and checks.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lcf.codec import Codec, Symbols
from lcf.container import Chunk, Header, Limits, encode_channel_bitmap, read_container, write_container
from lcf.errors import CorruptDataError, FormatError, LcfError, LimitError

_spec = importlib.util.spec_from_file_location("fuzz_decode", Path(__file__).parents[1] / "fuzz" / "fuzz_decode.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_decode"] = fuzz
_spec.loader.exec_module(fuzz)

HEAD_AT = 10 + 8  # payload of HEAD: signature + version, then length and type


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


@pytest.fixture(scope="module")
def fuzz_codec(tmp_path_factory) -> Codec:
    return Codec(fuzz.build_weights(tmp_path_factory.mktemp("fuzz-weights")))


@pytest.fixture(scope="module")
def seeds(fuzz_codec) -> list[bytes]:
    return fuzz.seed_files(fuzz_codec)


def test_every_seed_decodes(fuzz_codec, seeds):
    assert [fuzz.check_one(fuzz_codec, s) for s in seeds] == ["ok"] * len(seeds)


# -- mutants ---------------------------------------------------------------------------------------------------------

EXTREMES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
edits = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 12)),
    st.tuples(st.just("word"), st.integers(0, 10**6), st.sampled_from(EXTREMES)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
)


def apply(payload: bytes, ops) -> bytes:
    out = bytearray(payload)
    for op, at, arg in ops:
        i = at % (len(out) + 1)
        if op == "flip" and out:
            out[min(i, len(out) - 1)] ^= 1 << arg
        elif op == "set" and out:
            out[min(i, len(out) - 1)] = arg
        elif op == "insert":
            out[i:i] = arg
        elif op == "delete":
            del out[i : i + arg]
        elif op == "word":
            out[i : i + 4] = arg.to_bytes(4, "big")
        elif op == "truncate":
            del out[i:]
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    seed=st.integers(0, 10**6),
    chunk=st.integers(0, 10**6),
    whole=st.booleans(),
    ops=st.lists(edits, min_size=1, max_size=4),
)
def test_mutants_fail_cleanly_or_decode(fuzz_codec, seeds, seed, chunk, whole, ops):
    data = seeds[seed % len(seeds)]
    if whole:
        mutant = fuzz.fix_crcs(apply(data, ops))
    else:
        chunks = fuzz.split_chunks(data)
        k = chunk % len(chunks)
        chunks[k] = (chunks[k][0], apply(chunks[k][1], ops))
        mutant = fuzz.join_chunks(data, chunks)
    fuzz.check_one(fuzz_codec, mutant)  # raises fuzz.Finding on anything but a clean LcfError or a good image


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.binary(min_size=0, max_size=160))
def test_any_symbols_make_a_file_that_decodes_to_them(fuzz_codec, data):
    """The second fuzz target: sparse z and y of any int32 value, coded by the encoder, decode exactly."""
    assert fuzz.check_symbols(fuzz_codec, data) in ("ok", "refused")


def test_the_checker_catches_what_it_must(fuzz_codec, seeds, monkeypatch):
    """check_one flags a non-LcfError escaping, and the codec's last-resort wrapper firing."""
    from lcf import latent_codec as latent_codec_module

    def boom(*args, **kwargs):
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(latent_codec_module, "decode_mixture_stream", boom)
    with pytest.raises(fuzz.Finding, match="last-resort"):
        fuzz.check_one(fuzz_codec, seeds[2])
    monkeypatch.setattr(fuzz_codec, "decode", boom)
    with pytest.raises(fuzz.Finding, match="IndexError escaped"):
        fuzz.check_one(fuzz_codec, seeds[2])


def test_unexpected_exceptions_become_corrupt_data(fuzz_codec, seeds, monkeypatch):
    from lcf import latent_codec as latent_codec_module

    def boom(*args, **kwargs):
        raise RuntimeError("shape '[1, 8, 9, 4, 4]' is invalid")

    monkeypatch.setattr(latent_codec_module, "decode_z_stream", boom)
    for call in (lambda: fuzz_codec.decode(seeds[0]), lambda: fuzz_codec.decode_symbols(read_container(seeds[0]))):
        with pytest.raises(CorruptDataError, match=r"RuntimeError: shape '\[1, 8, 9, 4, 4\]' is invalid") as info:
            call()
        assert isinstance(info.value.__cause__, RuntimeError)


# -- the cases named in the issue ------------------------------------------------------------------------------------


def _header_field(data: bytes, offset: int, value: bytes) -> bytes:
    """``data`` with HEAD payload bytes at ``offset`` replaced and HEAD's CRC repaired."""
    out = bytearray(data)
    out[HEAD_AT + offset : HEAD_AT + offset + len(value)] = value
    return fuzz.fix_crcs(out)


def test_padded_size_mismatch_with_a_valid_crc_is_a_format_error(fuzz_codec, seeds):
    data = seeds[3]  # 17 x 13: padded 64 x 64
    for offset in (32, 36):  # padded_width, padded_height
        bad = _header_field(data, offset, struct.pack(">I", 128))
        with pytest.raises(FormatError, match="padded"):
            fuzz_codec.decode(bad)


def test_unknown_decoder_name_falls_back_to_the_default(fuzz_codec, seeds):
    data = seeds[1]
    head = read_container(data).header
    renamed = write_container(Header(**{**vars(head), "decoder": "nosuch-1.0"}), read_container(data).chunks)
    decoded = fuzz_codec.decode(renamed)
    assert decoded.header.decoder == "nosuch-1.0" and decoded.decoder == fuzz_codec.weights.default_decoder
    assert np.array_equal(decoded.rgb, fuzz_codec.decode(data).rgb)


def test_huge_escaped_values_decode_exactly(fuzz_codec):
    """z and y values of +-2^30 travel through the escape code and the integer networks (whose inputs and activations
    saturate at their clip limits) and come back exact."""
    m, mz = fuzz_codec.config.M, fuzz_codec.config.Mz
    z = np.zeros((mz, 1, 1), np.int32)
    z[0, 0, 0], z[-1, 0, 0] = 2**30, -(2**30)
    y = np.zeros((m, 4, 4), np.int32)
    y[1, 0, 0], y[2, 0, 1], y[3, 2, 2] = -(2**30), 2**30 - 1, 5
    data = _symbols_file(fuzz_codec, Symbols(z, y, (y != 0).reshape(m, -1).any(axis=1)), 64, 64)
    decoded = fuzz_codec.decode(data)
    assert np.array_equal(decoded.symbols.z_hat, z) and np.array_equal(decoded.symbols.y_hat, y)
    assert decoded.rgb.shape == (64, 64, 3)


@pytest.mark.parametrize("sign", [1, -1])
def test_every_channel_at_the_clip_limit_decodes_exactly(fuzz_codec, sign):
    """Every z and every y at +-(2^30 - 1): all network inputs clip, the activations run into their limits, and the
    entropy parameters still come out valid (no overflow, no NaN is possible in integer arithmetic); the file
    round-trips and decodes the same twice."""
    m, mz = fuzz_codec.config.M, fuzz_codec.config.Mz
    z = np.full((mz, 2, 2), sign * (2**30 - 1), np.int32)
    y = np.full((m, 8, 8), -sign * (2**30 - 1), np.int32)
    data = _symbols_file(fuzz_codec, Symbols(z, y, np.ones(m, bool)), 128, 128)
    first, second = fuzz_codec.decode(data), fuzz_codec.decode(data)
    assert np.array_equal(first.symbols.z_hat, z) and np.array_equal(first.symbols.y_hat, y)
    assert np.array_equal(first.rgb, second.rgb)


def test_the_codec_path_honours_limits(fuzz_codec, seeds):
    from lcf import api

    data = seeds[6]  # 130 x 20
    small = Limits(max_pixels=130 * 20 - 1)
    for call in (
        lambda: fuzz_codec.decode(data, limits=small),
        lambda: api.decode_bytes(data, weights=fuzz_codec.weights.root, limits=small),
        lambda: api.validate_deep(data, fuzz_codec.weights.root, limits=small),
    ):
        with pytest.raises(LimitError):
            call()
    with pytest.raises(LimitError):
        fuzz_codec.decode(data, limits=Limits(max_file_size=len(data) - 1))
    assert fuzz_codec.decode(data, limits=Limits(max_pixels=130 * 20)).rgb.shape == (20, 130, 3)


def test_a_huge_claim_is_refused_before_anything_is_allocated(fuzz_codec, seeds):
    data = _header_field(seeds[0], 0, struct.pack(">II", 60000, 60000))
    data = _header_field(data, 32, struct.pack(">II", 60032, 60032))
    with pytest.raises(LimitError, match="60000x60000"):
        fuzz_codec.decode(data)


def test_stream_leftovers_and_truncation_are_corrupt(fuzz_codec, seeds):
    """--deep validation relies on this: each stream must end exactly where its chunk ends."""
    container = read_container(seeds[2])
    for kind in ("HYPR", "ANCH", "NANC"):
        for change in (lambda p: p + b"\0\0\0\1", lambda p: p[:-4], lambda p: p + p[-4:]):
            chunks = [Chunk(c.type, change(c.payload) if c.type == kind else c.payload) for c in container.chunks]
            with pytest.raises(CorruptDataError):
                fuzz_codec.decode_symbols(read_container(write_container(container.header, chunks)))


def _symbols_file(codec: Codec, symbols: Symbols, width: int, height: int) -> bytes:
    hyper, anchor, nonanchor, _ = codec.code_symbols(symbols)
    header = Header(
        width=width,
        height=height,
        color=0,
        model_id=codec.weights.model_id,
        quality=4.0,
        decoder="teacher",
        latent_channels=codec.config.M,
        hyper_channels=codec.config.Mz,
    )
    return write_container(
        header,
        [
            Chunk("CMAP", encode_channel_bitmap(symbols.coded)),
            Chunk("HYPR", hyper),
            Chunk("ANCH", anchor),
            Chunk("NANC", nonanchor),
        ],
    )


def test_fix_crcs_repairs_every_chunk(seeds):
    damaged = bytearray(seeds[0])
    damaged[-1] ^= 1  # LEND's CRC
    damaged[HEAD_AT + 11] ^= 1  # quality, low byte
    assert fuzz.fix_crcs(damaged) != bytes(damaged)
    read_container(fuzz.fix_crcs(damaged))
    assert zlib.crc32(b"LEND") == int.from_bytes(fuzz.fix_crcs(damaged)[-4:], "big")
    with pytest.raises(LcfError):
        read_container(bytes(damaged))
