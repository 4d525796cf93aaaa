"""The fused projection + label-smoothed cross-entropy: PyTorch's value and gradients."""

import pytest
import torch
import torch.nn.functional as F

from noamt.ops.cross_entropy import projected_label_smoothed_cross_entropy, projected_token_losses


def reference(hidden, weight, target, epsilon):
    return F.cross_entropy(hidden @ weight.t(), target, label_smoothing=epsilon, reduction="sum")


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("chunk_rows", [7, 40, 1024])  # several chunks, the last one short; one chunk
def test_value_and_gradients_match_pytorch(epsilon, chunk_rows):
    torch.manual_seed(0)
    hidden = torch.randn(40, 16, requires_grad=True)
    weight = (2 * torch.randn(25, 16)).requires_grad_()
    target = torch.randint(0, 25, (40,))
    expected = reference(hidden, weight, target, epsilon)
    expected_grads = torch.autograd.grad(3.0 * expected, (hidden, weight))
    fused = projected_label_smoothed_cross_entropy(hidden, weight, target, epsilon, chunk_rows=chunk_rows)
    fused_grads = torch.autograd.grad(3.0 * fused, (hidden, weight))
    torch.testing.assert_close(fused, expected)
    for got, want in zip(fused_grads, expected_grads, strict=True):  # float32, summed chunk by chunk
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_a_weight_used_twice_gets_both_gradients():
    # tied embeddings: the output matrix is also looked up; autograd must add the two parts
    torch.manual_seed(1)
    weight = torch.randn(12, 8, requires_grad=True)
    tokens, target = torch.randint(0, 12, (9,)), torch.randint(0, 12, (9,))
    grads = []
    for loss_fn in (reference, projected_label_smoothed_cross_entropy):
        hidden = torch.tanh(weight[tokens] * 2.0)
        (grad,) = torch.autograd.grad(loss_fn(hidden, weight, target, 0.1), weight)
        grads.append(grad)
    torch.testing.assert_close(grads[1], grads[0])


def test_large_logits_do_not_overflow():
    hidden = torch.tensor([[1000.0, 0.0]], requires_grad=True)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], requires_grad=True)
    loss = projected_label_smoothed_cross_entropy(hidden, weight, torch.tensor([0]), 0.0)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(hidden.grad, torch.zeros_like(hidden), atol=1e-6, rtol=0)


def test_under_autocast_products_run_in_its_dtype_and_match_closely():
    torch.manual_seed(2)
    hidden = torch.randn(30, 16, requires_grad=True)
    weight = torch.randn(20, 16, requires_grad=True)
    target = torch.randint(0, 20, (30,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.cross_entropy(F.linear(hidden, weight).float(), target, label_smoothing=0.1, reduction="sum")
        fused = projected_label_smoothed_cross_entropy(hidden, weight, target, 0.1, chunk_rows=8)
    torch.testing.assert_close(fused, expected, rtol=2e-3, atol=0.0)
    grads = torch.autograd.grad(fused, (hidden, weight))
    assert grads[0].dtype == hidden.dtype and grads[1].dtype == weight.dtype
    full = torch.autograd.grad(reference(hidden, weight, target, 0.1), (hidden, weight))
    for got, want in zip(grads, full, strict=True):
        torch.testing.assert_close(got, want, rtol=0.05, atol=0.05)


def test_the_nll_comes_along_and_no_grad_skips_the_gradients():
    torch.manual_seed(3)
    hidden, weight = torch.randn(33, 16, requires_grad=True), torch.randn(21, 16, requires_grad=True)
    target = torch.randint(0, 21, (33,))
    loss, nll = projected_token_losses(hidden, weight, target, 0.1, chunk_rows=8)
    torch.testing.assert_close(nll, F.cross_entropy(hidden @ weight.t(), target, reduction="sum"))
    assert not nll.requires_grad and loss.requires_grad
    with torch.no_grad():
        loss_ng, nll_ng = projected_token_losses(hidden, weight, target, 0.1, chunk_rows=8)
    assert loss_ng.grad_fn is None
    torch.testing.assert_close((loss_ng, nll_ng), (loss.detach(), nll))
