"""Greedy and beam search over a trained :class:`~noamt.model.Transformer`, and text translation.

Both searches decode incrementally: the encoder runs once, the decoder is fed one new token per
step, and a :class:`~noamt.model.DecoderCache` keeps the keys and values of earlier positions
(``use_cache=False`` recomputes the whole prefix every step instead and gives the same output).
Sentences leave the batch as soon as they are finished, so the batch shrinks as decoding goes.

Output length. A sentence whose source has |x| tokens (without padding, counting the EOS the
batcher appends) may emit at most ``L = min(floor(a * |x| + b), max_positions - 1)`` tokens
before EOS; at step L (0-based) EOS is forced. Every hypothesis therefore ends in EOS, which is
stripped together with BOS from the returned ids. The padding and BOS ids are never emitted.
``min_len`` bans EOS before that many tokens (fairseq's ``--min-len``), so ``min_len = L``
makes every output exactly L tokens long.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from noamt.data import Batch, EncodedSplit, TokenBudgetBatches, Tokenizer
from noamt.model import DecoderCache, Transformer

log = logging.getLogger(__name__)


@dataclass
class DecodingConfig:
    """Search settings (see :func:`beam_search`); ``beam_size=1`` runs greedy search.

    ``length_penalty`` is alpha in sum log p / |y|^alpha; ``max_len_a`` and ``max_len_b`` bound
    the output length as in the module docstring.
    """

    beam_size: int = 5
    length_penalty: float = 1.0
    max_len_a: float = 1.2
    max_len_b: int = 10
    min_len: int = 0  # EOS is banned before this many tokens (fairseq's --min-len)


DEFAULT_DECODING = DecodingConfig()  # the one source of the search functions' defaults


def check_decoding(cfg: DecodingConfig) -> None:
    """Settings that cannot produce a translation are a ValueError naming the key."""
    if cfg.beam_size < 1:
        raise ValueError(f"beam_size={cfg.beam_size}: must be at least 1")
    if cfg.max_len_a < 0 or cfg.max_len_b < 0:
        raise ValueError(f"max_len_a={cfg.max_len_a}, max_len_b={cfg.max_len_b}: neither may be negative")
    if cfg.min_len < 0:
        raise ValueError(f"min_len={cfg.min_len}: must not be negative")
    if cfg.max_len_a == 0 and cfg.max_len_b == 0:
        raise ValueError("max_len_a=0 and max_len_b=0 allow no output token: raise one of them")


@contextlib.contextmanager
def _inference(model: torch.nn.Module):
    """eval() mode and no autograd for the block; the previous train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def max_output_lengths(
    src: torch.Tensor, pad_id: int, max_positions: int, max_len_a: float, max_len_b: float
) -> torch.Tensor:
    """L_i = min(floor(a * |x_i| + b), max_positions - 1); |x_i| = non-padding tokens of row i.

    src (B, S) -> limits (B,).
    """
    src_len = (src != pad_id).sum(dim=1).to(torch.float64)  # (B,)
    limits = torch.floor(max_len_a * src_len + max_len_b).long()
    return limits.clamp(min=0, max=max_positions - 1)


