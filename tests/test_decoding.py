"""Greedy and beam search: exact on a learnt task, invariances, beam logic on a toy model."""

import copy
import math
import warnings
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from noamt.data import collate
from noamt.decoding import DecodingConfig, beam_search, greedy_search, max_output_lengths
from noamt.decoding.beam import _next_beams, _top_candidates
from noamt.decoding.search import inference, next_log_probs
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


def reference_beam_search(model, src, decoding, *, bos_id, eos_id):
    """Beam search as :func:`beam_search` defines it, its bookkeeping in Python lists, without
    cache: the 2K best candidates of each live sentence; EOS ones among the best K become finished
    (the first K found), scored sum log p / (step + 1)^alpha; the best K others stay live; a
    sentence stops at K finished or at its limit, where EOS is forced."""
    k = decoding.beam_size
    finished = [[] for _ in range(src.size(0))]
    with inference(model):
        memory, memory_mask = model.encode(src)
        limits = max_output_lengths(src, model.pad_id, model.max_positions, decoding).tolist()
        live, tokens, scores = (
            list(range(src.size(0))),
            src.new_full((src.size(0), 1), bos_id),
            torch.zeros(src.size(0), 1),
        )
        for step in range(max(limits) + 1):
            beams = scores.size(1)
            lprobs = next_log_probs(model, tokens, memory, memory_mask, None, bos_id).view(len(live), beams, -1)
            for n, sentence in enumerate(live):
                eos = lprobs[n, :, eos_id].clone()
                if step < decoding.min_len:
                    lprobs[n, :, eos_id] = -math.inf
                if step >= limits[sentence]:
                    lprobs[n] = -math.inf
                    lprobs[n, :, eos_id] = eos
            candidates = _top_candidates(scores, lprobs, 2 * k)
            for n, sentence in enumerate(live):
                for j in range(k):
                    score, beam, token = (float(c[n, j]) for c in candidates)
                    if token == eos_id and math.isfinite(score) and len(finished[sentence]) < k:
                        ids = tokens[n * beams + int(beam), 1:].tolist()
                        finished[sentence].append((score / (step + 1) ** decoding.length_penalty, ids))
            keep = [n for n, s in enumerate(live) if len(finished[s]) < k and step < limits[s]]
            if not keep:
                break
            keep_t = torch.tensor(keep)
            scores, rows, next_tokens = _next_beams(candidates, keep_t, k, beams, eos_id)
            tokens = torch.cat([tokens[rows], next_tokens], dim=1)
            memory, memory_mask = memory[keep_t], memory_mask[keep_t]
            live = [live[n] for n in keep]
    return [max(hypotheses, key=lambda h: h[0])[1] for hypotheses in finished]


@pytest.mark.parametrize(
    "decoding",
    [
        DecodingConfig(beam_size=4),
        DecodingConfig(beam_size=3, length_penalty=0.0),
        DecodingConfig(beam_size=5, length_penalty=2.0, min_len=3),
        DecodingConfig(beam_size=2, max_len_a=0.5, max_len_b=1),
        DecodingConfig(beam_size=1),
    ],
    ids=["beam4", "beam3-raw-sums", "beam5-alpha2-min3", "beam2-short-limits", "beam1"],
)
def test_beam_search_gives_the_reference_outputs(reverse_models, decoding):
    """The device-side bookkeeping finishes the hypotheses the list-based reference finishes:
    the same token ids on outputs of many lengths, cached and uncached."""
    model = reverse_models["partly_trained"]
    src = sources(random_sequences(24, seed=3))
    expected = reference_beam_search(model, src, decoding, **IDS)
    assert len({len(o) for o in expected}) > 3
    assert beam_search(model, src, decoding, **IDS) == expected
    assert beam_search(model, src, decoding, **IDS, use_cache=False) == expected


class HostSyncs(TorchDispatchMode):
    """Counts the operators that wait for the device: reading a scalar (item, _local_scalar_dense),
    nonzero (its size), is_nonzero (a tensor's truth); and, patched in by :func:`count_syncs`,
    Tensor.tolist, which on a CPU tensor dispatches no operator."""

    SYNCING = ("aten._local_scalar_dense", "aten.item", "aten.nonzero", "aten.is_nonzero")

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name in self.SYNCING or name == "aten.log_softmax":
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def count_syncs(monkeypatch, search) -> Counter:
    """The host syncs of ``search()`` by kind, and its decoder steps (``steps``: one log-softmax each)."""
    tolist = torch.Tensor.tolist
    with HostSyncs() as mode:

        def counted(tensor):
            mode.counts["tolist"] += 1
            return tolist(tensor)

        monkeypatch.setattr(torch.Tensor, "tolist", counted)
        search()
        monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    counts = mode.counts
    counts["steps"] = counts.pop("aten.log_softmax")
    return counts


def test_beam_search_syncs_with_the_host_once_per_step(reverse_models, monkeypatch):
    """One sync reads the limits, one per step reads which sentences stay live, one reads the
    outputs; finishing hypotheses and forcing EOS stay on the device."""
    model = reverse_models["partly_trained"]
    src = sources(random_sequences(24, seed=3))
    counts = count_syncs(monkeypatch, lambda: beam_search(model, src, DecodingConfig(beam_size=4), **IDS))
    assert counts["steps"] > 10
    assert counts == Counter({"steps": counts["steps"], "tolist": counts["steps"] + 2})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_beam_search_synchronizes_only_where_it_reads(reverse_models, monkeypatch):
    """CUDA's sync debug mode warns at every synchronizing call: all of them happen inside the
    search's reads (Tensor.tolist: the limits, one per step, the outputs), none in a copy or an
    indexing operation between them."""
    model = copy.deepcopy(reverse_models["partly_trained"]).cuda()
    src = sources(random_sequences(24, seed=3)).cuda()
    tolist, syncs_per_read = torch.Tensor.tolist, []
    with warnings.catch_warnings(record=True) as caught, HostSyncs() as mode:
        warnings.simplefilter("always")

        def read(tensor):
            before = len(caught)
            values = tolist(tensor)
            syncs_per_read.append(sum("synchroniz" in str(w.message) for w in caught[before:]))
            return values

        monkeypatch.setattr(torch.Tensor, "tolist", read)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            outputs = beam_search(model, src, DecodingConfig(beam_size=4), **IDS)
        finally:
            torch.cuda.set_sync_debug_mode(0)
            monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    syncs = sum("synchroniz" in str(w.message) for w in caught)
    assert len(outputs) == 24 and not any(mode.counts[name] for name in HostSyncs.SYNCING)
    assert len(syncs_per_read) == mode.counts["aten.log_softmax"] + 2
    assert all(syncs_per_read) and syncs == sum(syncs_per_read)
