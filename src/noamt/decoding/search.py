"""Greedy search over a trained :class:`~noamt.model.Transformer`, and the steps it shares with
beam search (:mod:`noamt.decoding.beam`).

Both searches decode incrementally: the encoder runs once, the decoder is fed one new token per
step, and a :class:`~noamt.decoding.cache.DecoderCache` keeps the keys and values of earlier
positions (``use_cache=False`` recomputes the whole prefix every step instead and gives the same
output). The model may be an :class:`~noamt.decoding.ensemble.Ensemble`, which has the same
interface. Sentences leave the batch as soon as they are finished, so the batch shrinks as
decoding goes.

Output length. A sentence whose source has |x| tokens (without padding, counting the EOS the
batcher appends) may emit at most ``L = min(floor(a * |x| + b), max_positions - 1)`` tokens
before EOS (a = ``max_len_a``, b = ``max_len_b`` of the :class:`DecodingConfig`); at step L
(0-based) EOS is forced. Every hypothesis therefore ends in EOS, which is stripped together with
BOS from the returned ids. The padding and BOS ids are never emitted. ``min_len`` bans EOS
before that many tokens (fairseq's ``--min-len``), so ``min_len = L`` makes every output
exactly L tokens long.
"""

from __future__ import annotations

import contextlib
import math
from typing import TypeVar

import torch

from noamt.decoding.cache import DecoderCache
from noamt.decoding.config import DecodingConfig
from noamt.decoding.ensemble import Ensemble, EnsembleCache
from noamt.model import Transformer

T = TypeVar("T")


