"""The codec end to end (issue 3): bit-exact round trips, thread independence, size vs estimate, channel skipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from images import make_rgb_array

from lcf.codec import Codec
from lcf.container import read_container
from lcf.errors import CorruptDataError, LcfError, ModelMismatchError, UsageError


def _image(h: int, w: int, seed: int) -> np.ndarray:
    kind = ("gradient", "noise", "edges", "text", "mixed")[seed % 5]
    return make_rgb_array(w, h, kind=kind, seed=seed)


@settings(max_examples=15, deadline=None)
@given(
    h=st.integers(1, 160),
    w=st.integers(1, 160),
    quality=st.one_of(st.integers(1, 7).map(float), st.floats(1.0, 7.0)),
    seed=st.integers(0, 10_000),
)
def test_round_trip_symbols_are_exact(tiny_codec, h, w, quality, seed):
    img = _image(h, w, seed)
    _, q, sent = tiny_codec.analyse(img, quality)
    data = tiny_codec.encode(img, quality)
    got = tiny_codec.decode_symbols(read_container(data))
    np.testing.assert_array_equal(got.z_hat, sent.z_hat)
    np.testing.assert_array_equal(got.y_hat, sent.y_hat)
    np.testing.assert_array_equal(got.coded, sent.coded)
    decoded = tiny_codec.decode(data)
    assert decoded.rgb.shape == (h, w, 3) and decoded.rgb.dtype == np.uint8
    assert decoded.header.quality == q


@pytest.mark.parametrize("quality", [1, 2, 3, 4, 5, 6, 7])
def test_every_level_round_trips_and_decodes_identically_twice(tiny_codec, quality):
    img = _image(67, 131, quality)
    data = tiny_codec.encode(img, quality)
    first, second = tiny_codec.decode(data), tiny_codec.decode(data)
    np.testing.assert_array_equal(first.rgb, second.rgb)
    _, _, sent = tiny_codec.analyse(img, quality)
    np.testing.assert_array_equal(first.symbols.y_hat, sent.y_hat)


def test_thread_count_does_not_change_the_bits(tiny_weights):
    img = _image(150, 170, 3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = Codec(tiny_weights)
        data_2 = two.encode(img, 5.0)
        torch.set_num_threads(1)
        one = Codec(tiny_weights)
        data_1 = one.encode(img, 5.0)
        assert data_1 == data_2
        got_1 = one.decode(data_2)  # encoded with 2 threads, decoded with 1
        torch.set_num_threads(2)
        got_2 = two.decode(data_1)  # and the other way round
        np.testing.assert_array_equal(got_1.symbols.y_hat, got_2.symbols.y_hat)
        np.testing.assert_array_equal(got_1.rgb, got_2.rgb)
    finally:
        torch.set_num_threads(before)


def test_coded_size_matches_the_integer_estimate(tiny_codec):
    img = _image(256, 320, 4)
    _, stats = tiny_codec.encode_with_stats(img, 7.0)
    for stream, bits in stats["bits_estimated"].items():
        size = stats["stream_bytes"][stream]
        # 0.5 % of the estimate, plus the 24-bit end marker and the last partial 32-bit word per stream
        assert abs(size * 8 - bits) <= 0.005 * bits + 24 + 32 + 32, (stream, size * 8, bits)


def test_skipped_channels_cost_no_bits_and_decode_as_zero(tiny_codec):
    img = _image(96, 96, 2)
    _, _, sent = tiny_codec.analyse(img, 3.0)
    assert 0 < sent.coded.sum() < sent.coded.size, "the fixture should skip some channels at quality 3"
    data, stats = tiny_codec.encode_with_stats(img, 3.0)
    got = tiny_codec.decode(data)
    assert not got.symbols.y_hat[~got.symbols.coded].any()
    np.testing.assert_array_equal(got.symbols.y_hat, sent.y_hat)
    assert stats["coded_channels"] == int(sent.coded.sum())


def test_no_coded_channel_means_empty_latent_streams(tiny_codec):
    flat = np.full((64, 64, 3), 128, np.uint8)
    _, _, sent = tiny_codec.analyse(flat, 1.0)
    if sent.coded.any():
        pytest.skip("this random model codes a channel even for a flat image at quality 1")
    container = read_container(tiny_codec.encode(flat, 1.0))
    assert container.anchor == b"" and container.nonanchor == b""
    assert not tiny_codec.decode(container_bytes := tiny_codec.encode(flat, 1.0)).symbols.y_hat.any()
    assert len(container_bytes) < 200


def test_gray_input_decodes_to_gray(tiny_codec):
    gray = _image(40, 30, 1)[..., 0]
    decoded = tiny_codec.decode(tiny_codec.encode(gray, 4))
    assert decoded.color == "L" and decoded.to_pil().mode == "L"


def test_alpha_survives_byte_for_byte(tiny_codec):
    rgba = np.dstack([_image(33, 47, 5), np.arange(33 * 47, dtype=np.uint8).reshape(33, 47)])
    decoded = tiny_codec.decode(tiny_codec.encode(rgba, 2))
    np.testing.assert_array_equal(decoded.alpha, rgba[..., 3])
    assert decoded.to_pil().mode == "RGBA"


def test_other_weights_are_refused(tiny_codec, tmp_path):
    from lcf.nn import LcfModel, ModelConfig
    from lcf.train.export import export_model

    torch.manual_seed(99)
    export_model(LcfModel(ModelConfig(N=16, M=24, Mz=16)).eval(), tmp_path)
    data = tiny_codec.encode(_image(20, 20, 0), 4)
    with pytest.raises(ModelMismatchError, match="encoded with model"):
        Codec(tmp_path).decode(data)


def test_bad_quality_and_unknown_decoder(tiny_codec):
    with pytest.raises(UsageError):
        tiny_codec.encode(_image(8, 8, 0), 0.5)
    with pytest.raises(UsageError, match="no decoder named"):
        tiny_codec.encode(_image(8, 8, 0), 4, decoder="nope")


def test_damaged_streams_raise_lcf_errors_only(tiny_codec):
    from lcf.container import Chunk, write_container

    img = _image(64, 64, 7)
    container = read_container(tiny_codec.encode(img, 6))
    rng = np.random.default_rng(0)
    for target in ("HYPR", "ANCH", "NANC"):
        for trial in range(15):
            chunks = []
            for c in container.chunks:
                payload = bytearray(c.payload)
                if c.type == target and payload:
                    payload[rng.integers(len(payload))] ^= 1 << rng.integers(8)
                    if trial % 3 == 0:
                        payload = payload[: rng.integers(len(payload))]
                chunks.append(Chunk(c.type, bytes(payload)))
            try:
                tiny_codec.decode(write_container(container.header, chunks))
            except LcfError as exc:
                assert isinstance(exc, (CorruptDataError, LcfError))


def test_memory_budget_is_checked_before_allocating(tiny_weights):
    small = Codec(tiny_weights, max_memory=1 << 20)  # 1 MiB: a 256x256 image needs more
    from lcf.errors import LimitError

    with pytest.raises(LimitError, match="LCF_MAX_MEMORY"):
        small.encode(_image(256, 256, 0), 4)
    data = Codec(tiny_weights).encode(_image(256, 256, 0), 4)
    with pytest.raises(LimitError, match="decoding a 256x256 .* GiB"):
        small.decode(data)


def test_encoding_needs_less_memory_than_decoding(tiny_weights):
    """g_a in tiles to H/8 and the entropy parameters built a block at a time leave g_s's whole-image tensors at H/4
    as the larger peak: a budget between the two estimates encodes an image whose file it refuses to decode."""
    from lcf.errors import LimitError
    from lcf.resources import memory_needed

    img = _image(256, 256, 0)
    enc, dec = memory_needed(256, 256, 16, 24), memory_needed(256, 256, 16, 24, decoding=True)
    assert enc < dec
    between = Codec(tiny_weights, max_memory=(enc + dec) // 2)
    data = between.encode(img, 4)
    with pytest.raises(LimitError, match="decoding a 256x256"):
        between.decode(data)
    assert Codec(tiny_weights).decode(data).rgb.shape == (256, 256, 3)


def test_cpu_analysis_runs_channels_last_and_writes_the_same_file(tiny_weights, monkeypatch):
    """The CPU layout of g_a is a speed choice: on these images the symbols, and so the file, stay the same."""
    import lcf.codec as codec_module
    from lcf import resources

    img = make_rgb_array(96, 70, kind="mixed", seed=11)
    fast = codec_module.Codec(tiny_weights)
    data = fast.encode(img, 4.0)
    a = fast.decode(data).rgb
    assert fast.model.g_a[0].deform.offset.weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(resources, "analysis_memory_format", lambda device: torch.contiguous_format)
    plain = codec_module.Codec(tiny_weights)
    assert plain.encode(img, 4.0) == data
    assert np.array_equal(plain.decode(data).rgb, a)


def test_cpu_synthesis_runs_channels_last_within_the_specs_rounding(tiny_weights, monkeypatch):
    """The CPU layout of g_s is a speed choice: the same symbols, pixels within the spec's ±1 of the default layout
    (bit-identical on these images in practice), for every decoder and with latent refinement through g_s."""
    import lcf.codec as codec_module
    from lcf import resources

    img = make_rgb_array(130, 97, kind="mixed", seed=5)
    fast = codec_module.Codec(tiny_weights)
    data = fast.encode(img, 3.0)
    refined = fast.encode(img, 3.0, effort=1)
    names = fast.decoder_names
    fast_px = {n: fast.decode(data, decoder=n).rgb for n in names}
    for n in names:
        convs = [p for p in fast.model.decoders[n].parameters() if p.dim() == 4 and p.shape[-1] > 1]
        assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    monkeypatch.setattr(resources, "synthesis_memory_format", lambda device: torch.contiguous_format)
    plain = codec_module.Codec(tiny_weights)
    for n in names:
        d = plain.decode(data, decoder=n)
        assert np.array_equal(d.symbols.y_hat, fast.decode(data, decoder=n).symbols.y_hat)
        assert np.abs(d.rgb.astype(int) - fast_px[n]).max() <= 1
    assert np.abs(plain.decode(refined).rgb.astype(int) - fast.decode(refined).rgb).max() <= 1


def test_integer_parameters_built_in_position_blocks_give_the_same_file(tiny_codec, monkeypatch):
    """lcf.latent_codec._stream_params runs the PENs a block of positions at a time: any block size writes the same
    bytes and decodes the same symbols (one position per block here, against one block for all)."""
    import lcf.latent_codec as latent_codec_module

    img = make_rgb_array(150, 90, kind="mixed", seed=8)
    data = tiny_codec.encode(img, 5.0)
    symbols = tiny_codec.decode(data).symbols
    monkeypatch.setattr(latent_codec_module, "PARAM_BLOCK", 1)
    assert tiny_codec.encode(img, 5.0) == data
    again = tiny_codec.decode(data).symbols
    assert np.array_equal(again.y_hat, symbols.y_hat) and np.array_equal(again.z_hat, symbols.z_hat)
    assert 1 < int(symbols.coded.sum()) < symbols.coded.size  # each block picks several coded channels out


def test_encode_skips_the_rate_estimate_that_encode_with_stats_reports(tiny_codec):
    """Codec.encode does not compute the integer tables' bit estimate (a tenth of an encode); the bytes are the
    same as encode_with_stats'."""
    img = make_rgb_array(96, 80, kind="mixed", seed=13)
    data, stats = tiny_codec.encode_with_stats(img, 4.0)
    assert tiny_codec.encode(img, 4.0) == data and set(stats["bits_estimated"]) == {"hyper", "anchor", "nonanchor"}
    symbols = tiny_codec.decode(data).symbols
    assert tiny_codec.code_symbols(symbols, estimate=False)[3] is None


