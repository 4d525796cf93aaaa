"""Beam search over a trained :class:`~noamt.model.Transformer`, as in fairseq.

Output lengths, the cache and the shrinking batch work as in :mod:`noamt.decoding.search`.
"""

from __future__ import annotations

import math

import torch

from noamt.decoding.config import DecodingConfig
from noamt.decoding.ensemble import Ensemble
from noamt.decoding.search import force_eos, inference, max_output_lengths, new_cache, next_log_probs, select
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


class Finished:
    """The finished hypotheses of a batch of B sentences, kept on the device: at most k per
    sentence, the first ones found, each with its normalised score and its tokens.

    ``scores`` (B, k+1) float64 (-inf in empty slots), ``tokens`` (B, k+1, L) and ``lengths``
    (B, k+1) hold slot j of sentence b; the extra slot k takes the writes that are discarded
    (hypotheses beyond the first k), so that :meth:`add` needs no host sync. ``count`` (B,) is
    the number of finished hypotheses of each sentence, at most k.
    """

    def __init__(self, batch_size: int, k: int, max_length: int, device: torch.device):
        self.k = k
        self.scores = torch.full((batch_size, k + 1), -math.inf, dtype=torch.float64, device=device)
        self.tokens = torch.zeros(batch_size, k + 1, max_length, dtype=torch.long, device=device)
        self.lengths = torch.zeros(batch_size, k + 1, dtype=torch.long, device=device)
        self.count = torch.zeros(batch_size, dtype=torch.long, device=device)

    def add(
        self,
        sentence: torch.Tensor,
        tokens: torch.Tensor,
        candidates: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        step: int,
        length_penalty: float,
        eos_id: int,
    ) -> None:
        """Store every finite EOS candidate among the best k as a finished hypothesis.

        Its score is sum log p / (step + 1)^alpha, step + 1 being its length including the EOS,
        computed in float64 (as Python's float would). Candidate j of live sentence n takes slot
        count[n] + (number of EOS candidates before j) while that is below k, so the first k
        found are kept, in the order found. ``tokens`` holds the live beams (N * beams, step + 1),
        tokens.size(0) / sentence.size(0) per sentence; ``sentence`` (N,) their input rows.
        """
        cand_scores, cand_beams, cand_tokens = (c[:, : self.k] for c in candidates)  # (N, K)
        n, beams = sentence.size(0), tokens.size(0) // sentence.size(0)
        is_final = (cand_tokens == eos_id) & torch.isfinite(cand_scores)
        count = self.count[sentence]  # (N,)
        slot = count[:, None] + is_final.cumsum(dim=1) - 1  # (N, K)
        slot = torch.where(is_final & (slot < self.k), slot, self.k)
        where = (sentence[:, None].expand_as(slot), slot)
        rows = torch.arange(n, device=sentence.device)[:, None] * beams + cand_beams  # (N, K)
        self.scores.index_put_(where, cand_scores.double() / (step + 1) ** length_penalty)
        self.tokens[:, :, :step].index_put_(where, tokens[rows, 1:])  # (N, K, step)
        self.lengths.index_put_(where, torch.full_like(slot, step))
        self.count[sentence] = (count + is_final.sum(dim=1)).clamp(max=self.k)

    def best(self) -> list[list[int]]:
        """Per sentence, the tokens of its highest-scoring hypothesis (the first found among
        equals); one host sync."""
        best = self.scores[:, : self.k].argmax(dim=1, keepdim=True)  # (B, 1), the first maximum
        length = self.lengths.gather(1, best)  # (B, 1)
        tokens = self.tokens.gather(1, best[:, :, None].expand(-1, -1, self.tokens.size(2)))[:, 0]  # (B, L)
        return [row[1 : 1 + row[0]] for row in torch.cat([length, tokens], dim=1).tolist()]


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

    The host reads the device once per step, to learn which sentences stay (the next step's
    batch), besides once for the limits and once for the outputs: the finished hypotheses stay
    on the device (:class:`Finished`).
    """
    k, batch_size = decoding.beam_size, src.size(0)
    with inference(model):
        memory, memory_mask = model.encode(src)  # (B, S, d), (B, 1, 1, S)
        limits = max_output_lengths(src, model.pad_id, model.max_positions, decoding)
        host_limits = limits.tolist()  # the host steers the loop by them
        finished = Finished(batch_size, k, max(host_limits), src.device)
        sentence = torch.arange(batch_size, device=src.device)  # input row of each live sentence
        tokens = src.new_full((batch_size, 1), bos_id)  # (N*beams, t+1), one beam per sentence at first
        scores = torch.zeros(batch_size, 1, device=src.device)  # (N, beams)
        cache = new_cache(model, max(host_limits) + 1, use_cache)
        buffer = memory.new_empty(batch_size * k, model.tgt_vocab_size, dtype=torch.float32)
        for step in range(max(host_limits) + 1):
            beams = scores.size(1)
            lprobs = next_log_probs(model, tokens, memory, memory_mask, cache, bos_id, buffer)
            lprobs = force_eos(
                lprobs.view(sentence.size(0), beams, -1),
                step,
                limits,
                eos_id,
                decoding.min_len,
                step >= min(host_limits),
            )  # (N, beams, V)
            candidates = _top_candidates(scores, lprobs, 2 * k)  # each (N, 2K)
            finished.add(sentence, tokens, candidates, step, decoding.length_penalty, eos_id)
            is_live = (finished.count[sentence] < k) & (step < limits)  # (N,)
            keep = is_live.tolist()  # the step's host sync
            if not any(keep):
                break
            live = is_live.nonzero_static(size=keep.count(True)).flatten()  # (N',), no sync
            scores, rows, next_tokens = _next_beams(candidates, live, k, beams, eos_id)
            tokens = torch.cat([tokens.index_select(0, rows), next_tokens], dim=1)  # (N'*K, t+2)
            narrowed = live if not all(keep) else None  # some sentences are done
            if narrowed is not None:
                memory, memory_mask, sentence, limits = (
                    t.index_select(0, live) for t in (memory, memory_mask, sentence, limits)
                )
                host_limits = select(host_limits, keep)
            if cache is not None:
                cache.reorder(rows, sentences=narrowed)
    return finished.best()
