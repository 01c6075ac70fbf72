"""Checkerboard split/merge and the masked context convolution (lcf/nn/context.py)."""

import torch
from hypothesis import given
from hypothesis import strategies as st

from lcf.nn.context import CheckerboardContext, anchor_mask, checkerboard_kernel_mask, merge, split
from lcf.nn.pen import NonAnchorPEN


@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_split_merge_round_trip(h, w, seed):
    y = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))
    anchors, nonanchors = split(y)
    assert torch.equal(merge(anchors, nonanchors), y)
    assert torch.equal(anchors + nonanchors, y)
    m = anchor_mask(h, w)
    assert bool((anchors[..., ~m[0, 0]] == 0).all()) and bool((nonanchors[..., m[0, 0]] == 0).all())


def test_anchor_mask_is_even_parity():
    m = anchor_mask(3, 4, dtype=torch.int64)[0, 0]
    assert m.tolist() == [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]]


def test_kernel_mask_is_the_checkerboard_neighbourhood():
    assert checkerboard_kernel_mask(5).to(torch.int64).tolist() == [
        [0, 1, 0, 1, 0],
        [1, 0, 1, 0, 1],
        [0, 1, 0, 1, 0],
        [1, 0, 1, 0, 1],
        [0, 1, 0, 1, 0],
    ]


def test_nonanchor_params_ignore_nonanchor_values():
    torch.manual_seed(0)
    M, h, w = 4, 7, 6
    ctx, pen = CheckerboardContext(M, 2 * M), NonAnchorPEN(M)
    t1 = torch.randn(1, 2 * M, h, w)
    y = torch.round(5 * torch.randn(1, M, h, w))
    _, nonanchors = split(torch.ones_like(y))
    y_perturbed = y + nonanchors * torch.round(7 * torch.randn_like(y))  # only non-anchor values change
    assert not torch.equal(y, y_perturbed)
    is_non = ~anchor_mask(h, w)[0, 0]
    a, b = pen(t1, ctx(y)), pen(t1, ctx(y_perturbed))
    for ta, tb in ((a.weights, b.weights), (a.means, b.means), (a.scales, b.scales)):
        assert torch.equal(ta[..., is_non], tb[..., is_non])
    # ...but they do depend on the anchors
    _, c = None, pen(t1, ctx(y + (1 - nonanchors)))
    assert not torch.equal(a.means[..., is_non], c.means[..., is_non])
