"""Discretized mixture likelihoods (lcf/nn/likelihood.py) and the factorized density of z (lcf/nn/hyper.py)."""

import pytest
import torch

from lcf.nn.hyper import FactorizedDensity
from lcf.nn.likelihood import (
    LIKELIHOOD_MIN,
    SCALE_MAX,
    SCALE_MIN,
    bounded,
    component_bin_mass,
    family_cdf,
    mixture_likelihood,
)

_SUPPORT = torch.arange(-3000, 3001, dtype=torch.float64)


@pytest.mark.parametrize("family", ["G", "L", "S"])
def test_each_family_sums_to_one_over_the_integers(family):
    g = torch.Generator().manual_seed(ord(family))
    means = torch.cat([torch.tensor([0.0, 0.5, -0.3]), 200 * torch.rand(5, generator=g) - 100]).double()
    for scale in (SCALE_MIN, 0.37, 3.0, SCALE_MAX):
        s = torch.full_like(means, scale)
        mass = component_bin_mass(family, _SUPPORT.view(-1, 1), means, s)
        assert bool((mass >= 0).all())
        torch.testing.assert_close(mass.sum(0), torch.ones_like(means), rtol=0, atol=1e-9)


@pytest.mark.parametrize("family", ["G", "L", "S"])
def test_bin_mass_equals_cdf_difference(family):
    y = torch.arange(-20, 21, dtype=torch.float64).view(-1, 1)
    mean, scale = torch.tensor([1.3, -0.4]).double(), torch.tensor([2.0, 0.7]).double()
    expected = family_cdf(family, y + 0.5, mean, scale) - family_cdf(family, y - 0.5, mean, scale)
    torch.testing.assert_close(component_bin_mass(family, y, mean, scale), expected, rtol=1e-9, atol=1e-15)


def test_tails_are_accurate_not_cancelled():
    # 30 scales out, 1 − F(x) would cancel to zero in float32; the symmetric evaluation keeps it positive.
    y, mean, scale = torch.tensor([60.0]), torch.tensor([0.0]), torch.tensor([2.0])
    for family in "GLS":
        far = component_bin_mass(family, y, mean, scale)
        assert far.item() == component_bin_mass(family, -y, mean, scale).item()
        assert far.item() > 0 or family == "G"


def test_mixture_sums_to_one_and_is_clamped():
    g = torch.Generator().manual_seed(1)
    fams = ("G", "G", "G", "L", "L", "L", "S", "S", "S")
    w = torch.softmax(torch.randn(1, 2, 9, 1, 1, generator=g, dtype=torch.float64), dim=2)
    mu = 10 * torch.randn(1, 2, 9, 1, 1, generator=g, dtype=torch.float64)
    s = SCALE_MIN + 5 * torch.rand(1, 2, 9, 1, 1, generator=g, dtype=torch.float64)
    y = _SUPPORT.view(1, 1, 1, -1).expand(1, 2, 1, -1)
    lik = mixture_likelihood(y, w, mu, s, fams)
    torch.testing.assert_close(lik.sum(-1), torch.ones(1, 2, 1, dtype=torch.float64), rtol=0, atol=1e-5)
    assert lik.min().item() == LIKELIHOOD_MIN  # far tails hit the floor (6000 bins x 1e-9 explain the atol)


def test_bounded_keeps_gradients_that_point_back_into_range():
    x = torch.tensor([-1.0, 0.5, 2.0], requires_grad=True)
    (bounded(x, 0.0, 1.0) * torch.tensor([-1.0, 1.0, 1.0])).sum().backward()
    assert x.grad.tolist() == [-1.0, 1.0, 1.0]  # below: pushed up (kept); above: pushed down (kept)
    x.grad = None
    (bounded(x, 0.0, 1.0) * torch.tensor([1.0, 1.0, -1.0])).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0]


def test_factorized_density_pmf_and_likelihood():
    torch.manual_seed(0)
    d = FactorizedDensity(4)
    pmf = d.pmf(600)
    assert pmf.dtype == torch.float64 and pmf.shape == (4, 1201)
    torch.testing.assert_close(pmf.sum(1), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-6)
    pmf = pmf[:, 540:661]
    z = torch.arange(-60, 61, dtype=torch.float32).view(1, 1, 1, -1).expand(1, 4, 1, -1)
    torch.testing.assert_close(d.likelihood(z)[0, :, 0].double(), pmf.clamp(min=LIKELIHOOD_MIN), rtol=1e-4, atol=1e-7)
    c = d.cdf(torch.linspace(-20, 20, 50).view(1, 1, 1, -1).expand(1, 4, 1, -1))
    assert bool((c.diff(dim=-1) >= 0).all())
