"""The building blocks (lcf.nn.layers) compute their formulas, forward and backward, although several of their steps
run in place to save memory: each equals an out-of-place reference written from its docstring, output and
gradients (with respect to the input and every parameter), and leaves its input untouched."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lcf.nn.layers import (
    GDN,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    SimplifiedAttention,
)
from lcf.nn.likelihood import bounded

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gdn(m: GDN, x):
    c = x.shape[1]
    beta = bounded(m.beta, m._beta_bound, float("inf")) ** 2 - m._PEDESTAL
    gamma = bounded(m.gamma, m._gamma_bound, float("inf")) ** 2 - m._PEDESTAL
    norm = F.conv2d(x * x, gamma.view(c, c, 1, 1), beta)
    return x * torch.sqrt(norm) if m.inverse else x / torch.sqrt(norm)


def _lrelu(x):
    return F.leaky_relu(x, 0.01)


def _unit(u, x):
    return F.relu(u.conv(x) + x)


def _reference(m, x):
    if isinstance(m, GDN):
        return _gdn(m, x)
    if isinstance(m, ResidualBlock):
        out = _lrelu(m.conv2(_lrelu(m.conv1(x))))
        return out + (m.skip(x) if m.skip is not None else x)
    if isinstance(m, ResidualBlockWithStride):
        return _gdn(m.gdn, m.conv2(_lrelu(m.conv1(x)))) + m.skip(x[..., ::2, ::2])
    if isinstance(m, ResidualBlockUpsample):
        return _gdn(m.igdn, m.conv(_lrelu(m.subpel(x)))) + m.upsample(x)
    trunk, mask = x, x
    for u in m.trunk:
        trunk = _unit(u, trunk)
    for u in m.mask[:-1]:
        mask = _unit(u, mask)
    return x + trunk * torch.sigmoid(m.mask[-1](mask))


@pytest.mark.parametrize(
    "make",
    [
        lambda: GDN(6),
        lambda: GDN(6, inverse=True),
        lambda: ResidualBlock(6, 6),
        lambda: ResidualBlock(6, 4),
        lambda: ResidualBlockWithStride(6, 4),
        lambda: ResidualBlockUpsample(6, 4),
        lambda: SimplifiedAttention(6),
    ],
)
def test_layers_equal_their_out_of_place_formulas_forward_and_backward(make):
    torch.manual_seed(0)
    m = make()
    x = torch.randn(2, 6, 8, 10, requires_grad=True)
    before = x.detach().clone()
    out = m(x)
    assert torch.equal(x.detach(), before)
    grads = torch.autograd.grad(out.square().sum(), [x, *m.parameters()])
    ref = _reference(m, x)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *m.parameters()])
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
    with torch.inference_mode():
        torch.testing.assert_close(m(x.detach()), ref.detach())
