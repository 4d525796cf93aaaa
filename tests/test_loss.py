"""The fused label-smoothed cross-entropy: PyTorch's value and gradient, in one softmax."""

import pytest
import torch
import torch.nn.functional as F

from noamt.loss import label_smoothed_cross_entropy


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_value_and_gradient_match_pytorch(epsilon):
    torch.manual_seed(0)
    logits = (5 * torch.randn(40, 25, dtype=torch.float64)).requires_grad_()
    target = torch.randint(0, 25, (40,))
    expected = F.cross_entropy(logits, target, label_smoothing=epsilon, reduction="sum")
    (expected_grad,) = torch.autograd.grad(3.0 * expected, logits)
    fused = label_smoothed_cross_entropy(logits, target, epsilon)
    (fused_grad,) = torch.autograd.grad(3.0 * fused, logits)
    torch.testing.assert_close(fused, expected)
    torch.testing.assert_close(fused_grad, expected_grad)


def test_large_logits_do_not_overflow():
    logits = torch.tensor([[1000.0, 0.0, -1000.0]], requires_grad=True)
    loss = label_smoothed_cross_entropy(logits, torch.tensor([0]), 0.0)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(logits.grad, torch.zeros_like(logits), atol=1e-6, rtol=0)
