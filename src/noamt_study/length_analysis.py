"""Why are translations too short? Model scores of references against those of the search's output.

For a source x the search returns y_hat; the reference is y. Both are scored by the model with
the length-normalised score the beam search ranks by,

    s(y) = sum_t log p(y_t | y_<t, x) / |y|^alpha,    |y| counting the EOS,

PAD and BOS excluded from the softmax as in the search. Where s(y) > s(y_hat), the model prefers
the reference and the search missed it (a search error); where s(y) <= s(y_hat), the model itself
ranks its output first (a model error, if the output is worse). Counting both, split by whether
the output is shorter than the reference, tells whether short outputs come from the search or
from the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from noamt.data import EncodedSplit, TokenBudgetBatches, Tokenizer
from noamt.model import Transformer


@torch.inference_mode()
def sequence_scores(
    model: Transformer,
    tokenizer: Tokenizer,
    sources: Sequence[str],
    targets: Sequence[str],
    alpha: float = 1.0,
    max_tokens: int = 4096,
) -> list[float]:
    """s(y) = sum log p(y | x) / |y|^alpha for each (source, target) pair, in input order.

    Targets are BPE-encoded afresh (the canonical segmentation) and end in EOS.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    split = EncodedSplit(tokenizer.encode_batch(list(sources)), tokenizer.encode_batch(list(targets)))
    batches = TokenBudgetBatches(split, max_tokens, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, shuffle=False)
    scores = [0.0] * len(sources)
    for batch in batches:
        batch = batch.to(device)
        keep = batch.tgt_out != model.pad_id  # (B, T)
        logits = model(batch.src, batch.tgt_in, keep).float()  # (N, V), N kept positions
        logits[:, [model.pad_id, tokenizer.bos_id]] = -math.inf
        token_lp = F.log_softmax(logits, dim=-1).gather(1, batch.tgt_out[keep][:, None]).squeeze(1)  # (N,)
        rows = keep.nonzero()[:, 0]  # (N,) batch row of each kept position
        sums = torch.zeros(keep.size(0), dtype=torch.float64, device=device).index_add_(0, rows, token_lp.double())
        lengths = keep.sum(dim=1).double()  # (B,) tokens including EOS
        for i, value in zip(batch.indices.tolist(), (sums / lengths**alpha).tolist(), strict=True):
            scores[i] = value
    model.train(was_training)
    return scores


@dataclass
class LengthDiagnosis:
    """Counts over the sentences where hypothesis and reference differ."""

    n_sentences: int
    n_differ: int
    shorter: int  # outputs with fewer BPE tokens than their reference
    shorter_search_errors: int  # ... of which the model scores the reference higher
    longer: int
    longer_search_errors: int
    search_errors: int  # all sentences where s(reference) > s(output)
    mean_length_ratio: float  # mean over sentences of |output| / |reference| (BPE tokens)

    def summary(self) -> str:
        return (
            f"{self.n_differ} of {self.n_sentences} outputs differ from the reference; "
            f"{self.shorter} shorter (search errors: {self.shorter_search_errors}), "
            f"{self.longer} longer (search errors: {self.longer_search_errors}); "
            f"search errors in all: {self.search_errors}; mean BPE length ratio {self.mean_length_ratio:.3f}"
        )


def diagnose_lengths(
    model: Transformer,
    tokenizer: Tokenizer,
    sources: Sequence[str],
    hypotheses: Sequence[str],
    references: Sequence[str],
    alpha: float = 1.0,
    max_tokens: int = 4096,
) -> LengthDiagnosis:
    """Compare s(output) with s(reference) sentence by sentence (see the module docstring)."""
    keep = [i for i, (h, r) in enumerate(zip(hypotheses, references, strict=True)) if r.strip() and h != r]
    src = [sources[i] for i in keep]
    hyp = [hypotheses[i] for i in keep]
    ref = [references[i] for i in keep]
    hyp_scores = sequence_scores(model, tokenizer, src, hyp, alpha, max_tokens)
    ref_scores = sequence_scores(model, tokenizer, src, ref, alpha, max_tokens)
    hyp_len = [len(ids) for ids in tokenizer.encode_batch(hyp)]
    ref_len = [len(ids) for ids in tokenizer.encode_batch(ref)]
    shorter = [h < r for h, r in zip(hyp_len, ref_len, strict=True)]
    longer = [h > r for h, r in zip(hyp_len, ref_len, strict=True)]
    errors = [r > h for h, r in zip(hyp_scores, ref_scores, strict=True)]
    ratios = [h / r for h, r in zip(hyp_len, ref_len, strict=True) if r]
    return LengthDiagnosis(
        n_sentences=len(sources),
        n_differ=len(keep),
        shorter=sum(shorter),
        shorter_search_errors=sum(s and e for s, e in zip(shorter, errors, strict=True)),
        longer=sum(longer),
        longer_search_errors=sum(g and e for g, e in zip(longer, errors, strict=True)),
        search_errors=sum(errors),
        mean_length_ratio=sum(ratios) / len(ratios) if ratios else 1.0,
    )
