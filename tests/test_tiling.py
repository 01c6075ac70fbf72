"""g_s in tiles (lcf.nn.tiling): the measured halo is exactly the dependency radius, tiles give the whole pass's
values up to float rounding for every decoder, and the codec's tiled decoding stays within the spec's ±1."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from images import make_rgb_array
from torch import nn

from lcf.codec import Codec
from lcf.nn import LcfModel, ModelConfig
from lcf.nn.layers import conv3x3, subpel_conv3x3
from lcf.nn.students import build_decoder, student_arch, teacher_arch
from lcf.nn.tiling import (
    ANALYSIS_HALO,
    analyse_tiled,
    dependency_radius,
    run_tiled,
    synthesis_reach,
    synthesise_blocks,
    synthesise_tiled,
    tile_plan,
)
from lcf.resources import analysis_tile, synthesis_block, synthesis_tile

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _decoders(M: int = 12, N: int = 8) -> dict[str, nn.Sequential]:
    torch.manual_seed(3)
    archs = {"teacher": teacher_arch(N, M), **{k: student_arch(k, N, M) for k in ("cfg2", "cfg3", "cfg4")}}
    return {name: build_decoder(arch).eval() for name, arch in archs.items()}


def test_dependency_radius_of_known_stacks():
    """Two 3x3 convolutions reach 2 pixels; one before and one after a x2 sub-pixel up-sampling reach 2 input
    pixels too (1 + ceil(1/2)); a 1x1 convolution reaches none."""
    torch.manual_seed(0)
    assert dependency_radius(nn.Sequential(conv3x3(4, 4), nn.LeakyReLU(), conv3x3(4, 4)), 4, 1) == 2
    assert dependency_radius(nn.Sequential(subpel_conv3x3(4, 4, 2), conv3x3(4, 4)), 4, 2) == 2
    assert dependency_radius(nn.Conv2d(4, 4, 1), 4, 1) == 0
    with pytest.raises(ValueError, match="does not depend"):
        dependency_radius(nn.Sequential(nn.Conv2d(4, 4, 1), _Zero()), 4, 1)


class _Zero(nn.Module):
    def forward(self, x):
        return x * 0


@pytest.mark.parametrize("upsamplings", [2, 3])
@pytest.mark.parametrize("name", ["teacher", "cfg2", "cfg3", "cfg4"])
def test_tiles_with_the_measured_halo_give_the_whole_pass_and_one_less_does_not(name, upsamplings):
    g_s = _decoders()[name]
    plan = tile_plan(g_s, 12, upsamplings)
    assert plan is not None and plan.scale == 2**upsamplings and plan.halo >= 1
    y = torch.randn(1, 12, 9, 11) * 3
    with torch.no_grad():
        whole = g_s(y)
        f = g_s[: plan.split](y)
        for tile in (5, 7, 13):  # tiles that do and do not divide the tail's input (36x44 or 18x22)
            assert torch.allclose(run_tiled(g_s[plan.split :], f, tile, plan.halo, plan.scale), whole, atol=1e-5)
        short = run_tiled(g_s[plan.split :], f, 5, plan.halo - 1, plan.scale)
    if upsamplings == 2:  # from H/8 the pixels at the full radius weigh below float noise with these random weights
        assert (short - whole).abs().max() > 1e-3


def test_tiled_synthesis_with_skipped_channels_matches_the_plain_pass():
    g_s = _decoders()["teacher"]
    y = torch.randn(1, 12, 8, 8) * 3
    coded = torch.ones(12, dtype=torch.bool)
    coded[::3] = False
    y[:, ~coded] = 0
    with torch.no_grad():
        assert torch.allclose(synthesise_tiled(g_s, y, 6, coded), g_s(y), atol=1e-5)
        assert torch.allclose(synthesise_tiled(g_s, y, None, coded), g_s(y), atol=1e-5)
        assert torch.allclose(synthesise_tiled(g_s, y, 1000), g_s(y), atol=1e-5)  # one tile: the plain tail


def test_a_decoder_without_two_upsampling_modules_runs_whole():
    g_s = nn.Sequential(subpel_conv3x3(12, 3, 16))
    assert tile_plan(g_s, 12) is None
    y = torch.randn(1, 12, 3, 3)
    with torch.no_grad():
        assert torch.equal(synthesise_tiled(g_s, y, 1), g_s(y))
    with pytest.raises(ValueError, match="tile"):
        run_tiled(g_s, y, 0, 1, 16)


def test_codec_decodes_in_tiles_within_the_specs_rounding(tiny_weights):
    """Tiles of 8 tail pixels (32 output pixels) on a 200x150 image against the whole pass, every decoder."""
    img = make_rgb_array(150, 200, kind="mixed", seed=21)
    tiled = Codec(tiny_weights)
    assert tiled.synthesis_tile == synthesis_tile(torch.device("cpu"))
    tiled.synthesis_tile = 8
    whole = Codec(tiny_weights)
    whole.synthesis_tile = None
    data = tiled.encode(img, 4.0)
    for name in tiled.decoder_names:
        a, b = tiled.decode(data, decoder=name), whole.decode(data, decoder=name)
        assert np.array_equal(a.symbols.y_hat, b.symbols.y_hat)
        assert np.abs(a.rgb.astype(int) - b.rgb).max() <= 1


@pytest.mark.parametrize("name", ["teacher", "cfg2", "cfg3", "cfg4"])
def test_blocks_of_the_whole_g_s_with_its_reach_give_the_whole_pass(name):
    """Blocks of 3x3 latent pixels (each read with g_s's reach around it) cover every output pixel once and give the
    whole pass's values up to float rounding; a latent within one block runs whole."""
    g_s = _decoders()[name]
    y = torch.randn(1, 12, 8, 10)
    radius, scale = synthesis_reach(g_s, 12) or (None, None)
    assert scale == 16 and radius == dependency_radius(g_s, 12, 16)
    with torch.no_grad():
        whole = g_s(y)
        out, seen = torch.full_like(whole, float("nan")), torch.zeros(whole.shape[-2:], dtype=torch.int32)
        parts = list(synthesise_blocks(g_s, y, 3, 4))
        for top, left, part in parts:
            out[:, :, top : top + part.shape[-2], left : left + part.shape[-1]] = part
            seen[top : top + part.shape[-2], left : left + part.shape[-1]] += 1
        assert len(parts) == 3 * 4 and bool((seen == 1).all())
        assert torch.allclose(out, whole, atol=1e-4)
        ((top, left, part),) = synthesise_blocks(g_s, y, 10, None)
        assert (top, left) == (0, 0) and torch.equal(part, whole)


def test_codec_decodes_in_blocks_within_the_specs_rounding(tiny_weights):
    """The whole g_s in blocks of 4 latent pixels (64 output pixels, 12 blocks) on a 200x150 image against the whole
    pass: the same symbols, pixels within ±1, every decoder."""
    img = make_rgb_array(150, 200, kind="mixed", seed=22)
    blocked = Codec(tiny_weights)
    assert blocked.synthesis_block == synthesis_block(torch.device("cpu"))
    blocked.synthesis_block = 4
    whole = Codec(tiny_weights)
    whole.synthesis_block = None
    data = blocked.encode(img, 4.0)
    for name in blocked.decoder_names:
        a, b = blocked.decode(data, decoder=name), whole.decode(data, decoder=name)
        assert np.array_equal(a.symbols.y_hat, b.symbols.y_hat) and a.rgb.shape == b.rgb.shape == img.shape
        assert np.abs(a.rgb.astype(int) - b.rgb).max() <= 1


# -- g_a ---------------------------------------------------------------------------------------------------------------


def _g_a(shift: float) -> nn.Sequential:
    """A small g_a whose deformable convolutions all sample ``shift`` pixels down and right of the plain grid."""
    torch.manual_seed(5)
    g_a = LcfModel(ModelConfig(N=8, M=12, Mz=8)).eval().g_a
    with torch.no_grad():
        for m in g_a:
            if hasattr(m, "deform"):
                m.deform.offset.bias.fill_(shift)
    return g_a


def test_analysis_tiles_give_the_whole_pass_while_the_offsets_stay_inside_the_halo():
    x = torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        near, far = _g_a(2.0), _g_a(8.0 * ANALYSIS_HALO)  # 2 pixels; beyond the halo at every tile edge
        assert torch.allclose(analyse_tiled(near, x, 8), near(x), atol=1e-5)
        assert (analyse_tiled(far, x, 8) - far(x)).abs().max() > 1e-3
        assert torch.equal(analyse_tiled(near, x, 56), near(x))  # 224 pixels fit in one tile: the plain pass
    with pytest.raises(ValueError, match="cells of 4"):
        run_tiled(near[:3], torch.rand(1, 3, 30, 32), 4, 1, down=4)


def test_codec_encodes_in_tiles_to_the_same_symbols(tiny_weights):
    """Tiles of 8 head pixels (64 input pixels) on a 200x150 image: a deterministic file whose symbols equal the
    whole pass's (the tiny model's offsets are zero, well inside the halo)."""
    img = make_rgb_array(150, 200, kind="mixed", seed=22)
    tiled, whole = Codec(tiny_weights), Codec(tiny_weights)
    assert tiled.analysis_tile == analysis_tile(torch.device("cpu"))
    tiled.analysis_tile, whole.analysis_tile = 8, None
    data = tiled.encode(img, 4.0)
    assert tiled.encode(img, 4.0) == data
    a, b = tiled.decode(data).symbols, whole.decode(whole.encode(img, 4.0)).symbols
    assert np.array_equal(a.y_hat, b.y_hat) and np.array_equal(a.z_hat, b.z_hat)


def test_huge_images_synthesise_in_smaller_blocks(tiny_weights, monkeypatch):
    """Beyond HUGE_IMAGE_PIXELS the codec runs g_s in blocks of 3/4 of its side (issue 20: the output and ŷ leave
    less of 1 GiB for a block's activations); below, in its own blocks; None stays whole."""
    import lcf.resources as resources

    assert resources.image_synthesis_block(128, resources.HUGE_IMAGE_PIXELS) == 128
    assert resources.image_synthesis_block(128, resources.HUGE_IMAGE_PIXELS + 1) == 96
    assert resources.image_synthesis_block(None, 1 << 40) is None
    img = make_rgb_array(150, 200, kind="mixed", seed=22)
    codec = Codec(tiny_weights)
    codec.synthesis_block = 8
    data = codec.encode(img, 4.0)
    seen = []
    real = codec.model.synthesise_blocks

    def spy(*args, **kwargs):
        seen.append(kwargs["block"])
        return real(*args, **kwargs)

    monkeypatch.setattr(codec.model, "synthesise_blocks", spy)
    codec.decode(data)
    monkeypatch.setattr(resources, "HUGE_IMAGE_PIXELS", 200 * 150)
    codec.decode(data)
    assert seen == [8, 6]
