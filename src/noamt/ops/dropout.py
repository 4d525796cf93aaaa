"""Inverted dropout with a cheap mask on the CPU.

    y = x * m / (1 - p'),   m_i ~ Bernoulli(1 - p') independently,   so E[y] = x

Prior art: the inverted dropout of Srivastava et al. (2014) as ``torch.nn.functional.dropout``
computes it (and fairseq's ``FairseqDropout``, which calls it): the same formula with p' = p.

Where it differs from PyTorch's, on the CPU only. ``F.dropout`` draws one random number per
element, which made dropout about a tenth of a training step of the small model. Here each
64-bit random word gives four 15-bit uniform integers r (the low 15 bits of each of its 16-bit
quarters), and an element is kept when r >= round(32768 p): the drop probability is quantised
to p' = round(32768 p) / 32768, within 1.6e-5 of p, and the scale is 1 / (1 - p'), not
1 / (1 - p). A quarter of the generator calls, and the mask costs a third of PyTorch's. The
words come from the default generator, so ``torch.manual_seed`` and the checkpointed RNG state
fix the masks, but they are not the masks ``F.dropout`` draws for the same seed. Other devices
(and p' = 1) use PyTorch's fused dropout, p' = p.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 15  # values of a 15-bit random integer


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element of ``x`` with probability p (p' on a CPU) and scale the rest by 1/(1 - p)."""
    if not training or p == 0.0:
        return x
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    threshold = round(p * _LEVELS)
    if x.device.type != "cpu" or threshold == _LEVELS:
        return F.dropout(x, p, training=True)
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # low 63 bits uniform
    keep = (words.view(torch.int16)[:n].view(x.shape) & (_LEVELS - 1)) >= threshold
    return x * keep.to(x.dtype).mul_(_LEVELS / (_LEVELS - threshold))


class Dropout(nn.Module):
    """:func:`dropout` as a module: active in training mode only."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
