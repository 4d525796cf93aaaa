"""The CPU dropout: its drop rate, its scaling, its gradient, its determinism under a seed."""

import pytest
import torch

from noamt.ops.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_drop_rate_and_mean_match_p(p):
    torch.manual_seed(0)
    x = torch.ones(400_000)
    y = dropout(x, p)
    dropped = (y == 0).float().mean().item()
    # binomial standard error at n = 4e5 is below 8e-4; p' differs from p by at most 1.6e-5
    assert abs(dropped - p) < 4e-3
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - round(p * 32768) / 32768)))
    assert abs(y.mean().item() - 1.0) < 1e-2  # E[y] = x


def test_each_bit_position_drops_alike():
    # the four 15-bit integers of a random word must all be uniform: no quarter keeps more
    torch.manual_seed(1)
    y = dropout(torch.ones(4 * 100_000), 0.5).view(-1, 4)
    rates = (y == 0).float().mean(dim=0)
    assert torch.all((rates - 0.5).abs() < 0.01), rates


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    expected = torch.where(y != 0, y / x, torch.zeros_like(x)).detach()
    torch.testing.assert_close(x.grad, expected)


def test_same_seed_same_mask_and_eval_or_zero_p_is_identity():
    x = torch.randn(10, 7)
    torch.manual_seed(3)
    a = dropout(x, 0.3)
    torch.manual_seed(3)
    b = dropout(x, 0.3)
    assert torch.equal(a, b)
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    module = Dropout(0.3).eval()
    assert module(x) is x
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\], got 1.5"):
        dropout(x, 1.5)
