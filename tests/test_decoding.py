"""Greedy and beam search: exact on a learnt task, invariances, beam logic on a toy model."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from noamt.data import collate
from noamt.decoding import DecodingConfig, beam_search, greedy_search, max_output_lengths
from noamt.model import ModelConfig, Transformer

PAD, BOS, EOS = 0, 1, 2
VOCAB = 14  # 4 special ids, then 10 symbols
IDS = {"bos_id": BOS, "eos_id": EOS}
DEFAULT = DecodingConfig()


def random_sequences(n: int, seed: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (n,), generator=g).tolist()
    return [torch.randint(4, VOCAB, (length,), generator=g).tolist() for length in lengths]


def sources(seqs: list[list[int]]) -> torch.Tensor:
    """Padded (B, S) sources: ids + EOS."""
    return collate(seqs, seqs, list(range(len(seqs))), PAD, BOS, EOS).src


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: one thread avoids oversubscribing a shared CPU


@pytest.fixture(scope="module")
def reverse_models() -> dict[str, Transformer]:
    """A tiny Transformer trained for 300 Adam steps to reverse sequences, and its step-40 copy."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        encoder_layers=2,
        decoder_layers=2,
        d_model=64,
        n_heads=4,
        d_ff=128,
        dropout=0.0,
        max_positions=32,
    )
    model = Transformer(cfg, VOCAB, VOCAB, PAD)
    steps = 300
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 30) * (1 - s / steps))
    models = {}
    for step in range(steps):
        seqs = random_sequences(64, seed=100 + step)
        batch = collate(seqs, [s[::-1] for s in seqs], list(range(64)), PAD, BOS, EOS)
        logits = model(batch.src, batch.tgt_in)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, VOCAB), batch.tgt_out.view(-1), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step == 40:
            models["partly_trained"] = copy.deepcopy(model)
    models["trained"] = model
    return models


@pytest.mark.slow
def test_trained_model_reverses_with_greedy_and_beam(reverse_models):
    model = reverse_models["trained"]
    seqs = random_sequences(40, seed=1)
    expected = [s[::-1] for s in seqs]
    assert greedy_search(model, sources(seqs), DEFAULT, **IDS) == expected
    assert beam_search(model, sources(seqs), DecodingConfig(beam_size=4), **IDS) == expected


@pytest.mark.parametrize("name", ["partly_trained", "trained"])
def test_beam_of_one_is_greedy(reverse_models, name):
    src = sources(random_sequences(24, seed=2))
    model = reverse_models[name]
    greedy = greedy_search(model, src, DEFAULT, **IDS)
    assert beam_search(model, src, DecodingConfig(beam_size=1), **IDS) == greedy


def test_cached_and_uncached_decoding_agree(reverse_models):
    model = reverse_models["partly_trained"]
    src = sources(random_sequences(24, seed=3))
    assert greedy_search(model, src, DEFAULT, **IDS, use_cache=False) == greedy_search(model, src, DEFAULT, **IDS)
    beam = DecodingConfig(beam_size=4)
    assert beam_search(model, src, beam, **IDS, use_cache=False) == beam_search(model, src, beam, **IDS)


def test_partly_trained_model_gives_varied_lengths(reverse_models):
    """The invariance tests above need outputs that stop at different steps."""
    outputs = greedy_search(
        reverse_models["partly_trained"],
        sources(random_sequences(24, seed=3)),
        DEFAULT,
        **IDS,
    )
    assert len({len(o) for o in outputs}) > 3


@pytest.mark.parametrize("beam_size", [1, 3])
def test_batch_order_does_not_change_outputs(reverse_models, beam_size):
    model = reverse_models["partly_trained"]
    seqs = random_sequences(16, seed=4)
    perm = torch.randperm(len(seqs), generator=torch.Generator().manual_seed(0)).tolist()
    decoding = DecodingConfig(beam_size=beam_size)
    out = beam_search(model, sources(seqs), decoding, **IDS)
    out_perm = beam_search(model, sources([seqs[i] for i in perm]), decoding, **IDS)
    assert out_perm == [out[i] for i in perm]


def test_decoding_restores_train_mode(reverse_models):
    model = reverse_models["partly_trained"]
    model.train()
    greedy_search(model, sources([[4, 5]]), DEFAULT, **IDS)
    assert model.training
    model.eval()


