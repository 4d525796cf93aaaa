import math

import pytest
import torch
import torch.nn.functional as F
from helpers.models import PAD, VOCAB, random_tokens, tiny_model

from noamt.data import collate
from noamt.model import ModelConfig, Transformer, count_parameters, sinusoidal_positions


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


def test_extra_padding_changes_no_logit_and_no_loss():
    # trainer.pad_to_multiple widens batches with padding: the real positions must not notice
    model = tiny_model().eval()
    seqs = [[5, 6, 7, 8, 9], [10, 11]]
    plain = collate(seqs, seqs, [0, 1], PAD, 1, 2)
    padded = collate(seqs, seqs, [0, 1], PAD, 1, 2, pad_to_multiple=8)
    with torch.no_grad():
        a, b = model(plain.src, plain.tgt_in), model(padded.src, padded.tgt_in)
        losses_a = model(plain.src, plain.tgt_in, plain.tgt_out, label_smoothing=0.1)
        losses_b = model(padded.src, padded.tgt_in, padded.tgt_out, label_smoothing=0.1)
    keep = plain.tgt_out != PAD
    torch.testing.assert_close(a[keep], b[padded.tgt_out != PAD], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(losses_a.loss, losses_b.loss, rtol=1e-5, atol=1e-5)
    assert int(losses_a.tokens) == int(losses_b.tokens) == int(keep.sum())


@pytest.mark.parametrize("epsilon", [0.0, 0.1])
def test_forward_with_targets_returns_the_loss_of_its_logits(epsilon):
    """The fused loss equals F.cross_entropy with label smoothing on forward's own logits, over
    the non-padding targets: the same sums, and the same gradients."""
    model = tiny_model().train()
    src, tgt_in, tgt_out = random_tokens(3, 6), random_tokens(3, 5, seed=2), random_tokens(3, 5, seed=3)
    tgt_out[0, 3:] = PAD
    keep = tgt_out != PAD
    torch.manual_seed(11)  # the same dropout masks for both passes
    losses = model(src, tgt_in, tgt_out, label_smoothing=epsilon)
    grads = torch.autograd.grad(losses.loss, list(model.parameters()))
    torch.manual_seed(11)
    logits = model(src, tgt_in)[keep]  # (N, V)
    reference = F.cross_entropy(logits, tgt_out[keep], label_smoothing=epsilon, reduction="sum")
    expected = torch.autograd.grad(reference, list(model.parameters()))
    torch.testing.assert_close(losses.loss, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(losses.nll, F.cross_entropy(logits.detach(), tgt_out[keep], reduction="sum"))
    assert int(losses.tokens) == int(keep.sum()) == 13
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


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
    with pytest.raises(ValueError, match="model.d_model=32: must be a multiple of model.n_heads=3"):
        ModelConfig(d_model=32, n_heads=3)


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
