"""Text in, text out: sentences batched by source tokens, searched, detokenized, in input order."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import torch

from noamt.data import Batch, EncodedSplit, TokenBudgetBatches, Tokenizer
from noamt.decoding.beam import beam_search
from noamt.decoding.config import DecodingConfig
from noamt.decoding.ensemble import Ensemble
from noamt.decoding.search import greedy_search
from noamt.model import Transformer

log = logging.getLogger(__name__)


def search_batch(
    model: Transformer | Ensemble, src: torch.Tensor, decoding: DecodingConfig, *, bos_id: int, eos_id: int
) -> list[list[int]]:
    """Greedy search for ``decoding.beam_size`` 1, beam search otherwise: src (B, S) -> B id lists."""
    find = greedy_search if decoding.beam_size == 1 else beam_search
    return find(model, src, decoding, bos_id=bos_id, eos_id=eos_id)


def translate_batches(
    model: Transformer | Ensemble,
    batches: Iterable[Batch],
    tokenizer: Tokenizer,
    decoding: DecodingConfig,
    *,
    on_batch: Callable[[int], object] | None = None,
) -> list[str]:
    """Translate every batch with :func:`search_batch` and detokenize.

    Returns the strings ordered by ``Batch.indices`` (the input order for a whole split);
    ``on_batch(n)`` is called after each batch with its number of sentences.
    """
    device = next(model.parameters()).device
    ids_by_index: dict[int, list[int]] = {}
    for batch in batches:
        ids = search_batch(model, batch.src.to(device), decoding, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
        ids_by_index.update(zip(batch.indices.tolist(), ids, strict=True))
        if on_batch is not None:
            on_batch(len(ids))
    return tokenizer.decode_batch([ids_by_index[i] for i in sorted(ids_by_index)])


def translate_texts(
    model: Transformer | Ensemble,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    decoding: DecodingConfig,
    *,
    max_tokens: int = 4096,
    on_batch: Callable[[int], object] | None = None,
) -> list[str]:
    """One translation per text, in input order (:func:`translate_nonblank`).

    Batches hold at most ``max_tokens`` source tokens, padding included.
    """

    def translate(src_ids: list[list[int]]) -> list[str]:
        split = EncodedSplit(src_ids, [[] for _ in src_ids])
        pad, bos, eos = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
        batches = TokenBudgetBatches(split, max_tokens, pad, bos, eos, shuffle=False)
        return translate_batches(model, batches, tokenizer, decoding, on_batch=on_batch)

    return translate_nonblank(tokenizer, texts, model.max_positions, translate, on_batch=on_batch)


def translate_nonblank(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    max_positions: int | None,
    translate: Callable[[list[list[int]]], list[str]],
    *,
    on_batch: Callable[[int], object] | None = None,
) -> list[str]:
    """One translation per text, in input order, by ``translate`` (source ids without EOS -> one
    translation each, in order).

    Blank texts translate to "" without running the model (``on_batch`` counts them at once). A
    text longer than ``max_positions - 1`` tokens (room for the EOS) is truncated; one warning
    gives the count.
    """
    outputs = [""] * len(texts)
    keep = [i for i, text in enumerate(texts) if text.strip()]
    if on_batch is not None and len(keep) < len(texts):
        on_batch(len(texts) - len(keep))
    if not keep:
        return outputs
    src_ids = tokenizer.encode_batch([texts[i] for i in keep])
    if max_positions is not None:
        limit = max_positions - 1
        n_long = sum(len(ids) > limit for ids in src_ids)
        if n_long:
            log.warning("%d of %d inputs exceed %d tokens and were truncated", n_long, len(src_ids), limit)
        src_ids = [ids[:limit] for ids in src_ids]
    for i, translation in zip(keep, translate(src_ids), strict=True):
        outputs[i] = translation
    return outputs