def _next_log_probs(
    model: Transformer,
    tokens: torch.Tensor,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    cache: DecoderCache | None,
    bos_id: int,
    buffer: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(y_t | y_<t, x) for the last position of each row of ``tokens`` (N, t+1): (N, V).

    With a cache only the newest token is fed; PAD and BOS get log-probability -inf. With a
    float32 ``buffer`` of at least N rows, the logits and log-probabilities are written into it
    (an unchanged view of it is returned): no step allocates the (N, V) tensors afresh, which
    on a CPU costs page faults on par with the product that fills them.
    """
    tgt_in = tokens[:, -1:] if cache is not None else tokens  # (N, 1) or (N, t+1)
    hidden = model.decode(tgt_in, memory, memory_mask, cache)[:, -1]  # (N, d)
    if buffer is not None and hidden.dtype == buffer.dtype:
        logits = model.project(hidden, out=buffer[: hidden.size(0)])
    else:  # e.g. bf16 under autocast
        logits = model.project(hidden).float()
    lprobs = torch.log_softmax(logits, dim=-1, out=logits)  # (N, V), in place
    lprobs[:, [model.pad_id, bos_id]] = -math.inf
    return lprobs


def _force_eos(lprobs: torch.Tensor, step: int, limits: torch.Tensor, eos_id: int, min_len: int = 0) -> torch.Tensor:
    """Rows whose length limit is reached (step >= L) may only emit EOS; before ``min_len``
    tokens, the others may not emit it. lprobs (N, ..., V), changed in place and returned.

    Only the rows at their limit are rewritten (one host sync to find them), not the whole
    (N, ..., V) tensor: at most steps no row is.
    """
    at_limit = (step >= limits).nonzero().flatten()  # (n,)
    eos = lprobs[at_limit, ..., eos_id] if at_limit.numel() else None  # a copy, (n, ...)
    if step < min_len:
        lprobs[..., eos_id] = -math.inf
    if eos is not None:
        lprobs[at_limit] = -math.inf
        lprobs[at_limit, ..., eos_id] = eos
    return lprobs


def _keep_rows(rows: torch.Tensor, cache: DecoderCache | None, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Keep sentences ``rows`` (one decoder row each) of the cache, in place, and of each tensor."""
    if cache is not None:
        cache.reorder(rows, sentences=rows)
    return tuple(t.index_select(0, rows) for t in tensors)


def greedy_search(
    model: Transformer,
    src: torch.Tensor,
    *,
    bos_id: int,
    eos_id: int,
    max_len_a: float = DEFAULT_DECODING.max_len_a,
    max_len_b: float = DEFAULT_DECODING.max_len_b,
    min_len: int = DEFAULT_DECODING.min_len,
    use_cache: bool = True,
) -> list[list[int]]:
    """y_t = argmax_v log p(v | y_<t, x) until EOS; src (B, S) -> B lists of ids without BOS/EOS."""
    outputs: list[list[int]] = [[] for _ in range(src.size(0))]
    with _inference(model):
        memory, memory_mask = model.encode(src)  # (B, S, d), (B, 1, 1, S)
        limits = max_output_lengths(src, model.pad_id, model.cfg.max_positions, max_len_a, max_len_b)
        sentence = torch.arange(src.size(0), device=src.device)  # input row of each live row
        tokens = src.new_full((src.size(0), 1), bos_id)  # (N, 1)
        cache = model.new_cache(int(limits.max()) + 1) if use_cache else None
        buffer = memory.new_empty(src.size(0), model.tgt_vocab_size, dtype=torch.float32)
        for step in range(int(limits.max()) + 1):
            lprobs = _next_log_probs(model, tokens, memory, memory_mask, cache, bos_id, buffer)  # (N, V)
            next_tokens = _force_eos(lprobs, step, limits, eos_id, min_len).argmax(dim=-1)  # (N,)
            tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)  # (N, t+2)
            finished = next_tokens == eos_id
            for row in finished.nonzero().flatten().tolist():
                outputs[int(sentence[row])] = tokens[row, 1:-1].tolist()
            if finished.all():
                break
            if finished.any():
                live = (~finished).nonzero().flatten()
                tokens, memory, memory_mask, sentence, limits = _keep_rows(
                    live, cache, tokens, memory, memory_mask, sentence, limits
                )
    return outputs


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
    model: Transformer,
    src: torch.Tensor,
    *,
    bos_id: int,
    eos_id: int,
    beam_size: int = DEFAULT_DECODING.beam_size,
    length_penalty: float = DEFAULT_DECODING.length_penalty,
    max_len_a: float = DEFAULT_DECODING.max_len_a,
    max_len_b: float = DEFAULT_DECODING.max_len_b,
    min_len: int = DEFAULT_DECODING.min_len,
    use_cache: bool = True,
) -> list[list[int]]:
    """Beam search as in fairseq; src (B, S) -> B lists of ids without BOS/EOS.

    Each step extends the K live beams of a sentence by every token and ranks the 2K best
    candidates by sum log p. EOS candidates among the best K become finished hypotheses, scored
    sum log p / |y|^alpha with |y| counting the EOS (alpha = ``length_penalty``; 0 compares raw
    sums, 1 per-token averages); the K best others stay live. A sentence stops once it has K
    finished hypotheses (or at its length limit, where EOS is forced) and returns the best one.

    The first step runs one beam per sentence (all K would be the same BOS). The encoder memory
    stays one row per sentence, shared by its beams (see :class:`~noamt.model.CrossAttention`),
    and is only narrowed when sentences finish.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    k, batch_size = beam_size, src.size(0)
    finished: Finished = [[] for _ in range(batch_size)]
    with _inference(model):
        memory, memory_mask = model.encode(src)  # (B, S, d), (B, 1, 1, S)
        limits = max_output_lengths(src, model.pad_id, model.cfg.max_positions, max_len_a, max_len_b)
        sentence = torch.arange(batch_size, device=src.device)  # input row of each live sentence
        tokens = src.new_full((batch_size, 1), bos_id)  # (N*beams, t+1), one beam per sentence at first
        scores = torch.zeros(batch_size, 1, device=src.device)  # (N, beams)
        cache = model.new_cache(int(limits.max()) + 1) if use_cache else None
        buffer = memory.new_empty(batch_size * k, model.tgt_vocab_size, dtype=torch.float32)
        for step in range(int(limits.max()) + 1):
            beams = scores.size(1)
            lprobs = _next_log_probs(model, tokens, memory, memory_mask, cache, bos_id, buffer)
            lprobs = _force_eos(
                lprobs.view(sentence.size(0), beams, -1), step, limits, eos_id, min_len
            )  # (N, beams, V)
            candidates = _top_candidates(scores, lprobs, 2 * k)  # each (N, 2K)
            _finalize(finished, sentence, tokens, candidates, step, k, length_penalty, eos_id)
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


def translate_batches(
    model: Transformer,
    batches: Iterable[Batch],
    tokenizer: Tokenizer,
    *,
    beam_size: int = DEFAULT_DECODING.beam_size,
    length_penalty: float = DEFAULT_DECODING.length_penalty,
    max_len_a: float = DEFAULT_DECODING.max_len_a,
    max_len_b: float = DEFAULT_DECODING.max_len_b,
    min_len: int = DEFAULT_DECODING.min_len,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Translate every batch (greedy search for beam_size 1) and detokenize.

    Returns the strings ordered by ``Batch.indices`` (the input order for a whole split);
    ``on_batch(n)`` is called after each batch with its number of sentences.
    """
    device = next(model.parameters()).device
    common = {
        "bos_id": tokenizer.bos_id,
        "eos_id": tokenizer.eos_id,
        "max_len_a": max_len_a,
        "max_len_b": max_len_b,
        "min_len": min_len,
    }
    if beam_size == 1:
        search = functools.partial(greedy_search, **common)
    else:
        search = functools.partial(beam_search, beam_size=beam_size, length_penalty=length_penalty, **common)
    ids_by_index: dict[int, list[int]] = {}
    for batch in batches:
        ids = search(model, batch.src.to(device))
        ids_by_index.update(zip(batch.indices.tolist(), ids, strict=True))
        if on_batch is not None:
            on_batch(len(ids))
    return tokenizer.decode_batch([ids_by_index[i] for i in sorted(ids_by_index)])


