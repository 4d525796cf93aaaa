"""Beam search over a trained :class:`~noamt.model.Transformer`, as in fairseq.

Output lengths, the cache and the shrinking batch work as in :mod:`noamt.decoding.search`.
"""

from __future__ import annotations

import torch

from noamt.decoding.config import DecodingConfig
from noamt.decoding.ensemble import Ensemble
from noamt.decoding.search import force_eos, inference, max_output_lengths, new_cache, next_log_probs
from noamt.model import Transformer


def _top_candidates(
    scores: torch.Tensor, lprobs: torch.Tensor, n_cand: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The n_cand best one-token extensions per sentence, best first.

    scores (N, K) are the beams' sums of log-probs, lprobs (N, K, V) the next-token log-probs;
    candidate (k, v) scores scores[k] + lprobs[k, v]. Returns the candidates' scores, beams and
    tokens, each (N, n_cand). A stable sort over the per-beam top lists keeps ties in per-beam
    order, so that beam size 1 picks what greedy search picks.
    """
    n, k, vocab = lprobs.shape
    top_lp, top_tok = lprobs.topk(min(n_cand, vocab), dim=2)  # (N, K, c), best first per beam
    total = (scores[:, :, None] + top_lp).view(n, -1)  # (N, K*c)
    order = total.sort(dim=1, descending=True, stable=True).indices[:, :n_cand]  # (N, n_cand)
    return total.gather(1, order), order // top_lp.size(2), top_tok.view(n, -1).gather(1, order)


Finished = list[list[tuple[float, list[int]]]]  # per input sentence: (normalised score, ids)


def _finalize(
    finished: Finished,
    sentence: torch.Tensor,
    tokens: torch.Tensor,
    candidates: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    step: int,
    k: int,
    length_penalty: float,
    eos_id: int,
) -> None:
    """Store every finite EOS candidate among the best k as a finished hypothesis.

    Its score is sum log p / (step + 1)^alpha, step + 1 being its length including the EOS.
    A sentence keeps at most k finished hypotheses, the first ones found. ``tokens`` holds the
    live beams, tokens.size(0) / sentence.size(0) per sentence.
    """
    cand_scores, cand_beams, cand_tokens = (c[:, :k] for c in candidates)  # (N, K)
    is_final = (cand_tokens == eos_id) & torch.isfinite(cand_scores)
    if not bool(is_final.any()):
        return
    beams = tokens.size(0) // sentence.size(0)
    for n, j in is_final.nonzero().tolist():
        hypotheses = finished[int(sentence[n])]
        if len(hypotheses) < k:
            row = n * beams + int(cand_beams[n, j])
            score = float(cand_scores[n, j]) / (step + 1) ** length_penalty
            hypotheses.append((score, tokens[row, 1:].tolist()))


def _next_beams(
    candidates: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    live: torch.Tensor,
    k: int,
    beams: int,
    eos_id: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k best non-EOS candidates of each sentence in ``live`` (N',), whose ``beams`` live
    beams occupy consecutive rows of the current batch.

    Returns their scores (N', K), the rows of the current batch they extend (N'*K,) and their
    new tokens (N'*K, 1).
    """
    cand_scores, cand_beams, cand_tokens = (c.index_select(0, live) for c in candidates)  # (N', 2K)
    not_eos_first = (cand_tokens == eos_id).to(torch.uint8).sort(dim=1, stable=True).indices
    pick = not_eos_first[:, :k]  # (N', K), positions in score order
    rows = (live[:, None] * beams + cand_beams.gather(1, pick)).view(-1)  # (N'*K,)
    return cand_scores.gather(1, pick), rows, cand_tokens.gather(1, pick).view(-1, 1)


def beam_search(
    model: Transformer | Ensemble,
    src: torch.Tensor,
    decoding: DecodingConfig,
    *,
    bos_id: int,
    eos_id: int,
    use_cache: bool = True,
) -> list[list[int]]:
    """Beam search as in fairseq; src (B, S) -> B lists of ids without BOS/EOS.

    Each step extends the K = ``decoding.beam_size`` live beams of a sentence by every token and
    ranks the 2K best candidates by sum log p. EOS candidates among the best K become finished
    hypotheses, scored sum log p / |y|^alpha with |y| counting the EOS (alpha =
    ``decoding.length_penalty``; 0 compares raw sums, 1 per-token averages); the K best others
    stay live. A sentence stops once it has K finished hypotheses (or at its length limit, where
    EOS is forced) and returns the best one.

    The first step runs one beam per sentence (all K would be the same BOS). The encoder memory
    stays one row per sentence, shared by its beams (see :class:`~noamt.model.CrossAttention`),
    and is only narrowed when sentences finish.
    """
    k, batch_size = decoding.beam_size, src.size(0)
    finished: Finished = [[] for _ in range(batch_size)]
    with inference(model):
        memory, memory_mask = model.encode(src)  # (B, S, d), (B, 1, 1, S)
        limits = max_output_lengths(src, model.pad_id, model.max_positions, decoding)
        sentence = torch.arange(batch_size, device=src.device)  # input row of each live sentence
        tokens = src.new_full((batch_size, 1), bos_id)  # (N*beams, t+1), one beam per sentence at first
        scores = torch.zeros(batch_size, 1, device=src.device)  # (N, beams)
        cache = new_cache(model, limits, use_cache)
        buffer = memory.new_empty(batch_size * k, model.tgt_vocab_size, dtype=torch.float32)
        for step in range(int(limits.max()) + 1):
            beams = scores.size(1)
            lprobs = next_log_probs(model, tokens, memory, memory_mask, cache, bos_id, buffer)
            lprobs = force_eos(
                lprobs.view(sentence.size(0), beams, -1), step, limits, eos_id, decoding.min_len
            )  # (N, beams, V)
            candidates = _top_candidates(scores, lprobs, 2 * k)  # each (N, 2K)
            _finalize(finished, sentence, tokens, candidates, step, k, decoding.length_penalty, eos_id)
            n_finished = torch.tensor([len(finished[s]) for s in sentence.tolist()], device=src.device)
            live = ((n_finished < k) & (step < limits)).nonzero().flatten()  # (N',)
            if live.numel() == 0:
                break
            scores, rows, next_tokens = _next_beams(candidates, live, k, beams, eos_id)
            tokens = torch.cat([tokens.index_select(0, rows), next_tokens], dim=1)  # (N'*K, t+2)
            narrowed = live if live.numel() < sentence.numel() else None  # some sentences are done
            if narrowed is not None:
                memory, memory_mask, sentence, limits = (
                    t.index_select(0, live) for t in (memory, memory_mask, sentence, limits)
                )
            if cache is not None:
                cache.reorder(rows, sentences=narrowed)
    return [max(hypotheses, key=lambda h: h[0])[1] for hypotheses in finished]
