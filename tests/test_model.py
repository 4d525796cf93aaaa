import math

import pytest
import torch

from noamt.data import collate
from noamt.model import ModelConfig, Transformer, count_parameters, sinusoidal_positions

PAD = 0
VOCAB = 50


def tiny_model(pre_norm: bool = False, **overrides) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(
        name="test",
        encoder_layers=2,
        decoder_layers=2,
        d_model=32,
        n_heads=4,
        d_ff=64,
        dropout=0.1,
        pre_norm=pre_norm,
        max_positions=64,
        **overrides,
    )
    return Transformer(cfg, VOCAB, VOCAB, pad_id=PAD).eval()


def random_tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (batch, length), generator=g)


def test_sinusoidal_positions_match_formula():
    table = sinusoidal_positions(10, 8)
    pos, i = 7, 3
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 8)), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 8)), abs=1e-6)


@pytest.mark.parametrize("pre_norm", [False, True])
def test_padding_does_not_change_real_positions(pre_norm):
    model = tiny_model(pre_norm)
    src, tgt = random_tokens(2, 7), random_tokens(2, 5, seed=2)
    pad_src = torch.cat([src, torch.full((2, 4), PAD)], dim=1)
    pad_tgt = torch.cat([tgt, torch.full((2, 3), PAD)], dim=1)
    with torch.no_grad():
        clean = model(src, tgt)
        padded = model(pad_src, pad_tgt)
    torch.testing.assert_close(padded[:, :5], clean, rtol=1e-5, atol=1e-5)


def test_padding_in_a_batch_matches_sentences_alone():
    model = tiny_model()
    short_src, long_src = random_tokens(1, 4), random_tokens(1, 9, seed=3)
    tgt = random_tokens(2, 6, seed=4)
    batch_src = torch.cat([torch.cat([short_src, torch.full((1, 5), PAD)], 1), long_src])
    with torch.no_grad():
        batched = model(batch_src, tgt)
        alone = model(short_src, tgt[:1])
    torch.testing.assert_close(batched[:1], alone, rtol=1e-5, atol=1e-5)


def test_decoder_does_not_see_the_future():
    model = tiny_model()
    src, tgt = random_tokens(2, 6), random_tokens(2, 8, seed=5)
    changed = tgt.clone()
    changed[:, 5:] = random_tokens(2, 3, seed=6)
    with torch.no_grad():
        a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_incremental_decoding_equals_full_decoding():
    model = tiny_model()
    src, tgt = random_tokens(3, 6), random_tokens(3, 7, seed=7)
    with torch.no_grad():
        memory, mask = model.encode(src)
        full = model.decode(tgt, memory, mask)
        cache = model.new_cache()
        steps = [model.decode(tgt[:, t : t + 1], memory, mask, cache) for t in range(tgt.size(1))]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    assert cache.length == tgt.size(1)


def test_cache_reorder_selects_rows():
    model = tiny_model()
    src, tgt = random_tokens(2, 5), random_tokens(2, 3, seed=8)
    with torch.no_grad():
        memory, mask = model.encode(src)
        cache = model.new_cache()
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
        cache = model.new_cache()
        steps = [model.decode(tgt[:, t : t + 1], memory, mask, cache) for t in range(tgt.size(1))]
    torch.testing.assert_close(shared, repeated, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(steps, dim=1), repeated, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="4 decoder rows cannot share 3 memory rows"):
        model.decode(tgt[:4], memory.repeat(3, 1, 1)[:3], mask.repeat(3, 1, 1, 1)[:3])


def test_extra_padding_changes_no_logit():
    # trainer.pad_to_multiple widens batches with padding: the real positions must not notice
    model = tiny_model().eval()
    seqs = [[5, 6, 7, 8, 9], [10, 11]]
    plain = collate(seqs, seqs, [0, 1], PAD, 1, 2)
    padded = collate(seqs, seqs, [0, 1], PAD, 1, 2, pad_to_multiple=8)
    with torch.no_grad():
        a = model(plain.src, plain.tgt_in, plain.tgt_out != PAD)
        b = model(padded.src, padded.tgt_in, padded.tgt_out != PAD)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_keep_mask_selects_rows_of_the_full_logits():
    model = tiny_model()
    src, tgt = random_tokens(2, 5), random_tokens(2, 4, seed=9)
    keep = torch.tensor([[True, True, False, False], [True, True, True, True]])
    with torch.no_grad():
        full, selected = model(src, tgt), model(src, tgt, keep)
    assert selected.shape == (6, VOCAB)
    torch.testing.assert_close(selected, full[keep])


def test_embeddings_are_shared_and_padding_embedding_is_zero():
    model = tiny_model()
    assert model.src_embed.weight is model.tgt_embed.weight
    assert torch.count_nonzero(model.tgt_embed.weight[PAD]) == 0
    separate = tiny_model(share_embeddings=False)
    assert separate.src_embed.weight is not separate.tgt_embed.weight
    assert count_parameters(separate) == count_parameters(model) + VOCAB * 32


def test_too_long_input_is_a_clear_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="max_positions=64"):
        model.encode(random_tokens(1, 65))


def test_heads_must_divide_d_model():
    with pytest.raises(ValueError, match="not divisible by model.n_heads=3"):
        Transformer(ModelConfig(d_model=32, n_heads=3), VOCAB, VOCAB, PAD)


@pytest.mark.parametrize("layers, d, ff", [(4, 128, 256), (3, 256, 1024)])
def test_parameter_count_matches_the_architecture(layers, d, ff):
    """Shared V x d embedding + per encoder layer (attention 4d^2+4d, ffn 2*d*ff+ff+d, two
    norms 2d each) + per decoder layer (two attentions, ffn, three norms)."""
    cfg = ModelConfig(encoder_layers=layers, decoder_layers=layers, d_model=d, d_ff=ff)
    vocab = 8000
    attention = 4 * d * d + 4 * d
    ffn = 2 * d * ff + ff + d
    norm = 2 * d
    expected = vocab * d + layers * (attention + ffn + 2 * norm) + layers * (2 * attention + ffn + 3 * norm)
    assert count_parameters(Transformer(cfg, vocab, vocab, pad_id=0)) == expected
