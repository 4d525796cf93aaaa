"""Tests of noamt.data.batching: encoding, length filtering, collation and token-budget batches."""

from pathlib import Path

import pytest
import torch

from noamt.data import (
    Batch,
    EncodedSplit,
    TokenBudgetBatches,
    Tokenizer,
    TokenizerConfig,
    collate,
    filter_pairs,
    train_tokenizer,
)
from noamt.data.corpus import read_lines

PAD, BOS, EOS = 0, 1, 2


@pytest.fixture(scope="module")
def tokenizer_and_train(multi30k_dir: Path) -> tuple[Tokenizer, EncodedSplit]:
    """A small-vocabulary tokenizer and the encoded, length-filtered Multi30k training split."""
    src = read_lines(multi30k_dir / "train.en.gz")
    tgt = read_lines(multi30k_dir / "train.de.gz")
    tokenizer = train_tokenizer([*src, *tgt], TokenizerConfig(vocab_size=1000))
    split, _ = filter_pairs(EncodedSplit.encode(tokenizer, src, tgt), 128, 128)
    return tokenizer, split


@pytest.fixture(scope="module")
def train_split(tokenizer_and_train) -> EncodedSplit:
    return tokenizer_and_train[1]


def batches(split: EncodedSplit, **kwargs) -> TokenBudgetBatches:
    kwargs.setdefault("max_tokens", 2048)
    return TokenBudgetBatches(split, pad_id=PAD, bos_id=BOS, eos_id=EOS, **kwargs)


def index_lists(it) -> list[list[int]]:
    return [b.indices.tolist() for b in it]


def synthetic_split(n: int = 40) -> EncodedSplit:
    return EncodedSplit(
        [[10 + j for j in range(1 + i % 7)] for i in range(n)],
        [[20 + j for j in range(1 + (i * 3) % 5)] for i in range(n)],
    )


def test_collate_layout() -> None:
    batch = collate([[5, 6, 7], [8]], [[9], [10, 11, 12, 13]], [4, 0], PAD, BOS, EOS)
    assert batch.src.tolist() == [[5, 6, 7, 2], [8, 2, 0, 0]]
    assert batch.tgt_in.tolist() == [[1, 9, 0, 0, 0], [1, 10, 11, 12, 13]]
    assert batch.tgt_out.tolist() == [[9, 2, 0, 0, 0], [10, 11, 12, 13, 2]]
    assert batch.n_tgt_tokens == 7 == int((batch.tgt_out != PAD).sum())
    assert batch.indices.tolist() == [4, 0]
    assert all(t.dtype == torch.long for t in (batch.src, batch.tgt_in, batch.tgt_out, batch.indices))


def test_pad_to_multiple_widens_every_tensor_with_padding_only() -> None:
    plain = collate([[5, 6, 7], [8]], [[9], [10, 11, 12, 13]], [4, 0], PAD, BOS, EOS)
    padded = collate([[5, 6, 7], [8]], [[9], [10, 11, 12, 13]], [4, 0], PAD, BOS, EOS, pad_to_multiple=8)
    for name in ("src", "tgt_in", "tgt_out"):
        a, b = getattr(plain, name), getattr(padded, name)
        assert b.size(1) == 8
        assert torch.equal(b[:, : a.size(1)], a) and bool((b[:, a.size(1) :] == PAD).all())
    assert padded.n_tgt_tokens == plain.n_tgt_tokens


@pytest.mark.slow
def test_token_budget_counts_widths_padded_to_the_multiple(train_split) -> None:
    budget = batches(train_split, max_tokens=1000, pad_to_multiple=8)
    assert len(budget) > len(batches(train_split, max_tokens=1000))  # padded widths fit fewer pairs
    for batch in budget:
        widths = (batch.src.size(1), batch.tgt_in.size(1))
        assert all(w % 8 == 0 for w in widths)
        assert batch.src.size(0) == 1 or batch.src.size(0) * max(widths) <= 1000
    with pytest.raises(ValueError, match="pad_to_multiple must be positive, got 0"):
        batches(train_split, pad_to_multiple=0)


def test_collate_empty_sequences() -> None:
    batch = collate([[]], [[]], [0], PAD, BOS, EOS)
    assert batch.src.tolist() == [[EOS]]
    assert batch.tgt_in.tolist() == [[BOS]] and batch.tgt_out.tolist() == [[EOS]]
    assert batch.n_tgt_tokens == 1


