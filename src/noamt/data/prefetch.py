"""Batches built ahead of the training step, in a background thread, while the device runs the
previous update.

The thread takes the batches of the source in its order and, for a CUDA device, pins each and
copies it with ``non_blocking=True`` on a side stream; the consumer's stream waits for that copy
when the batch is taken. The source's state (its resume position) is sampled in the thread right
after each batch and handed over with it, so :attr:`Prefetcher.state` is the position after the
batches taken, not after those built ahead: a checkpoint records the batches trained on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from noamt.data.batching import Batch

S = TypeVar("S")

PUT_POLL_S = 0.1  # how often a thread waiting for room in the queue looks for a stop request


@dataclass
class _Built(Generic[S]):
    """A batch built (and on CUDA being copied: ``copied`` records the copy's end), with the
    source's state right after it."""

    batch: Batch
    state: S
    copied: torch.cuda.Event | None


@dataclass
class _End(Generic[S]):
    """The source is exhausted; its final state."""

    state: S


@dataclass
class _Failed:
    """The source raised ``error``."""

    error: BaseException


class Prefetcher(Generic[S]):
    """The batches of ``source`` in its order, built ahead by a daemon thread: ``depth`` batches
    wait ready while the thread builds the next (``depth`` 0: ``next`` builds each batch in the
    caller's thread, there is no thread).

    ``state`` is ``state_of_source()`` as it was right after the last batch taken (before the
    first: at construction; once the source is exhausted: its final state). ``device``: where the
    batches go; for a CUDA device the thread pins them and copies them there on a side stream,
    otherwise (and without a thread) they stay as the source builds them. An exception raised by the
    source is raised by ``next`` in its place, after the batches built before it. ``close`` (or
    leaving the ``with`` block, on an exception or a KeyboardInterrupt as well) tells the thread
    to stop, and waits for the batch it is building.
    """

    def __init__(
        self,
        source: Iterable[Batch],
        state_of_source: Callable[[], S],
        depth: int = 2,
        device: torch.device | None = None,
    ):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self._source = iter(source)
        self._state_of_source = state_of_source
        self.state: S = state_of_source()
        self._cuda = device if device is not None and device.type == "cuda" else None
        self._queue: queue.Queue[_Built[S] | _End[S] | _Failed] = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._finished = False
        self._thread: threading.Thread | None = None
        self._side = torch.cuda.Stream(self._cuda) if self._cuda is not None and depth > 0 else None
        if depth > 0:
            self._thread = threading.Thread(target=self._produce, name="noamt-prefetch", daemon=True)
            self._thread.start()

    def __iter__(self) -> Prefetcher[S]:
        return self

    def __next__(self) -> Batch:
        if self._finished:
            raise StopIteration
        if self._thread is None:
            return self._next_here()
        item = self._queue.get()
        if isinstance(item, _Built):
            self.state = item.state
            return self._ready(item)
        self.close()
        if isinstance(item, _Failed):
            raise item.error
        self.state = item.state
        raise StopIteration

    def close(self) -> None:
        """Stop the thread (it ends after the batch it is building) and wait for it."""
        self._finished = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Prefetcher[S]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _next_here(self) -> Batch:
        """Without a thread: the source's next batch, as built (the training step copies it), and
        the state after it."""
        try:
            batch = next(self._source)
        except StopIteration:
            self._finished = True
            self.state = self._state_of_source()
            raise
        self.state = self._state_of_source()
        return batch

    def _produce(self) -> None:
        """The thread: build, move and queue every batch, then the end or the error."""
        try:
            for batch in self._source:
                if not self._put(self._move(batch, self._state_of_source())):
                    return
            self._put(_End(self._state_of_source()))
        except BaseException as error:  # handed to the consumer, which raises it
            self._put(_Failed(error))

    def _move(self, batch: Batch, state: S) -> _Built[S]:
        """On CUDA: pinned and copied on the side stream, the copy's end recorded."""
        if self._cuda is None:
            return _Built(batch, state, None)
        with torch.cuda.stream(self._side):
            moved = batch.to(self._cuda)
            copied = torch.cuda.Event()
            copied.record(self._side)
        return _Built(moved, state, copied)

    def _put(self, item: _Built[S] | _End[S] | _Failed) -> bool:
        """Queue ``item`` once there is room; False if a stop came first."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=PUT_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _ready(self, built: _Built[S]) -> Batch:
        """The batch, usable on the consumer's current stream: on CUDA that stream waits for the
        copy, and the batch's memory is marked as in use by it (the copy allocated it on the
        side stream)."""
        if built.copied is None:
            return built.batch
        stream = torch.cuda.current_stream(self._cuda)
        stream.wait_event(built.copied)
        batch = built.batch
        for tensor in (batch.src, batch.tgt_in, batch.tgt_out, batch.indices):
            tensor.record_stream(stream)
        return batch
