"""lcf.latent_codec on its own: symbols (ẑ, ŷ, the channel bitmap) <-> the HYPR/ANCH/NANC streams, without any image
or container (issue 22), on the tiny random model's entropy networks and tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lcf.errors import CorruptDataError
from lcf.latent_codec import LatentCodec, Streams, Symbols, checkerboard, coded_channels
from lcf.loader import load_latent_codec
from lcf.nn import LcfModel
from lcf.weights import load_weights


@pytest.fixture(scope="module")
def latent(tiny_weights) -> LatentCodec:
    weights = load_weights(tiny_weights)
    return load_latent_codec(LcfModel(weights.manifest.model_config), weights)


def _symbols(seed: int, lh: int, lw: int, m: int = 24, mz: int = 16, skipped: float = 0.3, spread: int = 6) -> Symbols:
    """Random symbols of an (lh·16) x (lw·16) padded image: heavy-tailed values, some channels all zero."""
    rng = np.random.default_rng(seed)
    y = np.rint(rng.laplace(0, spread, (m, lh, lw))).astype(np.int32)
    y[rng.random(m) < skipped] = 0
    z = np.rint(rng.laplace(0, 2, (mz, lh // 4, lw // 4))).astype(np.int32)
    return Symbols(z_hat=z, y_hat=y, coded=coded_channels(y))


def test_checkerboard_splits_positions_by_parity() -> None:
    anchors, nonanchors = checkerboard(3, 4)
    assert anchors.tolist() == [0, 2, 5, 7, 8, 10] and nonanchors.tolist() == [1, 3, 4, 6, 9, 11]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), cells=st.sampled_from([(4, 4), (4, 8), (8, 4)]))
def test_symbols_round_trip_through_the_streams(latent, seed, cells) -> None:
    s = _symbols(seed, *cells)
    streams, bits = latent.encode(s)
    assert bits is None
    back = latent.decode(streams, s.coded, *cells)
    assert np.array_equal(back.y_hat, s.y_hat) and np.array_equal(back.z_hat, s.z_hat)
    assert np.array_equal(back.coded, s.coded)


def test_escapes_and_all_skipped_channels(latent) -> None:
    s = _symbols(7, 4, 4, spread=3000)  # far beyond the tables: escapes
    assert np.abs(s.y_hat).max() > 1000
    back = latent.decode(latent.encode(s)[0], s.coded, 4, 4)
    assert np.array_equal(back.y_hat, s.y_hat)
    nothing = Symbols(z_hat=s.z_hat, y_hat=np.zeros_like(s.y_hat), coded=np.zeros(24, bool))
    streams, _ = latent.encode(nothing)
    assert streams.anchor == b"" and streams.nonanchor == b""
    assert np.array_equal(latent.decode(streams, nothing.coded, 4, 4).y_hat, nothing.y_hat)


def test_the_estimate_is_close_to_the_size(latent) -> None:
    s = _symbols(3, 8, 8)
    streams, bits = latent.encode(s, estimate=True)
    assert set(bits) == {"hyper", "anchor", "nonanchor"}
    for name in bits:
        size = 8 * len(getattr(streams, name))
        assert bits[name] <= size + 64 and size <= 1.1 * bits[name] + 64, name


def test_damaged_streams_are_corrupt_data(latent) -> None:
    s = _symbols(5, 4, 4)
    streams, _ = latent.encode(s)
    for damaged in (
        Streams(streams.hyper, streams.anchor[:-3], streams.nonanchor),
        Streams(streams.hyper, streams.anchor, streams.nonanchor + b"\0\0\0\0"),
    ):
        with pytest.raises(CorruptDataError):
            latent.decode(damaged, s.coded, 4, 4)


def test_parameters_built_in_bands_of_rows_equal_the_whole_image(latent, monkeypatch) -> None:
    """LatentCodec._params runs h_s, ctx and the PENs a band of latent rows at a time (issue 20: bounded memory):
    one row of ẑ per band gives the integers of the whole image at once, and the same stream bytes. A band that read
    one row of ẑ fewer than HYPER_REACH around it would not (this test sees it)."""
    import lcf.latent_codec as lc
    from lcf.latent_codec import StreamParams, _stream_params

    def whole(pen, features, positions):
        out = StreamParams(int(s.coded.sum()), positions.size)
        _stream_params(pen, features, s.coded, positions, out)
        return out.result()

    s = _symbols(11, 24, 8)  # 6 rows of ẑ: six bands
    anchors, nonanchors = checkerboard(24, 8)
    t1 = latent.net.hyper(s.z_hat[None])
    whole1 = whole(latent.net.anchor, (t1,), anchors)
    whole2 = whole(latent.net.pen2, (t1, latent.net.context(s.y_hat[None], nonanchors)), nonanchors)
    streams, _ = latent.encode(s)
    assert lc.band_rows(8, latent.net) >= 6  # by default, one band
    monkeypatch.setattr(lc, "BAND_BYTES", 1)
    assert lc.band_rows(8, latent.net) == 1

    def params(reach: int):
        monkeypatch.setattr(lc, "HYPER_REACH", reach)
        p1 = latent._params(s.z_hat, s.coded, anchors, 24, 8)
        p2 = latent._params(s.z_hat, s.coded, nonanchors, 24, 8, y_anchor=s.y_hat)
        return [a for p in (p1, p2) for a in (p.weights, p.means, p.scale_idx)]

    expected = [a for p in (whole1, whole2) for a in (p.weights, p.means, p.scale_idx)]
    assert all(np.array_equal(a, b) for a, b in zip(params(lc.HYPER_REACH), expected, strict=True))
    assert latent.encode(s)[0] == streams
    back = latent.decode(streams, s.coded, 24, 8)
    assert np.array_equal(back.y_hat, s.y_hat) and np.array_equal(back.z_hat, s.z_hat)
    assert not all(np.array_equal(a, b) for a, b in zip(params(lc.HYPER_REACH - 1), expected, strict=True))
