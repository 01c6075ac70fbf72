"""LcfModel: training forward, inference pieces and the float64 exact path (lcf/nn/model.py, lcf/nn/exact.py)."""

import pytest
import torch

from lcf.errors import UsageError
from lcf.nn import SCALE_MAX, SCALE_MIN, LcfModel, MixtureTensors, ModelConfig, exact_mode
from lcf.nn.context import split

TINY = ModelConfig(N=16, M=16, Mz=8)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LcfModel(TINY)


def test_config_round_trip_and_validation():
    c = ModelConfig(N=64, M=96, Mz=64)
    assert ModelConfig.from_dict(c.to_dict()) == c
    assert ModelConfig().levels == (0.0016, 0.0032, 0.0075, 0.015, 0.03, 0.045, 0.06)
    with pytest.raises(UsageError):
        ModelConfig(M=15)
    with pytest.raises(UsageError):
        ModelConfig.from_dict({"N": 8, "K": 3})


def test_submodule_names(model):
    names = {n for n, _ in model.named_children()}
    assert names == {"g_a", "h_a", "h_s", "ctx", "pen_anchor", "pen_nonanchor", "z_density", "gain", "decoders"}
    assert list(model.decoders) == ["teacher"]
    keys = model.state_dict().keys()
    assert "ctx.mask" not in keys and not any(k.startswith("_") for k in keys)


def test_training_forward_shapes_finite_loss_and_gradients(model):
    model.train()
    x = torch.rand(2, 3, 64, 64)
    q = torch.tensor([1.0, 6.3])
    out = model(x, q)
    assert out["x_hat"].shape == x.shape
    assert out["y_hat"].shape == (2, 16, 4, 4) and out["likelihoods"]["y"].shape == (2, 16, 4, 4)
    assert out["likelihoods"]["z"].shape == (2, 8, 1, 1)
    assert torch.equal(out["y_hat"], torch.round(out["y_hat"]))
    t1, t2 = out["params"]["anchor"], out["params"]["nonanchor"]
    assert isinstance(t1, MixtureTensors) and t1.weights.shape == (2, 16, 9, 4, 4) and t2.means.shape == (2, 16, 3, 4, 4)
    assert t1.families == ("G", "G", "G", "L", "L", "L", "S", "S", "S") and t2.families == ("G", "G", "G")
    for t in (t1, t2):
        torch.testing.assert_close(t.weights.sum(2), torch.ones_like(t.weights[:, :, 0]))
        assert t.scales.min() >= SCALE_MIN and t.scales.max() <= SCALE_MAX
    bpp = -sum(v.log2().sum() for v in out["likelihoods"].values()) / (2 * 64 * 64)
    loss = bpp + 100 * (out["x_hat"] - x).square().mean() + 0.01 * out["y_hat"].abs().mean()
    assert torch.isfinite(loss)
    model.zero_grad()
    loss.backward()
    for name, child in model.named_children():
        grads = [p.grad for p in child.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_eval_forward_params_match_the_two_pass_float64_path(model):
    model.eval()
    x = torch.rand(1, 3, 64, 128)
    q = torch.tensor([4.0])
    with torch.no_grad():
        out = model(x, q)
        y = model.analyse(x, q)
        z_hat = torch.round(model.hyper_analyse(y))
    y_hat = torch.round(y)
    assert torch.equal(out["y_hat"], y_hat)
    anchors, _ = split(y_hat)
    theta1 = model.anchor_params(z_hat)
    theta2 = model.nonanchor_params(z_hat, anchors)
    assert theta1.weights.dtype == torch.float64 and theta1.weights.device.type == "cpu"
    for a, b in ((out["params"]["anchor"], theta1), (out["params"]["nonanchor"], theta2)):
        for fa, fb in ((a.weights, b.weights), (a.means, b.means), (a.scales, b.scales)):
            torch.testing.assert_close(fa.double(), fb, rtol=1e-4, atol=1e-5)
    x_hat = model.synthesise(y_hat, q)
    assert x_hat.shape == x.shape and x_hat.min() >= 0 and x_hat.max() <= 1
    with pytest.raises(UsageError):
        model.synthesise(y_hat, q, decoder="nope")


def _params(model, z_hat, y_anchor):
    t1, t2 = model.anchor_params(z_hat), model.nonanchor_params(z_hat, y_anchor)
    return [t.weights for t in (t1, t2)] + [t.means for t in (t1, t2)] + [t.scales for t in (t1, t2)]


def test_exact_path_is_bit_identical_across_threads_batches_and_runs(model):
    g = torch.Generator().manual_seed(3)
    z_hat = torch.round(3 * torch.randn(1, 8, 2, 3, generator=g))
    y_anchor, _ = split(torch.round(4 * torch.randn(1, 16, 8, 12, generator=g)))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _params(model, z_hat, y_anchor)
        torch.set_num_threads(2)
        two = _params(model, z_hat, y_anchor)
        again = _params(model, z_hat, y_anchor)
        batch = _params(model, z_hat.repeat(3, 1, 1, 1), y_anchor.repeat(3, 1, 1, 1))
    finally:
        torch.set_num_threads(threads)
    for a, b, c, d in zip(one, two, again, batch):
        assert torch.equal(a, b) and torch.equal(a, c)
        assert all(torch.equal(a[0], d[i]) for i in range(3))


def test_exact_mode_restores_settings():
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with exact_mode():
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det


def test_float64_copy_follows_parameter_updates(model):
    first = model.entropy_model_float64()
    assert model.entropy_model_float64() is first
    with torch.no_grad():
        model.pen_anchor.net[0].bias.add_(1.0)
    second = model.entropy_model_float64()
    assert second is not first
    torch.testing.assert_close(second.pen_anchor.net[0].bias, model.pen_anchor.net[0].bias.double())
    with torch.no_grad():
        model.pen_anchor.net[0].bias.sub_(1.0)


def test_channels_last_training_step():
    torch.manual_seed(1)
    m = LcfModel(TINY).train().to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    out = m(x, torch.tensor([2.0, 5.0]))
    (-out["likelihoods"]["y"].log2().sum() + (out["x_hat"] - x).square().sum()).backward()
    assert all(p.grad is not None for p in m.g_a.parameters())
