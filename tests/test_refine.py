"""Encoder effort: latent refinement (lcf.nn.refine) and its plumbing through Codec, API, CLI, batch and Pillow."""

import math

import numpy as np
import pytest
import torch
from images import make_rgb, make_rgb_array

from lcf import api
from lcf.codec import Codec
from lcf.effort import EFFORT_ITERATIONS, MAX_EFFORT, check_effort
from lcf.errors import LimitError, UsageError
from lcf.nn.refine import level_lambda

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shipped():
    return Codec()


def real_cost(codec: Codec, rgb: np.ndarray, data: bytes, quality: float) -> float:
    """λ·255²·MSE + bpp of a real file: the quantity refinement lowers (up to ẑ and the container)."""
    rec = codec.decode(data).rgb
    mse = float(np.mean((rec.astype(np.float64) - rgb.astype(np.float64)) ** 2)) / 255.0**2
    return level_lambda(codec.config.levels, quality) * 255.0**2 * mse + len(data) * 8 / (rgb.shape[0] * rgb.shape[1])


def test_level_lambda_is_the_level_at_integers_and_geometric_between():
    levels = (0.001, 0.004, 0.016)
    assert level_lambda(levels, 1.0) == pytest.approx(0.001)
    assert level_lambda(levels, 3.0) == pytest.approx(0.016)
    assert level_lambda(levels, 1.5) == pytest.approx(0.002)
    assert level_lambda(levels, 2.5) == pytest.approx(0.008)
    assert level_lambda((0.01,), 1.0) == 0.01


@pytest.mark.parametrize("bad", [-1, MAX_EFFORT + 1, 1.5, "2", True, None])
def test_check_effort_rejects_what_is_not_an_effort(bad):
    with pytest.raises(UsageError, match="effort must be an integer from 0"):
        check_effort(bad)


def test_effort_levels_grow():
    assert EFFORT_ITERATIONS[0] == 0
    assert all(a < b for a, b in zip(EFFORT_ITERATIONS, EFFORT_ITERATIONS[1:], strict=False))


def test_refinement_lowers_the_real_cost_with_the_shipped_weights(shipped):
    rgb = make_rgb_array(128, 128, "mixed", seed=3)
    for quality in (2.0, 6.0):
        base = shipped.encode(rgb, quality)
        refined = shipped.encode(rgb, quality, effort=1)
        assert refined != base
        assert real_cost(shipped, rgb, refined, quality) < real_cost(shipped, rgb, base, quality)


def test_refinement_never_raises_the_cost_it_measures(shipped):
    from lcf.nn.refine import refine_latents

    rgb = make_rgb_array(64, 64, "noise", seed=5)
    shipped._ensure_encoder()
    shipped._ensure_decoder("teacher")
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    q = torch.tensor([3.0])
    with torch.no_grad():
        y = shipped.model.analyse(x, q)
    result = refine_latents(
        shipped.model,
        shipped._entropy_on_device(),
        shipped.model.decoders["teacher"],
        x,
        y,
        3.0,
        4,
        height=64,
        width=64,
    )
    assert result.cost_after <= result.cost_before
    assert math.isfinite(result.cost_before)
    if result.best_iteration == 0:
        assert torch.equal(torch.round(result.y), torch.round(y))
    none = refine_latents(
        shipped.model,
        shipped._entropy_on_device(),
        shipped.model.decoders["teacher"],
        x,
        y,
        3.0,
        0,
        height=64,
        width=64,
    )
    assert none.best_iteration == 0 and torch.equal(torch.round(none.y), torch.round(y))


def test_refined_files_are_repeatable_valid_and_decode_with_every_decoder(tiny_codec, tiny_weights):
    rgb = make_rgb_array(80, 48, "edges", seed=1)  # padded: the cost must be measured on the real pixels only
    first = tiny_codec.encode(rgb, 4.5, effort=1)
    assert tiny_codec.encode(rgb, 4.5, effort=1) == first
    api.validate_deep(first, tiny_weights)
    for name in tiny_codec.decoder_names:
        assert tiny_codec.decode(first, name).rgb.shape == (48, 80, 3)


