"""Several trained models that share a tokenizer, searched as one model (fairseq's ``--path a:b:c``).

At every step the members' next-token distributions are averaged in probability space:

    log p(v | y_<t, x) = log( (1/N) sum_i p_i(v | y_<t, x) )
                       = logsumexp_i log p_i(v | y_<t, x) - log N,

log p_i being the log-softmax of member i's logits, as in fairseq's EnsembleModel. The result is
normalised already, so the search's own log-softmax leaves it unchanged (up to rounding).

:class:`Ensemble` has the encode / decode / project interface of a
:class:`~noamt.model.Transformer`, so greedy and beam search run it unchanged: its memory is
the members' memories side by side along the feature axis, its hidden states likewise, and its
cache (:class:`EnsembleCache`) holds one :class:`~noamt.decoding.cache.DecoderCache` per member.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from noamt.decoding.cache import DecoderCache
from noamt.model import Transformer


class EnsembleCache:
    """One incremental-decoding cache per member, reordered together."""

    def __init__(self, members: Sequence[DecoderCache]):
        self.members = list(members)

    def reorder(self, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> None:
        """:meth:`DecoderCache.reorder` of every member's cache."""
        for cache in self.members:
            cache.reorder(rows, sentences=sentences)


class Ensemble(nn.Module):
    """Models over one vocabulary whose averaged probabilities the search decodes (see the module)."""

    def __init__(self, models: Sequence[Transformer]):
        super().__init__()
        if len({(m.tgt_vocab_size, m.pad_id) for m in models}) != 1:
            raise ValueError("an ensemble needs models over one vocabulary with one padding id")
        self.members = nn.ModuleList(models)  # registers their parameters and buffers
        self.models: list[Transformer] = list(models)
        self.pad_id = models[0].pad_id
        self._widths = [m.cfg.d_model for m in models]
        self.eval()  # an ensemble only decodes

    @property
    def max_positions(self) -> int:
        """The longest sequence every member accepts."""
        return min(m.max_positions for m in self.models)

    @property
    def tgt_vocab_size(self) -> int:
        return self.models[0].tgt_vocab_size

    def new_cache(self, max_length: int) -> EnsembleCache:
        """A cache per member, each sized for outputs of up to ``max_length`` positions."""
        return EnsembleCache([DecoderCache(m.cfg.decoder_layers, max_length) for m in self.models])

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) -> the members' memories concatenated, (B, S, sum d_i), and the key mask
        (B, 1, 1, S), the same for every member."""
        encoded = [m.encode(src) for m in self.models]
        return torch.cat([memory for memory, _ in encoded], dim=-1), encoded[0][1]

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cache: EnsembleCache | None = None,
    ) -> torch.Tensor:
        """Each member decodes from its part of ``memory`` with its own cache: hidden states
        (N, T, sum d_i), the members' side by side."""
        caches = cache.members if cache is not None else [None] * len(self.models)
        memories = memory.split(self._widths, dim=-1)
        members = zip(self.models, memories, caches, strict=True)
        return torch.cat([m.decode(tgt_in, part, memory_mask, c) for m, part, c in members], dim=-1)

    def project(self, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (N, sum d_i) -> logsumexp_i log p_i - log N, (N, V) float32; written
        into ``out`` when given."""
        parts = hidden.split(self._widths, dim=-1)
        lprobs = torch.stack(
            [torch.log_softmax(m.project(h).float(), dim=-1) for m, h in zip(self.models, parts, strict=True)]
        )  # (M, N, V)
        mean = torch.logsumexp(lprobs, dim=0) if out is None else torch.logsumexp(lprobs, dim=0, out=out)
        return mean.sub_(math.log(len(self.models)))
