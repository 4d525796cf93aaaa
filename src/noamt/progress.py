"""What the training loop keeps track of besides the model: the best validation scores and the
patience left, the window of updates since the last log line (its figures kept on the device),
the time estimates of a launch, and stop requests from signals."""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

log = logging.getLogger(__name__)

BEST_METRICS = ("loss", "bleu")  # what trainer.best_metric may name


class BestTracker:
    """The best validation loss and BLEU so far, the update that set the best ``metric`` (one of
    :data:`BEST_METRICS`, as ``TrainerConfig`` checks), and the validations since ``metric`` last
    improved."""

    def __init__(self, metric: str, patience: int):
        self.metric, self.patience = metric, patience
        self.best = {"loss": math.inf, "bleu": -math.inf}
        self.best_step = 0
        self.without_improvement = 0

    def update(self, result: dict, step: int) -> bool:
        """Record the validation result of update ``step``; True when it improves ``metric``
        (lower loss, higher BLEU)."""
        value = result[self.metric]
        improved = value < self.best["loss"] if self.metric == "loss" else value > self.best["bleu"]
        self.best["loss"] = min(self.best["loss"], result["loss"])
        if "bleu" in result:
            self.best["bleu"] = max(self.best["bleu"], result["bleu"])
        self.without_improvement = 0 if improved else self.without_improvement + 1
        if improved:
            self.best_step = step
        return improved

    def out_of_patience(self) -> bool:
        return self.patience > 0 and self.without_improvement >= self.patience

    def finite(self) -> dict[str, float]:
        """``best_loss``/``best_bleu`` for the metrics records, those reached so far."""
        return {f"best_{k}": v for k, v in self.best.items() if math.isfinite(v)}


class LogWindow:
    """The training updates since the last log line, summed on the device and read in one go
    when the window closes.

    Over the updates applied (a skipped update counts in neither sum), on this process:
    loss = (sum of their label-smoothed token losses) / (their target tokens), nll_loss the same
    for the negative log-likelihood, ppl = exp(nll_loss). tokens_per_s = target tokens of every
    update of all processes / wall time since the window opened; grad_norm: the last update's
    global gradient norm before clipping (with trainer.clip_norm only).
    """

    def __init__(self, device: torch.device, all_reduce_sum: Callable[[float], float]):
        self.device = device
        self.all_reduce_sum = all_reduce_sum
        self._reset()

    def _reset(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.nll_sum = torch.zeros((), device=self.device)
        self.applied_tokens = torch.zeros((), dtype=torch.int64, device=self.device)
        self.tokens = 0
        self.grad_norm: torch.Tensor | None = None
        self.start = time.perf_counter()

    def add(
        self,
        loss_sum: torch.Tensor,
        nll_sum: torch.Tensor,
        tokens: int,
        skipped: torch.Tensor,
        grad_norm: torch.Tensor | None,
    ) -> None:
        """One update: its loss and NLL sums and 1.0 if it was skipped (device scalars), its
        target tokens, its gradient norm (None without clipping)."""
        applied = skipped == 0
        self.loss_sum += torch.where(applied, loss_sum, 0.0)
        self.nll_sum += torch.where(applied, nll_sum, 0.0)
        self.applied_tokens += applied * tokens
        self.tokens += tokens
        self.grad_norm = grad_norm

    def close(self) -> dict[str, float]:
        """loss, nll_loss, ppl, tokens_per_s (and grad_norm) of the window (NaN losses when
        every update was skipped); a new window opens."""
        elapsed = time.perf_counter() - self.start
        tokens = self.all_reduce_sum(self.tokens)
        sums = [self.loss_sum, self.nll_sum, self.applied_tokens]
        if self.grad_norm is not None:
            sums.append(self.grad_norm)
        loss_sum, nll_sum, applied, *grad_norm = torch.stack([x.double() for x in sums]).tolist()
        self._reset()
        nll = nll_sum / applied if applied else math.nan
        figures = {
            "loss": loss_sum / applied if applied else math.nan,
            "nll_loss": nll,
            "ppl": math.inf if nll > MAX_LOG_PPL else math.exp(nll),
            "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
        }
        if grad_norm:
            figures["grad_norm"] = grad_norm[0]
        return figures


MAX_LOG_PPL = math.log(sys.float_info.max)  # exp of more overflows a float: the perplexity is inf


PACE_UPDATES = 10  # updates timed before the first time estimate


class Pace:
    """Seconds per update over the first ``count`` updates of a launch, and the time they imply
    for the rest: remaining = (total - step) * (elapsed / count)."""

    def __init__(self, first_step: int, total: int | None, count: int):
        self.first_step, self.total, self.count = first_step, total, count
        self.start = time.perf_counter()

    def after_update(self, step: int) -> str | None:
        """The one estimate line, after the ``count``-th update of the launch; None otherwise."""
        if step - self.first_step != self.count:
            return None
        per_update = (time.perf_counter() - self.start) / self.count
        if self.total is None:
            return f"{per_update:.2f} s per update (no trainer.max_steps or max_epochs: it runs until stopped)"
        left = (self.total - step) * per_update
        return f"{per_update:.2f} s per update: about {duration_text(left)} for the {self.total - step} updates left"

    def elapsed(self) -> float:
        """Seconds since the launch began."""
        return time.perf_counter() - self.start

    def remaining(self, step: int) -> float | None:
        """Seconds left at this launch's pace so far: (total - step) * elapsed / (step - first
        step); None without a total or before the launch's first update."""
        if self.total is None or step <= self.first_step:
            return None
        return (self.total - step) * self.elapsed() / (step - self.first_step)


def clock(seconds: float) -> str:
    """A duration as H:MM:SS (whole seconds), for the log lines."""
    return str(datetime.timedelta(seconds=round(seconds)))


def duration_text(seconds: float) -> str:
    """A duration for a log line: minutes under an hour, hours under two days, else days."""
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    hours = minutes / 60
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


T = TypeVar("T")

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR2") if hasattr(signal, name)
)  # Ctrl-C, a kill or a scheduler's stop, and SLURM's warning before a time limit (--signal=USR2@90)


