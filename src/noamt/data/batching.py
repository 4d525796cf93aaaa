"""Token ids of a split, length filtering, padding into tensors, and token-budget batching.

Sequence layout: the encoder reads `source + EOS`; the decoder reads `BOS + target`
(`tgt_in`) and is trained to predict `target + EOS` (`tgt_out`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, pairwise
from typing import Any

import numpy as np
import torch

from noamt.bounds import is_integer, require
from noamt.data.tokenizer import Tokenizer

MAX_BUCKETS = 64
"""The most length buckets (``pad_to_buckets``): a compiled step records up to two batch shapes
per bucket (a CUDA graph each under ``device.cuda_graphs``); 64 buckets already give every width
up to 512 in steps of 8."""


def check_buckets(key: str, buckets: Any) -> None:
    """``buckets`` is None or a list of 1 to MAX_BUCKETS strictly increasing positive integers
    (a one-line ValueError naming ``key`` otherwise)."""
    if buckets is None:
        return
    ok = (
        isinstance(buckets, (list, tuple))
        and 0 < len(buckets) <= MAX_BUCKETS
        and all(is_integer(b) and b >= 1 for b in buckets)
        and all(a < b for a, b in pairwise(buckets))
    )
    require(key, buckets, ok, f"null or a list of 1 to {MAX_BUCKETS} increasing positive integers")


def bucket_widths(lengths: np.ndarray, buckets: Sequence[int]) -> np.ndarray:
    """The smallest bucket >= each length: w_i = min{b in buckets : b >= n_i}; lengths past the
    largest bucket are a ValueError."""
    if len(lengths) and lengths.max() > buckets[-1]:
        raise ValueError(
            f"a sequence of {lengths.max()} tokens (with EOS or BOS) is longer than the largest bucket, {buckets[-1]}"
        )
    return np.asarray(buckets)[np.searchsorted(buckets, lengths)]


@dataclass
class Batch:
    """Padded tensors of one batch; `indices` are the examples' positions in their split."""

    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor
    n_tgt_tokens: int
    indices: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """Copy of the batch with every tensor on `device`.

        A host batch bound for a CUDA device is pinned first and copied asynchronously.
        """
        device = torch.device(device)
        to_cuda = device.type == "cuda" and self.src.device.type == "cpu"
        batch = self.pin_memory() if to_cuda else self
        return Batch(
            src=batch.src.to(device, non_blocking=to_cuda),
            tgt_in=batch.tgt_in.to(device, non_blocking=to_cuda),
            tgt_out=batch.tgt_out.to(device, non_blocking=to_cuda),
            n_tgt_tokens=batch.n_tgt_tokens,
            indices=batch.indices.to(device, non_blocking=to_cuda),
        )

    def pin_memory(self) -> Batch:
        """Copy in page-locked memory, for asynchronous host-to-GPU copies."""
        return Batch(
            src=self.src.pin_memory(),
            tgt_in=self.tgt_in.pin_memory(),
            tgt_out=self.tgt_out.pin_memory(),
            n_tgt_tokens=self.n_tgt_tokens,
            indices=self.indices.pin_memory(),
        )


@dataclass
class EncodedSplit:
    """Token ids of one split: src_ids: List[List[int]], tgt_ids: List[List[int]] (no BOS/EOS)."""

    src_ids: list[list[int]]
    tgt_ids: list[list[int]]

    def __post_init__(self) -> None:
        if len(self.src_ids) != len(self.tgt_ids):
            raise ValueError(f"src has {len(self.src_ids)} sequences but tgt has {len(self.tgt_ids)}")

    def __len__(self) -> int:
        return len(self.src_ids)

    @classmethod
    def encode(
        cls,
        tokenizer: Tokenizer,
        src: Sequence[str],
        tgt: Sequence[str],
        max_src_len: int | None = None,
        max_tgt_len: int | None = None,
        truncate: bool = False,
    ) -> EncodedSplit:
        """Encode parallel texts. With `truncate`, cut sequences to `max_src_len`/`max_tgt_len`
        tokens (for evaluation, where no example may be dropped); otherwise the limits are
        not applied here and training data goes through `filter_pairs`."""
        src_ids = tokenizer.encode_batch(src)
        tgt_ids = tokenizer.encode_batch(tgt)
        if truncate:
            if max_src_len is not None:
                src_ids = [ids[:max_src_len] for ids in src_ids]
            if max_tgt_len is not None:
                tgt_ids = [ids[:max_tgt_len] for ids in tgt_ids]
        return cls(src_ids, tgt_ids)


def filter_pairs(
    split: EncodedSplit, max_src_len: int, max_tgt_len: int, max_len_ratio: float = 0.0
) -> tuple[EncodedSplit, int]:
    """Drop pairs longer than the limits (in tokens, without BOS/EOS) or, when `max_len_ratio`
    is positive, whose longer side exceeds `max_len_ratio` times the shorter one.
    Returns the kept pairs (in their original order) and the number dropped."""
    keep_src, keep_tgt = [], []
    for s, t in zip(split.src_ids, split.tgt_ids, strict=True):
        ls, lt = len(s), len(t)
        if ls > max_src_len or lt > max_tgt_len:
            continue
        if max_len_ratio > 0 and max(ls, lt) > max_len_ratio * max(min(ls, lt), 1):
            continue
        keep_src.append(s)
        keep_tgt.append(t)
    return EncodedSplit(keep_src, keep_tgt), len(split) - len(keep_src)


