"""The decoder's key/value cache: incremental decoding equals full decoding, reordering keeps rows."""

import pytest
import torch
from helpers.models import random_tokens, tiny_model

from noamt.decoding import DecoderCache


def new_cache(model) -> DecoderCache:
    return DecoderCache(model.cfg.decoder_layers)


def test_incremental_decoding_equals_full_decoding():
    model = tiny_model()
    src, tgt = random_tokens(3, 6), random_tokens(3, 7, seed=7)
    with torch.no_grad():
        memory, mask = model.encode(src)
        full = model.decode(tgt, memory, mask)
        cache = new_cache(model)
        steps = [model.decode(tgt[:, t : t + 1], memory, mask, cache) for t in range(tgt.size(1))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == tgt.size(1)


def test_cache_reorder_selects_rows():
    model = tiny_model()
    src, tgt = random_tokens(2, 5), random_tokens(2, 3, seed=8)
    with torch.no_grad():
        memory, mask = model.encode(src)
        cache = new_cache(model)
        model.decode(tgt[:, :1], memory, mask, cache)
        cache.reorder(torch.tensor([1, 1]), sentences=torch.tensor([1]))
        out = model.decode(tgt[1:, 1:2].repeat(2, 1), memory[[1]], mask[[1]], cache)
    torch.testing.assert_close(out[0], out[1])


def test_rows_sharing_a_memory_row_equal_a_repeated_memory():
    # beam search: the G beams of a sentence are consecutive rows that share its memory row
    model, groups = tiny_model(), 3
    src, tgt = random_tokens(2, 5), random_tokens(6, 4, seed=10)
    with torch.no_grad():
        memory, mask = model.encode(src)
        repeated = model.decode(tgt, memory.repeat_interleave(groups, 0), mask.repeat_interleave(groups, 0))
        shared = model.decode(tgt, memory, mask)
        cache = new_cache(model)
        steps = [model.decode(tgt[:, t : t + 1], memory, mask, cache) for t in range(tgt.size(1))]
    torch.testing.assert_close(shared, repeated, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(steps, dim=1), repeated, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="4 decoder rows cannot share 3 memory rows"):
        model.decode(tgt[:4], memory.repeat(3, 1, 1)[:3], mask.repeat(3, 1, 1, 1)[:3])