def test_batch_to_cpu_is_identical() -> None:
    batch = collate([[5, 7], [3]], [[6], [8, 9]], [4, 1], PAD, BOS, EOS)
    moved = batch.to(torch.device("cpu"))
    for name in ("src", "tgt_in", "tgt_out", "indices"):
        assert getattr(moved, name) is getattr(batch, name)
    assert moved.n_tgt_tokens == batch.n_tgt_tokens


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_to_cuda_pins_first(monkeypatch: pytest.MonkeyPatch) -> None:
    pin_memory, pinned = Batch.pin_memory, []

    def spy(batch: Batch) -> Batch:
        pinned.append(pin_memory(batch))
        return pinned[-1]

    monkeypatch.setattr(Batch, "pin_memory", spy)
    batch = collate([[5, 7], [3]], [[6], [8, 9]], [4, 1], PAD, BOS, EOS)
    moved = batch.to("cuda")
    torch.cuda.synchronize()
    (host,) = pinned
    for name in ("src", "tgt_in", "tgt_out", "indices"):
        assert getattr(host, name).is_pinned() and not getattr(batch, name).is_pinned()
        assert getattr(moved, name).is_cuda and torch.equal(getattr(moved, name).cpu(), getattr(batch, name))


def test_encode_and_truncate(small_text_tokenizer: Tokenizer) -> None:
    tok = small_text_tokenizer
    src, tgt = ["the big dog runs", "a"], ["der Hund", "b c d e f g"]
    full = EncodedSplit.encode(tok, src, tgt)
    assert full.src_ids == [tok.encode(s) for s in src] and full.tgt_ids == [tok.encode(t) for t in tgt]
    cut = EncodedSplit.encode(tok, src, tgt, max_src_len=2, max_tgt_len=3, truncate=True)
    assert cut.src_ids == [ids[:2] for ids in full.src_ids]
    assert cut.tgt_ids == [ids[:3] for ids in full.tgt_ids]
    assert len(cut) == 2


@pytest.fixture(scope="module")
def small_text_tokenizer() -> Tokenizer:
    return train_tokenizer(["the big dog runs", "der große Hund läuft"] * 20, TokenizerConfig(vocab_size=280))


def test_filter_pairs() -> None:
    src_lens, tgt_lens = [3, 5, 2, 1, 4, 2], [3, 2, 6, 4, 4, 4]
    split = EncodedSplit([[7] * n for n in src_lens], [[8] * n for n in tgt_lens])
    kept, dropped = filter_pairs(split, max_src_len=4, max_tgt_len=5)
    assert dropped == 2 and [len(s) for s in kept.src_ids] == [3, 1, 4, 2]
    kept, dropped = filter_pairs(split, max_src_len=10, max_tgt_len=10, max_len_ratio=2.0)
    assert dropped == 3
    assert [len(s) for s in kept.src_ids] == [3, 4, 2] and [len(t) for t in kept.tgt_ids] == [
        3,
        4,
        4,
    ]


def test_every_batch_within_budget(train_split: EncodedSplit) -> None:
    it = batches(train_split, max_tokens=2048)
    it.set_epoch(1)
    n_batches = 0
    for batch in it:
        rows = batch.src.shape[0]
        assert rows * max(batch.src.shape[1], batch.tgt_in.shape[1]) <= 2048
        assert batch.tgt_in.shape == batch.tgt_out.shape
        n_batches += 1
    assert n_batches == len(it)
    assert len(it) < len(train_split) / 40


def test_every_example_once_per_epoch(train_split: EncodedSplit) -> None:
    it = batches(train_split)
    seen = [i for idx in index_lists(it) for i in idx]
    assert sorted(seen) == list(range(len(train_split)))


def test_batch_content_matches_split(train_split: EncodedSplit) -> None:
    batch = next(iter(batches(train_split)))
    for row, i in enumerate(batch.indices.tolist()):
        src, tgt = train_split.src_ids[i], train_split.tgt_ids[i]
        assert batch.src[row, : len(src) + 1].tolist() == [*src, EOS]
        assert batch.tgt_in[row, : len(tgt) + 1].tolist() == [BOS, *tgt]
        assert batch.tgt_out[row, : len(tgt) + 1].tolist() == [*tgt, EOS]
        assert (batch.tgt_out[row, len(tgt) + 1 :] == PAD).all()
    assert batch.n_tgt_tokens == sum(len(train_split.tgt_ids[i]) + 1 for i in batch.indices.tolist())