def collate(
    src_ids: list[list[int]],
    tgt_ids: list[list[int]],
    indices: list[int],
    pad_id: int,
    bos_id: int,
    eos_id: int,
    pad_to_multiple: int = 1,
    pad_to_buckets: Sequence[int] | None = None,
) -> Batch:
    """Pad one batch: `src` = ids + EOS, `tgt_in` = BOS + ids, `tgt_out` = ids + EOS.

    Each tensor's width is its longest row rounded up to a multiple of `pad_to_multiple`. With
    `pad_to_buckets` (increasing widths), all three take one width instead: the smallest bucket
    that holds the longest row of any of them.
    """
    src_lens = torch.tensor([len(s) + 1 for s in src_ids])
    tgt_lens = torch.tensor([len(t) + 1 for t in tgt_ids])
    src_flat = list(chain.from_iterable(chain(s, (eos_id,)) for s in src_ids))
    tgt_in_flat = list(chain.from_iterable(chain((bos_id,), t) for t in tgt_ids))
    tgt_out_flat = list(chain.from_iterable(chain(t, (eos_id,)) for t in tgt_ids))
    width = None
    if pad_to_buckets is not None and src_ids:
        longest = max(int(src_lens.max()), int(tgt_lens.max()))
        width = int(bucket_widths(np.array([longest]), pad_to_buckets)[0])
    src = _pad(src_flat, src_lens, pad_id, pad_to_multiple, width)
    tgt_in = _pad(tgt_in_flat, tgt_lens, pad_id, pad_to_multiple, width)
    tgt_out = _pad(tgt_out_flat, tgt_lens, pad_id, pad_to_multiple, width)
    return Batch(
        src=src,
        tgt_in=tgt_in,
        tgt_out=tgt_out,
        n_tgt_tokens=len(tgt_out_flat),
        indices=torch.tensor(indices, dtype=torch.long),
    )


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad(
    flat: list[int], lengths: torch.Tensor, pad_id: int, multiple: int = 1, width: int | None = None
) -> torch.Tensor:
    """Rows of `lengths` consecutive values of `flat`, right-padded with `pad_id` to `width`, by
    default the longest row rounded up to a multiple of `multiple`."""
    if width is None:
        width = _round_up(int(lengths.max()), multiple) if len(lengths) else 0
    out = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    return out.masked_scatter_(torch.arange(width) < lengths[:, None], torch.tensor(flat, dtype=torch.long))