def test_max_output_length_is_floor_of_a_len_plus_b_capped_by_positions():
    src = torch.tensor([[5, 6, EOS, PAD], [5, 6, 7, EOS]])  # 3 and 4 tokens without padding
    assert max_output_lengths(src, PAD, 1024, DecodingConfig(max_len_a=1.5, max_len_b=2)).tolist() == [6, 8]
    assert max_output_lengths(src, PAD, 8, DecodingConfig(max_len_a=2.0, max_len_b=5)).tolist() == [7, 7]  # capped


def test_outputs_respect_the_length_limit(reverse_models):
    model = reverse_models["trained"]
    src = sources(random_sequences(8, seed=5))
    for search in (greedy_search, beam_search):
        outputs = search(model, src, DecodingConfig(max_len_a=0.0, max_len_b=2), **IDS)
        assert all(len(o) <= 2 for o in outputs) and any(len(o) == 2 for o in outputs)


class BigramModel(nn.Module):
    """Stands in for a Transformer: p(y_t | y_<t, x) = table[y_{t-1}], whatever the source."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int):
        super().__init__()
        log_p = torch.full((vocab, vocab), math.log(1e-9))
        for prev, row in table.items():
            for token, p in row.items():
                log_p[prev, token] = math.log(p)
        self.log_p = nn.Parameter(log_p, requires_grad=False)
        self.pad_id, self.vocab, self.tgt_vocab_size, self.max_positions = PAD, vocab, vocab, 64
        self.cfg = ModelConfig(max_positions=64)

    def encode(self, src):
        return src[:, :, None].float(), (src != PAD)[:, None, None, :]

    def decode(self, tgt_in, memory, memory_mask, cache=None):
        return F.one_hot(tgt_in, self.vocab).float()  # (N, T, V): the previous token

    def project(self, hidden, out=None):
        return torch.mm(hidden, self.log_p, out=out) if out is not None else hidden @ self.log_p


A, B, C, D = 4, 5, 6, 7


def test_beam_search_finds_the_more_probable_sentence():
    # greedy: a then EOS, p = 0.6 * 0.35 = 0.21; beam: b then EOS, p = 0.4 * 0.9 = 0.36
    table = {BOS: {A: 0.6, B: 0.4}, A: {EOS: 0.35, C: 0.33, D: 0.32}, B: {EOS: 0.9, C: 0.1}}
    model, src = BigramModel(table, 8), torch.tensor([[A, B, EOS]])
    assert greedy_search(model, src, DEFAULT, **IDS) == [[A]]
    assert beam_search(model, src, DecodingConfig(beam_size=2, length_penalty=0.0), **IDS) == [[B]]


def test_length_penalty_divides_by_length_including_eos():
    # [a]: log(0.55 * 0.6) = -1.109 over 2 tokens; [a, b]: log(0.55 * 0.4) = -1.514 over 3
    table = {
        BOS: {A: 0.55, C: 0.45},
        A: {EOS: 0.6, B: 0.4},
        B: {EOS: 1.0},
        C: {D: 1.0},
        D: {C: 1.0},
    }
    model, src = BigramModel(table, 8), torch.tensor([[A, B, EOS]])
    assert beam_search(model, src, DecodingConfig(beam_size=2, length_penalty=0.0), **IDS) == [[A]]  # -1.109 > -1.514
    assert beam_search(model, src, DecodingConfig(beam_size=2, length_penalty=1.0), **IDS) == [
        [A, B]
    ]  # -0.555 < -0.505


def test_beam_size_must_be_positive():
    with pytest.raises(ValueError, match="decoding.beam_size=0: must be at least 1"):
        DecodingConfig(beam_size=0)


@pytest.mark.parametrize("beam_size", [1, 4])
def test_min_len_bans_eos_until_then_and_equal_limits_fix_the_length(reverse_models, beam_size):
    """The trained model stops after len(x) tokens; min_len holds it off EOS for longer."""
    model = reverse_models["trained"]
    seqs = random_sequences(12, seed=6)
    search = beam_search if beam_size > 1 else greedy_search
    longest = max(len(s) for s in seqs)
    at_least = DecodingConfig(beam_size=beam_size, min_len=longest + 3, max_len_a=0.0, max_len_b=30)
    outputs = search(model, sources(seqs), at_least, **IDS)
    assert all(len(o) >= longest + 3 for o in outputs)
    exactly = DecodingConfig(beam_size=beam_size, min_len=17, max_len_a=0.0, max_len_b=17)
    exact = search(model, sources(seqs), exactly, **IDS)
    assert [len(o) for o in exact] == [17] * len(seqs)
