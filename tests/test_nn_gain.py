"""Quality gains (lcf/nn/gain.py)."""

import pytest
import torch

from lcf.errors import UsageError
from lcf.nn.gain import QualityGain


def test_integer_qualities_give_the_level_gains_exactly():
    g = QualityGain(7, 5)
    with torch.no_grad():
        g.log_gain.add_(0.1 * torch.randn(7, 5))
    q = torch.arange(1, 8, dtype=torch.float32)
    assert torch.equal(g.gain(q)[:, :, 0, 0], torch.exp(g.log_gain))
    assert torch.equal(g.inv_gain(q)[:, :, 0, 0], torch.exp(g.log_inv_gain))


def test_between_levels_is_geometric():
    g = QualityGain(7, 3)
    mid = g.gain(torch.tensor([2.5]))[0, :, 0, 0]
    torch.testing.assert_close(mid, torch.sqrt(torch.exp(g.log_gain[1]) * torch.exp(g.log_gain[2])))


def test_initial_levels_are_spread_and_inverse():
    g = QualityGain(7, 2)
    gains = g.gain(torch.arange(1, 8, dtype=torch.float32))[:, 0, 0, 0]
    torch.testing.assert_close(gains, 2 ** ((torch.arange(1, 8) - 4) / 2))
    torch.testing.assert_close(gains * g.inv_gain(torch.arange(1, 8, dtype=torch.float32))[:, 0, 0, 0], torch.ones(7))


@pytest.mark.parametrize("q", [0.99, 7.01, float("nan")])
def test_out_of_range_quality_is_a_usage_error(q):
    with pytest.raises(UsageError):
        QualityGain(7, 2).gain(torch.tensor([q]))
