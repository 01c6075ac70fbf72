"""Deformable convolution against a direct loop over output positions and taps (lcf/nn/deform.py)."""

import math

import pytest
import torch
import torch.nn.functional as F

from lcf.nn.deform import DeformableResidualModule, DeformConv2d, deform_conv2d


def _bilinear(img: torch.Tensor, py: torch.Tensor, px: torch.Tensor) -> torch.Tensor:
    """img (C, H, W) sampled at one real position, zero outside the image."""
    h, w = img.shape[-2:]
    y0, x0 = math.floor(py.item()), math.floor(px.item())
    ly, lx = py - y0, px - x0
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + wy * wx * img[:, yy, xx]
    return out


def _reference(x, offsets, weight, bias, stride, padding, dilation):
    b, c, h, w = x.shape
    cout, _, kh, kw = weight.shape
    ho, wo = offsets.shape[-2:]
    rows = []
    for n in range(b):
        for u in range(ho):
            for v in range(wo):
                acc = bias.clone()
                for i in range(kh):
                    for j in range(kw):
                        k = i * kw + j
                        py = u * stride - padding + i * dilation + offsets[n, 2 * k, u, v]
                        px = v * stride - padding + j * dilation + offsets[n, 2 * k + 1, u, v]
                        acc = acc + weight[:, :, i, j] @ _bilinear(x[n], py, px)
                rows.append(acc)
    return torch.stack(rows).view(b, ho, wo, cout).permute(0, 3, 1, 2)


@pytest.mark.parametrize("stride,padding,dilation,k", [(1, 1, 1, 3), (2, 1, 1, 3), (1, 2, 2, 3), (2, 0, 1, 2)])
def test_matches_loop_reference_values_and_gradients(stride, padding, dilation, k):
    g = torch.Generator().manual_seed(stride * 10 + padding + dilation + k)
    b, c, h, w, cout = 2, 3, 5, 6, 4
    ho = (h + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (k - 1) - 1) // stride + 1
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    offsets = (3 * torch.rand(b, 2 * k * k, ho, wo, generator=g, dtype=torch.float64) - 1.5).requires_grad_()
    weight = torch.randn(cout, c, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(cout, generator=g, dtype=torch.float64, requires_grad=True)
    ours = deform_conv2d(x, offsets, weight, bias, stride, padding, dilation)
    ref = _reference(x, offsets, weight, bias, stride, padding, dilation)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    seed = torch.randn(ours.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((ours * seed).sum(), (x, offsets, weight, bias))
    ref_grads = torch.autograd.grad((ref * seed).sum(), (x, offsets, weight, bias))
    for a, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("stride", [1, 2])
def test_zero_offsets_equal_conv2d(stride):
    g = torch.Generator().manual_seed(stride)
    x = torch.randn(2, 5, 9, 8, generator=g)
    weight = torch.randn(7, 5, 3, 3, generator=g)
    bias = torch.randn(7, generator=g)
    expected = F.conv2d(x, weight, bias, stride=stride, padding=1)
    offsets = torch.zeros(2, 18, *expected.shape[-2:])
    torch.testing.assert_close(deform_conv2d(x, offsets, weight, bias, stride, 1), expected, rtol=1e-5, atol=1e-5)


def test_offset_conv_starts_at_zero_so_modules_start_as_plain_convolutions():
    torch.manual_seed(0)
    dc = DeformConv2d(4, 6, stride=2)
    x = torch.randn(1, 4, 8, 8)
    torch.testing.assert_close(dc(x), F.conv2d(x, dc.weight, dc.bias, stride=2, padding=1), rtol=1e-5, atol=1e-5)
    drm = DeformableResidualModule(4, 6)
    out = drm(x)
    assert out.shape == (1, 6, 4, 4)
    out.square().sum().backward()
    assert drm.deform.offset.weight.grad is not None and drm.deform.offset.weight.grad.abs().sum() > 0


def test_rejects_bad_offsets_shape():
    with pytest.raises(ValueError):
        deform_conv2d(torch.zeros(1, 2, 4, 4), torch.zeros(1, 18, 3, 4), torch.zeros(3, 2, 3, 3), padding=1)