class TokenBudgetBatches:
    """Batches whose padded size stays within max_tokens, from length-sorted buckets.

    A batch of B pairs is allowed while B * max(longest source, longest target) <= max_tokens,
    counting the added EOS/BOS (fairseq's rule), and B <= max_sentences if set. A pair longer
    than max_tokens on its own gets a batch of one (training data is length-filtered first;
    evaluation data must not lose examples).

    The pairs are sorted by (target length, source length), ties broken by a random order
    drawn from `seed` (or by index when `shuffle` is False), and cut greedily into batches;
    the batches are therefore the same every epoch. With `shuffle`, each epoch visits them
    in an order drawn from (seed, epoch); without it, in length order.

    With `num_shards > 1` (data parallel), shard k takes batches k, k + num_shards, ... of
    the epoch's order, after dropping the tail so that every shard has the same count.
    Evaluation should use a single shard so that no example is dropped.

    Iteration is deterministic given (seed, epoch) and resumable mid-epoch via
    `state_dict`/`load_state_dict`.

    `pad_to_multiple` (fairseq's --pad-to-multiple) pads every width up to a multiple of it, and
    the token budget counts those padded widths. On a GPU, widths that are multiples of 8 suit
    the tensor cores, and a compiled model (``device.compile``) meets fewer distinct shapes.

    `pad_to_buckets` (increasing widths w_1 < ... < w_n, instead of `pad_to_multiple`) bounds the
    shapes: a pair's width is w(pair) = the smallest bucket >= max(|src| + 1, |tgt| + 1), the
    pairs are sorted by w first, and each batch's source and target are padded to the width of
    its widest pair. A bucket's batches then hold min(max_sentences, max_tokens // w) pairs but
    for one (its last), so an epoch has at most 2n batch shapes (rows, w, w), the same every
    epoch: a compiled step meets at most 2n shapes, each of which a CUDA graph can replay. Every
    pair must fit the largest bucket.
    """

    def __init__(
        self,
        split: EncodedSplit,
        max_tokens: int,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        seed: int = 1,
        shuffle: bool = True,
        max_sentences: int | None = None,
        num_shards: int = 1,
        shard_id: int = 0,
        pad_to_multiple: int = 1,
        pad_to_buckets: Sequence[int] | None = None,
    ):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if max_sentences is not None and max_sentences < 1:
            raise ValueError(f"max_sentences must be positive or None, got {max_sentences}")
        if pad_to_multiple < 1:
            raise ValueError(f"pad_to_multiple must be positive, got {pad_to_multiple}")
        check_buckets("pad_to_buckets", pad_to_buckets)
        if pad_to_buckets is not None and pad_to_multiple != 1:
            raise ValueError("pad_to_buckets replaces pad_to_multiple: give one of them")
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
        self.split = split
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.seed = seed
        self.shuffle = shuffle
        self.num_shards = num_shards
        self.shard_id = shard_id
        self.pad_to_multiple = pad_to_multiple
        self.pad_to_buckets = None if pad_to_buckets is None else list(pad_to_buckets)
        self._batches = self._make_batches(max_tokens, max_sentences)
        if len(self._batches) < num_shards:
            raise ValueError(
                f"split of {len(split)} pairs gives {len(self._batches)} batches, fewer than {num_shards} shards"
            )
        self._epoch = 0
        self._position = 0
        self._order: list[int] | None = None

    def __len__(self) -> int:
        """Batches per epoch for this shard."""
        return len(self._batches) // self.num_shards

    @property
    def epoch(self) -> int:
        """The current epoch."""
        return self._epoch

    @property
    def epoch_done(self) -> bool:
        """True once every batch of the current epoch has been yielded."""
        return self._position >= len(self)

    def set_epoch(self, epoch: int) -> None:
        """Move to the start of `epoch`. Setting the current epoch again keeps the position,
        so a state restored mid-epoch survives the usual `for epoch ...: set_epoch(epoch)` loop."""
        if epoch != self._epoch:
            self._epoch = epoch
            self._position = 0
            self._order = None

    def rewind(self) -> None:
        """Go back to the first batch of the current epoch, e.g. before each validation pass."""
        self._position = 0

    def __iter__(self) -> Iterator[Batch]:
        """Yield the remaining batches of the current epoch, advancing the position."""
        order = self._epoch_order()
        while self._position < len(order):
            idx = self._batches[order[self._position]]
            self._position += 1
            yield collate(
                [self.split.src_ids[i] for i in idx],
                [self.split.tgt_ids[i] for i in idx],
                idx,
                self.pad_id,
                self.bos_id,
                self.eos_id,
                self.pad_to_multiple,
                self.pad_to_buckets,
            )

    def state_dict(self) -> dict:
        """{"epoch": e, "position": number of batches of epoch e already yielded}."""
        return {"epoch": self._epoch, "position": self._position}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a `state_dict` of an iterator over the same split and settings."""
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"batch position {position} is outside this epoch's {len(self)} batches")
        self._epoch = int(state["epoch"])
        self._position = position
        self._order = None

    def _make_batches(self, max_tokens: int, max_sentences: int | None) -> list[list[int]]:
        src_lens = np.fromiter((len(s) + 1 for s in self.split.src_ids), dtype=np.int64, count=len(self.split))
        tgt_lens = np.fromiter((len(t) + 1 for t in self.split.tgt_ids), dtype=np.int64, count=len(self.split))
        if self.shuffle:
            tie_break = np.random.default_rng(self.seed).permutation(len(self.split))
        else:
            tie_break = np.arange(len(self.split))
        widest = np.maximum(src_lens, tgt_lens)
        if self.pad_to_buckets is None:
            m = self.pad_to_multiple
            widths = -(-widest // m) * m
            order = np.lexsort((tie_break, src_lens, tgt_lens)).tolist()
        else:
            try:
                widths = bucket_widths(widest, self.pad_to_buckets)
            except ValueError as err:
                raise ValueError(f"pad_to_buckets: {err}") from None
            order = np.lexsort((tie_break, src_lens, tgt_lens, widths)).tolist()
        lengths = widths.tolist()  # padded widths
        cap = max_sentences or len(order)
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for i in order:
            new_longest = max(longest, lengths[i])
            if current and ((len(current) + 1) * new_longest > max_tokens or len(current) == cap):
                batches.append(current)
                current, new_longest = [], lengths[i]
            current.append(i)
            longest = new_longest
        if current:
            batches.append(current)
        return batches

    def _epoch_order(self) -> list[int]:
        """This shard's batch numbers for the current epoch, in visiting order."""
        if self._order is None:
            n = len(self._batches)
            if self.shuffle:
                order = np.random.default_rng([self.seed, self._epoch]).permutation(n)
            else:
                order = np.arange(n)
            usable = len(self) * self.num_shards
            self._order = order[self.shard_id : usable : self.num_shards].tolist()
        return self._order


def endless_batches(batches: TokenBudgetBatches) -> Iterator[Batch]:
    """The batches of ``batches``, epoch after epoch (epochs 1, 2, ...), for benchmarks."""
    epoch = 1
    while True:
        batches.set_epoch(epoch)
        yield from batches
        epoch += 1