@contextlib.contextmanager
def inference(model: torch.nn.Module):
    """eval() mode and no autograd for the block; the previous train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def max_output_lengths(src: torch.Tensor, pad_id: int, max_positions: int, decoding: DecodingConfig) -> torch.Tensor:
    """L_i = min(floor(a * |x_i| + b), max_positions - 1); |x_i| = non-padding tokens of row i.

    src (B, S) -> limits (B,).
    """
    return output_limits((src != pad_id).sum(dim=1), max_positions, decoding)


def output_limits(src_lengths: torch.Tensor, max_positions: int, decoding: DecodingConfig) -> torch.Tensor:
    """L_i = min(floor(a * |x_i| + b), max_positions - 1) for source lengths |x_i| (B,) -> (B,)."""
    limits = torch.floor(decoding.max_len_a * src_lengths.to(torch.float64) + decoding.max_len_b).long()
    return limits.clamp(min=0, max=max_positions - 1)


def next_log_probs(
    model: Transformer | Ensemble,
    tokens: torch.Tensor,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    cache: DecoderCache | EnsembleCache | None,
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
    hidden = _decode(model, tgt_in, memory, memory_mask, cache)[:, -1]  # (N, d)
    if buffer is not None and hidden.dtype == buffer.dtype:
        logits = model.project(hidden, out=buffer[: hidden.size(0)])
    else:  # e.g. bf16 under autocast
        logits = model.project(hidden).float()
    lprobs = torch.log_softmax(logits, dim=-1, out=logits)  # (N, V), in place
    lprobs[:, model.pad_id] = -math.inf  # two integer indices: no index tensor to copy to the device
    lprobs[:, bos_id] = -math.inf
    return lprobs


def _decode(
    model: Transformer | Ensemble,
    tgt_in: torch.Tensor,
    memory: torch.Tensor,
    memory_mask: torch.Tensor,
    cache: DecoderCache | EnsembleCache | None,
) -> torch.Tensor:
    """``model.decode`` with the cache :func:`new_cache` made for it: an EnsembleCache for an
    Ensemble, a DecoderCache for a model; another pairing is a one-line TypeError."""
    if isinstance(model, Ensemble) and not isinstance(cache, DecoderCache):
        return model.decode(tgt_in, memory, memory_mask, cache)
    if not isinstance(model, Ensemble) and not isinstance(cache, EnsembleCache):
        return model.decode(tgt_in, memory, memory_mask, cache)
    raise TypeError(f"a {type(model).__name__} does not decode with a {type(cache).__name__}")


def force_eos(
    lprobs: torch.Tensor, step: int, limits: torch.Tensor, eos_id: int, min_len: int, any_at_limit: bool
) -> torch.Tensor:
    """Rows whose length limit is reached (step >= L) may only emit EOS; before ``min_len``
    tokens, the others may not emit it. lprobs (N, ..., V), changed in place and returned.

    ``any_at_limit`` says whether step >= L for some row, which the caller knows from the limits
    it keeps on the host: most steps skip the rewrite without reading the device, and on the
    others the rows at their limit are found on the device, by a mask.
    """
    eos = lprobs[..., eos_id].clone() if any_at_limit else None  # (N, ...), before the min_len ban
    if step < min_len:
        lprobs[..., eos_id] = -math.inf
    if eos is not None:
        at_limit = (step >= limits).view(-1, *(1,) * (eos.dim() - 1))  # (N, 1, ...)
        lprobs.masked_fill_(at_limit[..., None], -math.inf)
        lprobs[..., eos_id] = torch.where(at_limit, eos, lprobs[..., eos_id])
    return lprobs


def new_cache(model: Transformer | Ensemble, max_length: int, use_cache: bool) -> DecoderCache | EnsembleCache | None:
    """A cache sized for outputs of up to ``max_length`` positions (one per member of an
    ensemble), or None when ``use_cache`` is off."""
    if not use_cache:
        return None
    if isinstance(model, Ensemble):
        return model.new_cache(max_length)
    return DecoderCache(model.cfg.decoder_layers, max_length)


def select(values: list[T], flags: list[bool], wanted: bool = True) -> list[T]:
    """The values whose flag is ``wanted``, in order (the host's copy of a narrowed batch)."""
    return [value for value, flag in zip(values, flags, strict=True) if flag == wanted]


def _keep_rows(
    rows: torch.Tensor, cache: DecoderCache | EnsembleCache | None, *tensors: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Keep sentences ``rows`` (one decoder row each) of the cache, in place, and of each tensor."""
    if cache is not None:
        cache.reorder(rows, sentences=rows)
    return tuple(t.index_select(0, rows) for t in tensors)


def greedy_search(
    model: Transformer | Ensemble,
    src: torch.Tensor,
    decoding: DecodingConfig,
    *,
    bos_id: int,
    eos_id: int,
    use_cache: bool = True,
) -> list[list[int]]:
    """y_t = argmax_v log p(v | y_<t, x) until EOS; src (B, S) -> B lists of ids without BOS/EOS.

    Of ``decoding``, the length bounds count (``max_len_a``, ``max_len_b``, ``min_len``);
    ``beam_size`` and ``length_penalty`` do not.
    """
    outputs: list[list[int]] = [[] for _ in range(src.size(0))]
    with inference(model):
        memory, memory_mask = model.encode(src)  # (B, S, d), (B, 1, 1, S)
        limits = max_output_lengths(src, model.pad_id, model.max_positions, decoding)
        host_limits = limits.tolist()  # the host steers the loop by them
        sentences = list(range(src.size(0)))  # input row of each live row
        tokens = src.new_full((src.size(0), 1), bos_id)  # (N, 1)
        cache = new_cache(model, max(host_limits) + 1, use_cache)
        buffer = memory.new_empty(src.size(0), model.tgt_vocab_size, dtype=torch.float32)
        for step in range(max(host_limits) + 1):
            lprobs = next_log_probs(model, tokens, memory, memory_mask, cache, bos_id, buffer)  # (N, V)
            lprobs = force_eos(lprobs, step, limits, eos_id, decoding.min_len, step >= min(host_limits))
            next_tokens = lprobs.argmax(dim=-1)  # (N,)
            tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)  # (N, t+2)
            finished = next_tokens == eos_id
            done = finished.tolist()  # the step's host sync
            if not any(done):
                continue
            for sentence, ids in zip(select(sentences, done), tokens[finished, 1:-1].tolist(), strict=True):
                outputs[sentence] = ids
            if all(done):
                break
            live = (~finished).nonzero_static(size=done.count(False)).flatten()
            tokens, memory, memory_mask, limits = _keep_rows(live, cache, tokens, memory, memory_mask, limits)
            sentences, host_limits = select(sentences, done, False), select(host_limits, done, False)
    return outputs
