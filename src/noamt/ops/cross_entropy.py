"""The output projection and the label-smoothed cross-entropy, fused: one softmax, analytic gradients.

For hidden states h (N, d), the output matrix W (V, d), logits x = h W^T, targets t and
smoothing eps, with lse_i = log sum_v exp(x_iv):

    loss = sum_i [ (1 - eps) (lse_i - x_{i,t_i}) + (eps / V) sum_v (lse_i - x_iv) ]
         = sum_i [ lse_i - (1 - eps) x_{i,t_i} - (eps / V) sum_v x_iv ]
    G_iv = d loss / d x_iv = softmax(x_i)_v - q_iv,   q_iv = (1 - eps) [v = t_i] + eps / V
    d loss / d h = G W,   d loss / d W = G^T h

The negative log-likelihood, sum_i (lse_i - x_{i,t_i}), comes along for free.

Prior art. The value and both gradients are those of PyTorch's
``F.cross_entropy(h @ W.T, t, label_smoothing=eps, reduction="sum")``, which spreads eps over
all V classes as here (the target gets 1 - eps + eps / V). fairseq's
``label_smoothed_nll_loss`` spreads it over the V - 1 other classes instead (the target gets
exactly 1 - eps, every other class eps / (V - 1)), so its loss differs from this one for the
same eps. Fusing the projection into the loss and computing the gradient during the forward
pass, chunk by chunk, is the fused linear cross-entropy of Liger-Kernel (Hsu et al. 2024).

Where it differs from PyTorch's. The forward pass works through the rows in chunks: each
chunk's logits are written into one reused buffer, turned into G in place and multiplied out at
once, so no N x V tensor is kept for the backward pass (which only scales the two stored
gradients) and none is allocated per step; PyTorch keeps the logits and builds its smoothing
and NLL gradients in separate N x V buffers, on a CPU about a fifth of a training step of the
small model. The gradient is therefore fixed at forward time: the result can be differentiated
once (no double backward), and the NLL is returned without a gradient. Under autocast the
products run in the autocast dtype and the softmax in float32. Unlike Liger-Kernel it is plain
PyTorch (no Triton kernel) and runs on any device.
"""

from __future__ import annotations

import torch

CHUNK_ROWS = 1024  # rows of logits alive at once: 1024 x 8,000 floats = 32 MB


def _losses_and_gradient_(
    logits: torch.Tensor, target: torch.Tensor, epsilon: float, gradient: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed smoothed loss and NLL of ``logits`` (n, V) float32, which are overwritten:
    with G (see the module) when ``gradient``, else with unnormalised probabilities."""
    vocab = logits.size(1)
    target = target[:, None]  # (n, 1)
    top = logits.amax(dim=1, keepdim=True)  # (n, 1)
    target_logits = logits.gather(1, target).sum()
    smoothing = epsilon / vocab * logits.sum() if epsilon else 0.0
    probs = logits.sub_(top).exp_()  # (n, V), unnormalised
    total = probs.sum(dim=1, keepdim=True)  # (n, 1)
    lse = (top + total.log()).sum()  # sum_i lse_i
    nll = lse - target_logits
    loss = lse - (1.0 - epsilon) * target_logits - smoothing
    if gradient:
        grad = probs.div_(total)  # softmax
        grad.scatter_add_(1, target, torch.full_like(total, -(1.0 - epsilon)))
        if epsilon:
            grad.sub_(epsilon / vocab)
    return loss, nll


class _ProjectedLabelSmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, target, epsilon, chunk_rows, dtype, gradient):
        n, vocab = hidden.size(0), weight.size(0)
        w = weight.to(dtype)
        if gradient:
            grad_hidden = torch.empty_like(hidden, memory_format=torch.contiguous_format)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        buffer = hidden.new_empty((min(n, chunk_rows), vocab), dtype=torch.float32)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        nll = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, chunk_rows):
                h = hidden[start : start + chunk_rows].to(dtype)  # (n_c, d)
                logits = buffer[: h.size(0)]
                if dtype == torch.float32:
                    torch.mm(h, w.t(), out=logits)
                else:  # reduced-precision products, float32 softmax
                    logits.copy_(torch.mm(h, w.t()))
                chunk_loss, chunk_nll = _losses_and_gradient_(
                    logits, target[start : start + chunk_rows], epsilon, gradient
                )
                loss += chunk_loss
                nll += chunk_nll
                if not gradient:
                    continue
                g = logits.to(dtype)  # G of the chunk
                if dtype == torch.float32:
                    torch.mm(g, w, out=grad_hidden[start : start + chunk_rows])
                    grad_weight.addmm_(g.t(), h)
                else:
                    grad_hidden[start : start + chunk_rows] = torch.mm(g, w)
                    grad_weight += torch.mm(g.t(), h).float()
        if gradient:
            ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, grad_nll: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_loss, (grad_weight * grad_loss).to(ctx.weight_dtype), None, None, None, None, None


@torch.compiler.disable
def projected_token_losses(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, epsilon: float, chunk_rows: int = CHUNK_ROWS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over the N rows of the label-smoothed cross-entropy (differentiable) and of the
    negative log-likelihood (not) of the logits ``hidden @ weight.T``.

    hidden (N, d), weight (V, d), target (N,). Under autocast the products run in its dtype
    (as ``F.linear`` would) and the softmax in float32. Without gradients (``torch.no_grad``,
    or inputs that need none) the gradient products are skipped. ``torch.compile`` leaves it
    eager: its chunk loop runs ceil(N / chunk_rows) times, and N (the batch's target tokens)
    changes from batch to batch, which would compile it again for nearly every batch.
    """
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    gradient = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _ProjectedLabelSmoothedCrossEntropy.apply(hidden, weight, target, epsilon, chunk_rows, dtype, gradient)


def projected_label_smoothed_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, epsilon: float, chunk_rows: int = CHUNK_ROWS
) -> torch.Tensor:
    """The first of :func:`projected_token_losses`: the summed label-smoothed cross-entropy."""
    return projected_token_losses(hidden, weight, target, epsilon, chunk_rows)[0]