def test_channels_g_a_leaves_zero_stay_zero(tiny_codec):
    rgb = make_rgb_array(64, 64, "gradient", seed=2)
    _, _, base = tiny_codec.analyse(rgb, 4.0)
    _, _, refined = tiny_codec.analyse(rgb, 4.0, effort=1)
    assert not base.coded.all()  # the tiny model's spread gains skip some channels at this level
    assert not (refined.coded & ~base.coded).any()
    assert not refined.y_hat[~base.coded].any()


def test_effort_needs_more_memory_and_says_so(tiny_weights):
    rgb = make_rgb_array(256, 256, "noise")
    codec = Codec(tiny_weights, max_memory=16 << 20)
    codec.encode(rgb, 4.0)  # fits at effort 0
    with pytest.raises(LimitError, match="at effort 2.*lower --effort"):
        codec.encode(rgb, 4.0, effort=2)


def test_api_and_pillow_pass_effort(tiny_weights, tmp_path):
    from PIL import Image

    import lcf.pillow

    image = make_rgb(64, 64, "text", seed=4)
    data = api.encode_image(image, quality=4.0, weights=tiny_weights, effort=1)
    assert data == Codec(tiny_weights).encode(np.asarray(image), 4.0, effort=1)
    with pytest.raises(UsageError, match="effort"):
        api.encode_image(image, weights=tiny_weights, effort=9)
    lcf.pillow.register(weights=tiny_weights)
    try:
        image.save(tmp_path / "p.lcf", effort=1)
        assert (tmp_path / "p.lcf").read_bytes() == data
        with pytest.raises(UsageError, match="effort"):
            image.save(tmp_path / "bad.lcf", effort="max")
    finally:
        lcf.pillow.register()
    assert not (tmp_path / "bad.lcf").exists() or (tmp_path / "bad.lcf").stat().st_size == 0


def test_cli_encode_and_batch_take_effort(tiny_weights, tmp_path):
    from typer.testing import CliRunner

    from lcf_cli.main import app

    src = tmp_path / "in"
    src.mkdir()
    make_rgb(64, 64, "mixed", seed=6).save(src / "a.png")
    runner = CliRunner()
    out = runner.invoke(
        app,
        ["encode", str(src / "a.png"), "-o", str(tmp_path / "a.lcf"), "--effort", "1", "--weights", str(tiny_weights)],
    )
    assert out.exit_code == 0, out.output
    expected = Codec(tiny_weights).encode(np.asarray(make_rgb(64, 64, "mixed", seed=6)), 4.0, effort=1)
    assert (tmp_path / "a.lcf").read_bytes() == expected
    bad = runner.invoke(
        app,
        ["encode", str(src / "a.png"), "-o", str(tmp_path / "b.lcf"), "--effort", "7", "--weights", str(tiny_weights)],
    )
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert not (tmp_path / "b.lcf").exists()
    done = runner.invoke(app, ["batch", str(src), str(tmp_path / "out"), "-e", "1", "--weights", str(tiny_weights)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out" / "a.lcf").read_bytes() == expected


def test_progress_is_called_after_every_refinement_step(tiny_weights, tmp_path):
    from PIL import Image

    calls = []
    make_rgb(48, 32, "noise", seed=8).save(tmp_path / "a.png")
    report = api.encode_file(
        tmp_path / "a.png",
        tmp_path / "a.lcf",
        effort=2,
        weights=tiny_weights,
        progress=lambda done, total: calls.append((done, total)),
    )
    total = EFFORT_ITERATIONS[2]
    assert calls == [(i, total) for i in range(1, total + 1)]
    assert report.bytes == (tmp_path / "a.lcf").stat().st_size
    with Image.open(tmp_path / "a.png") as im:
        assert (report.width, report.height) == im.size
    calls.clear()
    api.encode_file(tmp_path / "a.png", tmp_path / "b.lcf", weights=tiny_weights, progress=lambda *a: calls.append(a))
    assert calls == []  # effort 0 has no refinement steps