def test_large_images_decode_with_g_s_tiles_from_h8_within_the_specs_rounding(tiny_weights, monkeypatch):
    """Beyond DEEP_TILES_PIXELS the codec starts g_s's tiles one up-sampling earlier (H/8): the same symbols and
    pixels within the spec's ±1 of the whole pass; the memory estimate for decoding drops to encoding's."""
    import lcf.resources as resources_module

    assert (
        resources_module.synthesis_upsamplings(4096, 4096) == 2
        and resources_module.synthesis_upsamplings(4160, 4096) == 3
    )
    big = resources_module.DEEP_TILES_PIXELS + 64 * 64
    assert memory_needed_at(big, decoding=True) == memory_needed_at(big) < memory_needed_at(big - 2 * 64 * 64, True)
    img = make_rgb_array(150, 200, kind="mixed", seed=23)
    whole = Codec(tiny_weights)
    whole.synthesis_tile = None
    data = whole.encode(img, 4.0)
    reference = whole.decode(data).rgb
    from lcf.nn import tiling

    depths = []
    plan = tiling.tile_plan
    monkeypatch.setattr(tiling, "tile_plan", lambda g_s, m, up=None: depths.append(up) or plan(g_s, m, up))
    monkeypatch.setattr(resources_module, "DEEP_TILES_PIXELS", 0)
    deep = Codec(tiny_weights)
    deep.synthesis_tile = 5
    assert np.abs(deep.decode(data).rgb.astype(int) - reference).max() <= 1
    assert depths == [3]