def translate_texts(
    model: Transformer,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    decoding: DecodingConfig,
    *,
    max_tokens: int = 4096,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """One translation per text, in input order.

    Blank texts translate to "" without running the model. A text longer than the model's
    ``max_positions - 1`` tokens (room for the EOS) is truncated; one warning gives the count.
    Batches hold at most ``max_tokens`` source tokens, padding included.
    """
    check_decoding(decoding)
    outputs = [""] * len(texts)
    keep = [i for i, text in enumerate(texts) if text.strip()]
    if on_batch is not None and len(keep) < len(texts):
        on_batch(len(texts) - len(keep))
    if not keep:
        return outputs
    limit = model.cfg.max_positions - 1
    src_ids = tokenizer.encode_batch([texts[i] for i in keep])
    n_long = sum(len(ids) > limit for ids in src_ids)
    if n_long:
        log.warning("%d of %d inputs exceed %d tokens and were truncated", n_long, len(src_ids), limit)
    split = EncodedSplit([ids[:limit] for ids in src_ids], [[] for _ in src_ids])
    batches = TokenBudgetBatches(split, max_tokens, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, shuffle=False)
    translations = translate_batches(
        model,
        batches,
        tokenizer,
        beam_size=decoding.beam_size,
        length_penalty=decoding.length_penalty,
        max_len_a=decoding.max_len_a,
        max_len_b=decoding.max_len_b,
        min_len=decoding.min_len,
        on_batch=on_batch,
    )
    for i, translation in zip(keep, translations, strict=True):
        outputs[i] = translation
    return outputs
