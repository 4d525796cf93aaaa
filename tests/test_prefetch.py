"""Prefetcher: the source's batches in its order, its state after the batches taken (not those
built ahead), errors passed on, the thread stopped on every way out; a run resumed from a
checkpoint written while batches were built ahead is the uninterrupted run bit for bit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import torch
from helpers.tiny_trainer import tiny_trainer, toy_batches

from noamt.checkpoint import load_checkpoint
from noamt.data import Batch, Prefetcher, TokenBudgetBatches
from noamt.metrics import read_metrics


def epochs(data: TokenBudgetBatches, count: int) -> Iterator[Batch]:
    """The batches of epochs 1 to ``count``, as the trainer iterates them."""
    data.set_epoch(1)
    while data.epoch <= count:
        yield from data
        data.set_epoch(data.epoch + 1)


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "noamt-prefetch"]


def same_batch(a: Batch, b: Batch) -> bool:
    fields = ("src", "tgt_in", "tgt_out", "indices")
    return a.n_tgt_tokens == b.n_tgt_tokens and all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields)


@pytest.mark.parametrize("depth", [0, 1, 2, 5])
def test_the_same_batches_in_the_same_order_with_the_state_after_each(depth):
    plain = toy_batches()
    expected = [(batch, plain.state_dict()) for batch in epochs(plain, 3)]
    data = toy_batches()
    with Prefetcher(epochs(data, 3), data.state_dict, depth) as batches:
        assert batches.state == {"epoch": 0, "position": 0}  # before the first batch
        taken = [(batch, batches.state) for batch in batches]
        assert batches.state == {"epoch": 4, "position": 0}  # exhausted: the source's last state
    assert len(taken) == len(expected) == 3 * len(data)
    assert all(same_batch(a, b) and s == t for (a, s), (b, t) in zip(taken, expected, strict=True))


def test_the_state_is_that_of_the_batches_taken_while_more_are_built():
    data = toy_batches()
    with Prefetcher(epochs(data, 3), data.state_dict, depth=4) as batches:
        for _ in range(3):
            next(batches)
        deadline = time.monotonic() + 30
        while data.state_dict()["position"] < 3 + 4 and time.monotonic() < deadline:
            time.sleep(0.01)  # the thread fills the queue: 4 batches ahead (a fifth waits for room)
        assert data.state_dict()["position"] >= 7
        assert batches.state == {"epoch": 1, "position": 3}


def test_an_error_of_the_source_is_raised_after_the_batches_before_it():
    data = toy_batches()

    def failing() -> Iterator[Batch]:
        for i, batch in enumerate(data):
            if i == 3:
                raise ValueError("damaged shard")
            yield batch

    taken = []
    with pytest.raises(ValueError, match="damaged shard"):
        with Prefetcher(failing(), data.state_dict, depth=2) as batches:
            taken.extend(batches)
    assert len(taken) == 3 and not prefetch_threads()


@pytest.mark.parametrize("way_out", [KeyboardInterrupt, RuntimeError, None], ids=["ctrl-c", "error", "close"])
def test_the_thread_stops_on_every_way_out(way_out):
    """An endless source, left after 2 batches by Ctrl-C, an error in the loop or ``close``: the
    daemon thread ends (it was waiting for room in the queue) and takes nothing more."""
    data = toy_batches()

    def endless() -> Iterator[Batch]:
        while True:
            yield from data
            data.set_epoch(data.epoch + 1)

    prefetcher = Prefetcher(endless(), data.state_dict, depth=2)
    assert [t.daemon for t in prefetch_threads()] == [True]
    if way_out is None:
        next(prefetcher), next(prefetcher)
        prefetcher.close()
    else:
        with pytest.raises(way_out), prefetcher:
            next(prefetcher), next(prefetcher)
            raise way_out()
    assert not prefetch_threads()
    with pytest.raises(StopIteration):
        next(prefetcher)
    assert prefetcher.state == {"epoch": 0, "position": 2}


def test_a_run_resumed_from_a_checkpoint_written_mid_epoch_is_the_uninterrupted_one(tmp_path, monkeypatch):
    """Stopped at update 7 of an epoch of 11 with 2 batches built ahead, its checkpoint holds the
    position of the 7 batches trained on; resumed to update 20, weights, Adam's moments, the
    data position and every loss (logged after each update) equal those of the run never
    stopped."""
    straight = tiny_trainer(tmp_path / "straight", log_interval=1)
    straight.train()
    stopped = tiny_trainer(tmp_path / "resumed", log_interval=1, max_steps=7)
    step = stopped.train_step

    def once_built_ahead(batches):  # each update starts with 2 more batches built than taken
        deadline = time.monotonic() + 30
        while stopped.train_data.state_dict()["position"] < stopped.step + 3 and time.monotonic() < deadline:
            time.sleep(0.001)
        return step(batches)

    monkeypatch.setattr(stopped, "train_step", once_built_ahead)
    stopped.train()
    assert stopped.train_data.epoch == 1 and stopped.train_data.state_dict()["position"] >= 9
    checkpoint = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "checkpoint_last.pt")
    assert checkpoint["data"] == {"epoch": 1, "position": 7} and len(stopped.train_data) > 9
    resumed = tiny_trainer(tmp_path / "resumed", log_interval=1, resume="auto")
    resumed.train()
    a, b = straight.state_dict(), resumed.state_dict()
    assert a["step"] == b["step"] == 20 and a["data"] == b["data"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for key, moments in a["optimizer"]["state"].items():
        for name, tensor in moments.items():
            assert torch.equal(tensor, b["optimizer"]["state"][key][name]), (key, name)

    def losses(run: str) -> dict:
        records = read_metrics(tmp_path / run / "metrics.jsonl")
        return {(r["kind"], r["step"]): r["loss"] for r in records if r["kind"] in ("train", "valid")}

    straight_losses, resumed_losses = losses("straight"), losses("resumed")
    assert len(straight_losses) == 20 + 3  # every update; validations at 0, 10 and 20
    assert {key: resumed_losses[key] for key in straight_losses} == straight_losses