REPEAT_WINDOW_S = 0.2  # the same signal again within this is one delivery, not a second request


class StopRequested(Exception):
    """A stop signal arrived during a validation, which :meth:`StopRequest.watch` cut short."""


class StopRequest:
    """Turns any of :data:`STOP_SIGNALS` (SIGUSR2: SLURM's warning before a time limit or preemption,
    ``sbatch --signal=USR2@90``) into a flag (a host value: reading it waits for no device) the
    loop checks after each update, and that :meth:`watch` checks between the batches of a
    validation.

    A handler installed before it for the received signal (submitit's, which requeues the job on
    SIGUSR2) is called when the context ends, after the checkpoint, rather than never; Python's
    own SIGINT handler is not, so Ctrl-C still ends in the usual exit status.
    """

    def __init__(self):
        self.signum: int | None = None
        self._received_at = 0.0

    def _handle(self, signum, frame):
        now = time.monotonic()
        if self.signum is not None:
            if signum == self.signum and now - self._received_at < REPEAT_WINDOW_S:
                return  # the same delivery again: Linux sends the parent-death signal once per thread
            raise KeyboardInterrupt  # a second signal: give up at once
        self.signum, self._received_at = signum, now
        log.warning("received %s: saving a checkpoint after this update", signal.Signals(signum).name)

    def watch(self, items: Iterable[T]) -> Iterator[T]:
        """``items`` one by one; StopRequested instead of the next one once a stop signal came."""
        for item in items:
            if self.signum is not None:
                raise StopRequested(signal.Signals(self.signum).name)
            yield item

    @contextlib.contextmanager
    def installed(self):
        previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        handler = previous.get(self.signum)
        if self.signum is not None and callable(handler) and handler is not signal.default_int_handler:
            handler(self.signum, None)
