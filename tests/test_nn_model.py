"""LcfModel: training forward, inference pieces, and how its float entropy networks relate to the integer ones
(lcf/nn/model.py, lcf/nn/integer.py)."""

import copy

import numpy as np
import pytest
import torch

from lcf.constants import SCALE_MAX, SCALE_MIN
from lcf.entropy import int_params
from lcf.entropy.params import SCALE_THRESHOLDS, WEIGHT_TOTAL
from lcf.errors import UsageError
from lcf.nn import IntegerEntropyNet, LcfModel, MixtureTensors, ModelConfig, exact_mode
from lcf.nn.integer import float_state, integer_arrays

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
    assert isinstance(t1, MixtureTensors) and t1.weights.shape == (2, 16, 9, 4, 4)
    assert t2.means.shape == (2, 16, 3, 4, 4)
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


def _stream_view(theta: MixtureTensors, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, means, scales) of a float MixtureTensors as (elements, K) arrays, elements channel-major."""
    return tuple(
        t[0].double().numpy().transpose(0, 2, 3, 1).reshape(-1, k) for t in (theta.weights, theta.means, theta.scales)
    )


def test_integer_path_agrees_with_the_float_model_it_was_made_from(model):
    """The codec's integer networks give the float model's mixtures up to their grids: the float model trained and
    refined with is the one whose integers code the file."""
    model = copy.deepcopy(model).eval()
    net = IntegerEntropyNet(integer_arrays(model))
    model.load_state_dict(float_state(integer_arrays(model)), strict=False)  # the float model a weights folder loads
    x = torch.rand(1, 3, 64, 128)
    q = torch.tensor([4.0])
    with torch.no_grad():
        out = model(x, q)
        y_hat = torch.round(model.analyse(x, q))
        z_hat = torch.round(model.hyper_analyse(y_hat))
    assert torch.equal(out["y_hat"], y_hat)
    t1 = net.hyper(z_hat.to(torch.int64).numpy())
    raws = (net.anchor(t1), net.nonanchor(t1, y_hat.to(torch.int64).numpy()))
    for raw, theta in zip(raws, (out["params"]["anchor"], out["params"]["nonanchor"]), strict=True):
        k = len(theta.families)
        m, slots = TINY.M, raw.shape[1] // TINY.M
        p = int_params(raw[0].numpy().astype(np.int64).reshape(m, slots, -1).transpose(0, 2, 1).reshape(-1, slots))
        w, mu, sc = _stream_view(theta, k)
        assert p.families == theta.families
        assert np.abs(p.weights / WEIGHT_TOTAL - w).max() < 0.01
        assert np.abs(p.means / 16 - mu).max() < 1 / 32 + 0.01
        assert np.abs(p.scale_idx - np.searchsorted(SCALE_THRESHOLDS, sc, side="right")).max() <= 1
    x_hat = model.synthesise(y_hat, q)
    assert x_hat.shape == x.shape and x_hat.min() >= 0 and x_hat.max() <= 1
    with pytest.raises(UsageError):
        model.synthesise(y_hat, q, decoder="nope")


def test_exact_mode_restores_settings():
    mkldnn = torch.backends.mkldnn.enabled
    with exact_mode():
        assert not torch.backends.mkldnn.enabled
    assert torch.backends.mkldnn.enabled == mkldnn
    with pytest.raises(RuntimeError), exact_mode():
        raise RuntimeError("restored on errors too")
    assert torch.backends.mkldnn.enabled == mkldnn


def test_channels_last_training_step():
    torch.manual_seed(1)
    m = LcfModel(TINY).train().to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    out = m(x, torch.tensor([2.0, 5.0]))
    (-out["likelihoods"]["y"].log2().sum() + (out["x_hat"] - x).square().sum()).backward()
    assert all(p.grad is not None for p in m.g_a.parameters())