def memory_needed_at(pixels: int, decoding: bool = False) -> int:
    from lcf.resources import memory_needed

    return memory_needed(64, pixels // 64, 16, 24, decoding)


def test_writers_decode_without_the_symbols(tiny_codec, tiny_weights, tmp_path, monkeypatch):
    """Codec.decode(symbols=False) gives the same pixels without ŷ, and lcf's own writers (decode_file,
    decode_to_bytes, decode_bytes, decode_array) ask for none, so that ŷ is freed before the pixels become a PIL
    image (issue 20: a huge image's ŷ and its PIL copy need not coexist)."""
    import lcf.codec as codec_module
    from lcf import api

    img = make_rgb_array(90, 70, kind="mixed", seed=31)
    data = tiny_codec.encode(img, 4.0)
    full, bare = tiny_codec.decode(data), tiny_codec.decode(data, symbols=False)
    assert bare.symbols is None and full.symbols is not None and np.array_equal(full.rgb, bare.rgb)
    asked = []
    real = codec_module.Codec.decode

    def spy(self, *args, **kwargs):
        asked.append(kwargs.get("symbols", True))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(codec_module.Codec, "decode", spy)
    src = tmp_path / "a.lcf"
    src.write_bytes(data)
    api.decode_file(src, tmp_path / "a.png", weights=tiny_weights)
    api.decode_to_bytes(src, "png", weights=tiny_weights)
    api.decode_bytes(data, weights=tiny_weights)
    api.decode_array(data, weights=tiny_weights)
    assert len(asked) == 4 and not any(asked), asked