@pytest.mark.slow
def test_order_depends_on_seed_and_epoch(train_split: EncodedSplit) -> None:
    a, b, other_seed = (
        batches(train_split, seed=3),
        batches(train_split, seed=3),
        batches(train_split, seed=4),
    )
    epoch0 = index_lists(a)
    assert index_lists(b) == epoch0
    assert index_lists(other_seed) != epoch0
    a.set_epoch(1)
    epoch1 = index_lists(a)
    assert epoch1 != epoch0
    assert sorted(map(tuple, epoch1)) == sorted(map(tuple, epoch0))


@pytest.mark.slow
def test_epoch_end_and_set_epoch(train_split: EncodedSplit) -> None:
    it = batches(train_split)
    assert len(index_lists(it)) == len(it)
    assert index_lists(it) == []
    assert it.state_dict() == {"epoch": 0, "position": len(it)}
    it.set_epoch(0)
    assert index_lists(it) == []
    it.set_epoch(1)
    assert it.state_dict() == {"epoch": 1, "position": 0}
    assert len(index_lists(it)) == len(it)


@pytest.mark.slow
def test_resume_mid_epoch(train_split: EncodedSplit) -> None:
    reference = batches(train_split, seed=7)
    reference.set_epoch(2)
    expected = index_lists(reference)

    first = batches(train_split, seed=7)
    first.set_epoch(2)
    head = []
    for batch in first:
        head.append(batch.indices.tolist())
        if len(head) == 5:
            break
    state = first.state_dict()
    assert state == {"epoch": 2, "position": 5}

    resumed = batches(train_split, seed=7)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)
    assert head + index_lists(resumed) == expected


def test_load_state_dict_rejects_bad_position(train_split: EncodedSplit) -> None:
    it = batches(train_split)
    with pytest.raises(ValueError, match="outside this epoch"):
        it.load_state_dict({"epoch": 0, "position": len(it) + 1})


@pytest.mark.slow
def test_shards_disjoint_and_equal(train_split: EncodedSplit) -> None:
    full = batches(train_split, seed=5)
    full.set_epoch(3)
    all_batches = index_lists(full)
    shards = []
    for shard_id in range(3):
        it = batches(train_split, seed=5, num_shards=3, shard_id=shard_id)
        it.set_epoch(3)
        shards.append(index_lists(it))
        assert len(shards[-1]) == len(it) == len(all_batches) // 3
    examples = [set(i for idx in shard for i in idx) for shard in shards]
    assert not (examples[0] & examples[1] or examples[0] & examples[2] or examples[1] & examples[2])
    interleaved = [b for shard in zip(*shards, strict=True) for b in shard]
    assert interleaved == all_batches[: 3 * len(shards[0])]


def test_max_sentences() -> None:
    it = batches(synthetic_split(), max_tokens=10_000, max_sentences=6)
    sizes = [len(idx) for idx in index_lists(it)]
    assert max(sizes) == 6 and sum(sizes) == 40


def test_oversized_pair_gets_own_batch() -> None:
    split = EncodedSplit([[7] * 3, [7] * 30, [7] * 3], [[8] * 3, [8] * 2, [8] * 3])
    sizes = sorted(len(idx) for idx in index_lists(batches(split, max_tokens=10)))
    assert sizes == [1, 2]


def test_eval_order_is_length_sorted_and_restorable() -> None:
    split = synthetic_split()
    it = batches(split, max_tokens=24, shuffle=False)
    order = [i for idx in index_lists(it) for i in idx]
    keys = [(len(split.tgt_ids[i]), len(split.src_ids[i]), i) for i in order]
    assert keys == sorted(keys)
    assert sorted(order) == list(range(len(split)))
    it.rewind()
    assert [i for idx in index_lists(it) for i in idx] == order
    it.set_epoch(1)
    assert [i for idx in index_lists(it) for i in idx] == order


def test_too_few_batches_for_shards() -> None:
    with pytest.raises(ValueError, match="fewer than 4 shards"):
        batches(synthetic_split(6), max_tokens=10_000, num_shards=4)


def test_full_epoch_yields_every_pair_once_within_the_budget(train_split: EncodedSplit) -> None:
    seen = []
    for batch in batches(train_split, max_tokens=4096):
        seen += batch.indices.tolist()
        widest = max(batch.src.size(1), batch.tgt_in.size(1))
        assert batch.src.size(0) == 1 or batch.src.size(0) * widest <= 4096
        assert int((batch.tgt_out != PAD).sum()) == batch.n_tgt_tokens
    assert sorted(seen) == list(range(len(train_split)))
