"""The training loop: label-smoothed cross-entropy, Adam with a learning-rate schedule,
gradient accumulation and clipping, validation, checkpoints, resume and clean interruption.

``Trainer.train`` calls, in order: the checkpointer (``noamt.checkpoint.Checkpointer``: which
files, when, which run to resume), ``train_step``, the log window, validation and the
``BestTracker`` (best scores and patience). Training and validation measure the same losses:
the model's own, ``model(src, tgt_in, tgt_out, label_smoothing=...)`` (:class:`noamt.model.TargetLosses`).

Step k is the k-th update (k = 1, 2, ...): one group of ``update_freq`` batches, forward, backward
and optimizer step. It uses lr(k) from a pure schedule function, so a resumed run restores the
learning rate exactly from the saved step.

No update waits for the device: a NaN or infinite loss skips the optimizer step on the device
(``train_step``), the loss figures of the log window stay there, and the host reads them (one
read each) only at log, validation and checkpoint points. A skipped update therefore still counts
as update k and consumes lr(k), as an update that ``torch.amp.GradScaler`` skips for an fp16
overflow always has; the optimizer's own step count (Adam's bias correction, schedule-free
AdamW's averaging weights) counts only the updates applied. The batches are built ahead in a
background thread (:class:`noamt.data.Prefetcher`, ``trainer.prefetch``).

Validation and the checkpoints' "model" see the weights to evaluate, training goes on from the
weights it trains (:func:`noamt.optim.evaluation_weights`): the same for Adam, the average x and
the iterate y for schedule-free AdamW.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from noamt.bounds import at_least, at_least_or_none, between, fraction, non_negative, one_of, require
from noamt.checkpoint import (
    Checkpointer,
    CheckpointError,
    CheckpointState,
    RunIdentity,
    checkpoint_identity,
    config_differences,
    load_checkpoint,
    run_differences,
    run_label,
    save_checkpoint,
)
from noamt.data import Batch, Prefetcher, TokenBudgetBatches
from noamt.data.batching import check_buckets
from noamt.device import DeviceManager, rng_state, set_rng_state
from noamt.metrics import DAMAGED_SUFFIX, MetricsWriter, keep_records_until
from noamt.model import TargetLosses
from noamt.optim import checkpoint_weights, evaluation_weights, skips_on_device, training_weights
from noamt.progress import (
    BEST_METRICS,
    PACE_UPDATES,
    BestTracker,
    LogWindow,
    Pace,
    StopRequest,
    StopRequested,
    clock,
)
from noamt.run_dir import TOKENIZER_FILE, RunDir

log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1
"""The largest trainer.seed: the 32-bit range seeds are usually given in; torch refuses a seed
(seed + rank) of 2^64 or more."""
MAX_PAD_MULTIPLE = 1024
"""The largest trainer.pad_to_multiple: hardware gains nothing past 128, and every batch padded
to a larger multiple is wider than most models' position table (model.max_positions)."""
MAX_PREFETCH = 64
"""The most batches trainer.prefetch may build ahead: two hide the building of a batch behind an
update; each one more holds another batch in memory (pinned, or on the GPU)."""


@dataclass
class Duration:
    """How long to train: ``trainer.max_steps`` and ``trainer.max_epochs``, whichever comes first."""

    max_steps: int = 100_000
    """Optimizer updates to train for (0: no limit); the default total_steps of decaying schedules."""
    max_epochs: int = 0
    """Passes over the training data (0: no limit)."""

    def __post_init__(self) -> None:
        """Check every field; one-line ValueErrors naming the key."""
        at_least("trainer.max_steps", self.max_steps, 0)
        at_least("trainer.max_epochs", self.max_epochs, 0)


@dataclass
class Batching:
    """How the training data is cut into batches and batches into one update."""

    max_tokens: int = 4096
    """Token budget of one batch, padded source or target whichever is longer (fairseq's --max-tokens)."""
    max_sentences: int | None = None
    """At most this many sentence pairs per batch (null: no limit)."""
    pad_to_multiple: int = 1
    """Pad batch widths to a multiple of this (8 suits GPUs and device.compile; at most 1024)."""
    pad_to_buckets: list[int] | None = None
    """Pad each batch's source and target to the smallest of these increasing widths that holds its
    longest sequence, e.g. [16, 24, 32, 48, 64] (null: off; at most 64 widths; replaces
    pad_to_multiple): at most two batch shapes per width, so device.compile and device.cuda_graphs
    build a bounded number of graphs. A pair longer than the largest width is refused."""
    update_freq: int = 1
    """Batches accumulated into one update."""

    def __post_init__(self) -> None:
        """Check every field; one-line ValueErrors naming the key."""
        at_least("trainer.max_tokens", self.max_tokens, 1)
        at_least_or_none("trainer.max_sentences", self.max_sentences, 1)
        between("trainer.pad_to_multiple", self.pad_to_multiple, 1, MAX_PAD_MULTIPLE)
        check_buckets("trainer.pad_to_buckets", self.pad_to_buckets)
        require("trainer.pad_to_buckets", self.pad_to_buckets,
                self.pad_to_buckets is None or self.pad_to_multiple == 1,
                "null while trainer.pad_to_multiple is set")  # fmt: skip
        at_least("trainer.update_freq", self.update_freq, 1)


@dataclass
class Validation:
    """When to validate, what to score, and when to stop for want of progress."""

    val_interval: int = 200
    """Validate every N updates (0: only at epoch ends, with val_every_epoch)."""
    val_every_epoch: bool = False
    """Also validate at the end of every epoch (fairseq's default)."""
    validate_at_start: bool = True
    """Validate once before the first update."""
    val_bleu: bool = True
    """Greedy sacreBLEU on the validation set at every validation."""
    val_bleu_max_examples: int | None = None
    """Score only the first N validation pairs (null: all)."""
    best_metric: str = "loss"
    """checkpoint_best.pt by lowest validation loss or highest bleu."""
    patience: int = 0
    """Stop after this many validations without a better best_metric (0: never)."""

    def __post_init__(self) -> None:
        """Check every field; one-line ValueErrors naming the key."""
        at_least("trainer.val_interval", self.val_interval, 0)
        at_least_or_none("trainer.val_bleu_max_examples", self.val_bleu_max_examples, 1)
        one_of("trainer.best_metric", self.best_metric, BEST_METRICS)
        if self.best_metric == "bleu" and not self.val_bleu:
            raise ValueError("trainer.best_metric=bleu needs trainer.val_bleu=true")
        at_least("trainer.patience", self.patience, 0)


@dataclass
class Checkpointing:
    """Which checkpoints to write and keep, and which to resume from."""

    save_interval: int = 200
    """Write checkpoint_last.pt and checkpoint_<update>.pt every N updates (0: never)."""
    keep_last: int = 3
    """checkpoint_<update>.pt files kept (0: all)."""
    save_every_epoch: bool = False
    """Write checkpoint_epoch<E>.pt at the end of every epoch."""
    keep_last_epochs: int = 0
    """checkpoint_epoch<E>.pt files kept (0: all)."""
    resume: str = "none"
    """none, auto (the run directory's checkpoint_last.pt) or the path of a checkpoint."""

    def __post_init__(self) -> None:
        """Check every field; one-line ValueErrors naming the key."""
        at_least("trainer.save_interval", self.save_interval, 0)
        at_least("trainer.keep_last", self.keep_last, 0)
        at_least("trainer.keep_last_epochs", self.keep_last_epochs, 0)


@dataclass
class TrainerConfig(Checkpointing, Validation, Batching, Duration):
    """When to stop, validate, log and save; how to form one update. Its parts (Duration,
    Batching, Validation, Checkpointing) each declare and check their keys; every key is
    ``trainer.<name>``, the parts' and the fields below alike."""

    clip_norm: float = 0.0
    """Largest global gradient norm (0: no clipping)."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy, in [0, 1)."""
    seed: int = 1
    """Seeds the initialisation, dropout and the batch order (0 to 2^32 - 1)."""
    log_interval: int = 20
    """Log the training loss every N updates (a line in train.log and a "train" record); the
    host reads the device's figures and agrees on a stop signal across processes only there."""
    max_nonfinite_updates: int = 10
    """Stop after this many updates in a row with a NaN/inf loss (each one skipped). The skips
    are counted on the device and read at every log, validation and checkpoint point, so the
    run stops at the first such point after the count is reached, before it validates or saves."""
    tensorboard: bool = True
    """Write TensorBoard event files beside metrics.jsonl."""
    progress: bool = True
    """Show a progress bar when stderr is a terminal (otherwise the log lines show the progress)."""
    prefetch: int = 2
    """Batches a background thread builds ahead (and on CUDA copies to the device) while the
    device runs the current update (0: the loop builds each batch itself; at most 64)."""

    def __post_init__(self) -> None:
        """Check every field, the parts' first; one-line ValueErrors naming the key."""
        for part in (Duration, Batching, Validation, Checkpointing):
            part.__post_init__(self)
        non_negative("trainer.clip_norm", self.clip_norm)
        fraction("trainer.label_smoothing", self.label_smoothing)
        between("trainer.seed", self.seed, 0, MAX_SEED)
        at_least("trainer.log_interval", self.log_interval, 1)
        at_least("trainer.max_nonfinite_updates", self.max_nonfinite_updates, 1)
        between("trainer.prefetch", self.prefetch, 0, MAX_PREFETCH)


class TrainingDiverged(RuntimeError):
    """The loss stayed NaN or infinite for ``trainer.max_nonfinite_updates`` updates in a row."""


class DataPosition(NamedTuple):
    """Where the training batches stand after the batches taken so far."""

    state: dict
    """The batch iterator's ``state_dict()``: what a checkpoint stores to resume from."""
    epoch: int
    """Its epoch."""
    epoch_done: bool
    """Every batch of that epoch taken."""


class Trainer:
    """Owns the loop; the model, optimizer, data and schedule are built by the caller."""

    def __init__(
        self,
        cfg: TrainerConfig,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Callable[[int], float],
        train_data: TokenBudgetBatches,
        valid_data: TokenBudgetBatches | None,
        device: DeviceManager,
        run_dir: str | Path,
        extra_state: RunIdentity | None = None,
        run_info: dict | None = None,
        bleu: Callable[..., float] | None = None,
    ):
        self.tracker = BestTracker(cfg.best_metric, cfg.patience)
        self.cfg, self.model, self.optimizer, self.schedule = cfg, model, optimizer, schedule
        self.train_data, self.valid_data, self.dm = train_data, valid_data, device
        self.run = RunDir.at(run_dir)
        self.checkpointer = Checkpointer(
            self.run.checkpoints,
            cfg.save_interval,
            cfg.keep_last,
            cfg.save_every_epoch,
            cfg.keep_last_epochs,
            enabled=device.is_main,
        )
        self.extra_state: RunIdentity = extra_state or {}  # resolved config and tokenizer, stored in checkpoints
        self.run_info = run_info or {}  # written to metrics.jsonl as the "run" record
        self.bleu = bleu  # (model, watch) -> validation BLEU, its batches passed through watch
        self.wrapped = device.wrap(model)
        self.scaler = device.grad_scaler()
        self.step, self.epoch = 0, 1
        self._validated_step = -1
        self._validation_pending = False  # a stop signal cut a due validation short: it runs on resuming
        self.skipped_updates = 0  # updates skipped for a NaN/inf loss, over the whole run, as read so far
        self._nonfinite_in_a_row = 0
        self._unread_skips: list[torch.Tensor] = []  # per update since the last read: 1.0 if skipped (device)
        self._skips_on_device = skips_on_device(optimizer)
        self.position = self._data_position()
        """The training batches' position after the batches trained on (not those built ahead)."""
        self.metrics: MetricsWriter | None = None  # opened by train(), once there is something to record
        self.resumed: bool | None = None  # set by resume()
        self.stop = StopRequest()
        self.stopped_by: int | None = None
        """The stop signal every process has agreed on (``train_step``), None while training on."""

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> CheckpointState:
        weights = checkpoint_weights(self.model, self.optimizer)
        state: CheckpointState = {
            "model": weights["model"],
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best": dict(self.tracker.best),
            "best_step": self.tracker.best_step,
            "validated_step": self._validated_step,
            "validation_pending": self._validation_pending,
            "validations_without_improvement": self.tracker.without_improvement,
            "skipped_updates": self.skipped_updates,
            "data": self.position.state,
            "rng": rng_state(),
            **self.extra_state,
        }
        if "train_weights" in weights:
            state["train_weights"] = weights["train_weights"]
        return state

    def load_state_dict(self, state: CheckpointState) -> None:
        self.model.load_state_dict(training_weights(state, self.optimizer))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.tracker.best = state["step"], state["epoch"], dict(state["best"])
        self.tracker.best_step = state.get("best_step", 0)
        self._validated_step = state.get("validated_step", -1)
        self._validation_pending = state.get("validation_pending", False)
        self.tracker.without_improvement = state["validations_without_improvement"]
        self.skipped_updates = state.get("skipped_updates", 0)
        self.train_data.load_state_dict(state["data"])
        self.position = self._data_position()
        set_rng_state(state["rng"])

    def save(self, best: bool = False, epoch_end: bool = False, validated: bool = False) -> None:
        """The checkpoints due now (see :class:`~noamt.checkpoint.Checkpointer`), once the skips
        are read (:meth:`_read_skips`: a diverged run stops before it saves)."""
        self._read_skips()
        self.checkpointer.save(
            self.state_dict, self.step, self.epoch, best=best, epoch_end=epoch_end, validated=validated
        )

    def resume(self) -> bool:
        """Load the checkpoint ``trainer.resume`` names (see ``Checkpointer.resume_state``), check
        that it fits this run (its tokenizer, its tensors) and belongs to it (:meth:`_check_run`),
        and repair checkpoint_best.pt if it lags; False when starting fresh. metrics.jsonl keeps
        only the records up to the resumed update (none on a fresh start: those of a launch
        killed before its first checkpoint)."""
        found = self.checkpointer.resume_state(self.cfg.resume)
        self.resumed = found is not None
        if found is None:
            if self.cfg.resume == "auto":
                log.info("trainer.resume=auto: no checkpoint in %s, starting fresh", self.checkpointer.folder)
        else:
            path, state = found
            stored, current = state.get("tokenizer"), self.extra_state.get("tokenizer")
            if stored is not None and current is not None and stored != current:
                raise CheckpointError(
                    f"the run's {TOKENIZER_FILE} is not the tokenizer {path} was trained with (sha256 "
                    f"{_short_hash(current)} vs {_short_hash(stored)}): restore it, or start a new run"
                )
            # Loaded on the CPU: RNG states must stay CPU tensors; weights and Adam moments are
            # copied to the model's device by load_state_dict.
            try:
                self.load_state_dict(state)
            except (RuntimeError, KeyError, ValueError) as err:
                reason = _mismatch(state, self.extra_state, err)
                raise CheckpointError(f"{path} does not fit this run: {reason}") from err
            self._check_run(path, state)
            log.info("resumed from %s at update %d (epoch %d)", path, self.step, self.epoch)
            if self.dm.is_main:
                self._check_best_checkpoint(state)
        if self.dm.is_main and not self.finished():
            dropped, damaged = keep_records_until(self.run.metrics, self.step if self.resumed else -1)
            if dropped:
                log.info("dropped %d metric records written after update %d", dropped, self.step)
            if damaged:
                name = self.run.metrics.name
                log.warning("%s: %d damaged lines moved to %s%s", name, damaged, name, DAMAGED_SUFFIX)
        return self.resumed

    def _check_run(self, path: Path, state: CheckpointState) -> None:
        """The resumed checkpoint must be a state of this run: its identifying settings (its
        config less :data:`~noamt.checkpoint.RESUME_MAY_CHANGE`, e.g. the seed) must be this
        launch's (:func:`~noamt.checkpoint.run_differences`).

        ``trainer.resume=auto`` continues the run in its directory, so a checkpoint of another
        run found there (a checkpoint_last.pt copied from the run of another seed) is refused in
        one line naming the file and the settings that differ. A checkpoint named in
        ``trainer.resume=<path>`` is taken as it is, as fairseq's ``--restore-file`` is: training
        goes on from its state as this run (fine-tuning, a warm start), and one line says that
        it is another run's state. A checkpoint of older noamt without an ``identity`` entry is
        told by its config (a notice says so)."""
        checkpoint_identity(state, path)  # the notice, for a checkpoint of older noamt
        differences = run_differences(state, self.extra_state)
        if not differences:
            return
        owner, changes = run_label(state), "; ".join(differences)
        if self.cfg.resume == "auto":
            raise CheckpointError(
                f"{path} belongs to {owner}, not this {run_label(self.extra_state)}: {changes} (checkpoint -> now); "
                f"move it away, or pass trainer.resume={path} to train on from its state"
            )
        log.warning("trainer.resume=%s: the state of another %s, trained on as this run (%s)", path, owner, changes)

    def _check_best_checkpoint(self, state: CheckpointState) -> None:
        """checkpoint_best.pt must hold the best validation that the resumed state records: when it
        is missing, damaged, another run's or lags, it is rewritten from the resumed state if that
        is the best model, and a warning says which validation it cannot restore otherwise. A best
        set by the validation before the first update needs no file: that model is the
        initialisation, which no checkpoint keeps (checkpoint_best.pt appears with the first
        validation that improves on it)."""
        recorded = state["best"][self.tracker.metric]
        if not math.isfinite(recorded) or self.tracker.best_step == 0:
            return
        path = self.run.best
        held, problem = self._held_best(path)
        if held is not None:
            lags = held > recorded if self.tracker.metric == "loss" else held < recorded
            if not lags:
                return
            metric, step = self.tracker.metric, self.tracker.best_step
            problem = f"holds {metric} {held:.4f} but update {step} scored {recorded:.4f}"
        if self.tracker.best_step == state["step"]:
            save_checkpoint(state, path)
            log.warning("%s %s: rewritten from the resumed checkpoint (update %d)", path, problem, state["step"])
        else:
            step = self.tracker.best_step
            log.warning("%s %s, and the model of update %d is not in any checkpoint", path, problem, step)

    def _held_best(self, path: Path) -> tuple[float | None, str | None]:
        """The best score checkpoint_best.pt holds, or None and why it cannot count: missing,
        unreadable or damaged, or a state of another run (:func:`~noamt.checkpoint.run_differences`)."""
        if not path.exists():
            return None, "is missing"
        try:
            best = load_checkpoint(path)
        except CheckpointError as err:
            return None, f"cannot be used ({err})"
        foreign = run_differences(best, self.extra_state)
        if foreign:
            return None, f"belongs to {run_label(best)} ({'; '.join(foreign)})"
        return best["best"][self.tracker.metric], None

    def finished(self) -> bool:
        """The run has nothing left to do: out of patience, or max_steps or max_epochs reached
        and the last update validated (a run killed during its final validation is not)."""
        if self.tracker.out_of_patience():
            return True
        epochs_done = bool(self.cfg.max_epochs) and self.epoch > self.cfg.max_epochs
        validated = self.valid_data is None or self._validated_step == self.step
        return (self._done() or epochs_done) and validated

    # ----------------------------------------------------------------------------- steps
    def train_step(self, batches: list[Batch]) -> dict:
        """Update k = step + 1 over ``batches`` (update_freq micro-batches): forward, backward,
        clip, optimizer step with lr(k); ``step`` becomes k.

        The loss is summed over the target tokens of all micro-batches (and all processes) and
        divided by their total count, so accumulation and data parallelism give the per-token
        mean. A NaN or infinite loss sum (on any process) skips the update on the device
        (:meth:`_skip_if`): weights and optimizer state stay as they were, while k still
        advances. Nothing here waits for the device, except with schedule-free AdamW, whose
        step cannot be skipped on the device: one read of the flag per update decides there.

        Returns the update's figures: on the device ``skipped`` (1.0 or 0.0), ``loss_sum`` and
        ``nll_sum`` (this process's sums over its target tokens) and ``grad_norm`` (None
        without clipping); on the host ``tokens`` (this process's target tokens).
        """
        self.wrapped.train()
        n_tokens = sum(b.n_tgt_tokens for b in batches)
        scale = self._loss_scale(n_tokens)
        loss_sum = torch.zeros((), device=self.dm.device)
        nll_sum = torch.zeros((), device=self.dm.device)
        for i, batch in enumerate(batches):
            batch = batch.to(self.dm.device)
            sync = i == len(batches) - 1 or not self.dm.distributed
            with contextlib.nullcontext() if sync else self._no_sync(), self.dm.autocast():
                losses = self.target_losses(self.wrapped, batch)
            self.scaler.scale(losses.loss * scale).backward()
            loss_sum += losses.loss.detach()
            nll_sum += losses.nll.detach()
        skipped = self._nonfinite(loss_sum)
        self.step += 1
        lr = self.schedule(self.step)
        out = {"skipped": skipped, "loss_sum": loss_sum, "nll_sum": nll_sum, "tokens": n_tokens}
        if not self._skips_on_device and skipped.item():  # schedule-free AdamW: its documented host read
            self.optimizer.zero_grad(set_to_none=True)
            return {**out, "grad_norm": None}
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._skip_if(skipped)
        grad_norm = None
        if self.cfg.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self._skips_on_device and not self.scaler.is_enabled():
            del self.optimizer.found_inf  # type: ignore[attr-defined]
        self.optimizer.zero_grad(set_to_none=True)
        return {**out, "grad_norm": grad_norm}

    def _loss_scale(self, n_tokens: int) -> float | torch.Tensor:
        """world_size / (target tokens of the update on all processes): DDP averages the
        processes' gradients, so each scales its loss sum by it. One process: 1 / n_tokens;
        several: a device tensor whose sum over the processes is an all-reduce on the device."""
        if not self.dm.distributed:
            return 1 / n_tokens
        total = torch.full((), n_tokens, dtype=torch.float64, device=self.dm.device)
        dist.all_reduce(total)
        return (self.dm.world_size / total).float()

    def _nonfinite(self, loss_sum: torch.Tensor) -> torch.Tensor:
        """1.0 where the update's loss sum is NaN or infinite on any process, else 0.0: a float32
        scalar on the device (the maximum over processes is an all-reduce on the device)."""
        flag = (~torch.isfinite(loss_sum)).float()
        if self.dm.distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag

    def _skip_if(self, skipped: torch.Tensor) -> None:
        """Make this update's optimizer step a no-op on the device when ``skipped`` is 1.0.

        Fused Adam and AdamW skip both the update and their step count when their ``found_inf``
        is 1.0 (``torch.optim.adam._fused_adam``), the device-side check GradScaler uses; with
        fp16, GradScaler sets ``found_inf`` itself from the gradients, so a NaN written into one
        gradient element passes the flag on (and, as for an overflow, halves the loss scale).
        """
        if not self._skips_on_device:
            return
        if not self.scaler.is_enabled():
            self.optimizer.found_inf = skipped  # type: ignore[attr-defined]
            return
        grad = next(p.grad for p in self.model.parameters() if p.grad is not None)
        grad[(0,) * grad.dim()].masked_fill_(skipped.bool(), math.nan)  # its first element, in place

    def _no_sync(self) -> contextlib.AbstractContextManager:
        """DistributedDataParallel's no_sync: gradients accumulate locally until the last micro-batch."""
        return cast(nn.parallel.DistributedDataParallel, self.wrapped).no_sync()

    def target_losses(self, model: nn.Module, batch: Batch) -> TargetLosses:
        """The summed label-smoothed loss, NLL and token count of the batch's targets; ``model`` is
        the module to call (wrapped for training, bare for validation)."""
        return model(batch.src, batch.tgt_in, batch.tgt_out, label_smoothing=self.cfg.label_smoothing)

    @torch.no_grad()
    def validate(self) -> dict:
        """Label-smoothed loss, NLL and perplexity per target token on the validation set.

        Every process scores the whole set, so all of them agree on the best checkpoint.
        """
        if self.valid_data is None:
            raise ValueError("validate: this trainer has no validation data")
        self.model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=self.dm.device)  # loss, nll, tokens
        self.valid_data.rewind()
        for batch in self.stop.watch(self.valid_data):
            batch = batch.to(self.dm.device)
            with self.dm.autocast():
                losses = self.target_losses(self.model, batch)
            sums[0] += losses.loss
            sums[1] += losses.nll
            sums[2] += losses.tokens
        loss, nll, tokens = sums.tolist()
        return {"loss": loss / tokens, "nll_loss": nll / tokens, "ppl": math.exp(nll / tokens)}

    def _validate_and_record(self, epoch_end: bool = False) -> None:
        """Validate the weights to evaluate, update the bests and the patience count, save
        (checkpoint_best if better).

        A stop signal during the validation cuts it short on every process (one exchange agrees
        on it): the checkpoints due are saved without it and it runs first on resuming. The
        skips are read first (:meth:`_read_skips`): a diverged run stops before it validates.
        """
        self._read_skips()
        try:
            with evaluation_weights(self.optimizer):
                result = self.validate()
                if self.bleu is not None and self.step > 0:  # an untrained model scores 0 at great length
                    result["bleu"] = self.bleu(self.model, self.stop.watch)
            cut_short = 0.0
        except StopRequested:
            cut_short = 1.0
        cut_short, signum = self.dm.all_reduce_max([cut_short, float(self.stop.signum or 0)])
        if cut_short:
            self.stopped_by = int(signum)
            self._validation_pending = True
            log.warning("validation at update %d cut short by %s: it runs first on resuming",
                        self.step, signal.Signals(self.stopped_by).name)  # fmt: skip
            self.save(epoch_end=epoch_end)
            return
        self._validated_step, self._validation_pending = self.step, False
        improved = self.tracker.update(result, self.step)
        if self.metrics:
            self.metrics.write("valid", self.step, **result, **self.tracker.finite())
        bleu = f" | bleu {result['bleu']:.2f}" if "bleu" in result else ""
        log.info(
            "valid | update %d | loss %.4f | nll %.4f | ppl %.2f%s | best %s %.4f",
            self.step,
            result["loss"],
            result["nll_loss"],
            result["ppl"],
            bleu,
            self.tracker.metric,
            self.tracker.best[self.tracker.metric],
        )
        if self.step > 0:
            self.save(best=improved, epoch_end=epoch_end, validated=True)

    # ----------------------------------------------------------------------------- loop
    def _data_position(self) -> DataPosition:
        """Where the training batches stand now."""
        data = self.train_data
        return DataPosition(data.state_dict(), data.epoch, data.epoch_done)

    def _epochs(self) -> Iterator[Batch]:
        """The training batches from the current position on, epoch after epoch until
        max_epochs. The prefetch thread iterates it: only it moves the batch iterator on."""
        data = self.train_data
        while not self.cfg.max_epochs or data.epoch <= self.cfg.max_epochs:
            yield from data
            data.set_epoch(data.epoch + 1)

    def _updates(self, batches: Prefetcher[DataPosition]) -> Iterator[list[Batch]]:
        """Groups of ``update_freq`` batches, the last of an epoch possibly shorter; ``position``
        and ``epoch`` follow the batches taken (once all are: the epoch after max_epochs)."""
        group: list[Batch] = []
        for batch in batches:
            group.append(batch)
            self.position = batches.state
            self.epoch = self.position.epoch
            if len(group) == self.cfg.update_freq or self.position.epoch_done:
                yield group
                group = []
        self.position = batches.state
        self.epoch = self.position.epoch

    def _total_steps(self) -> int | None:
        per_epoch = math.ceil(len(self.train_data) / self.cfg.update_freq)
        limits = [n for n in (self.cfg.max_steps, self.cfg.max_epochs * per_epoch) if n]
        return min(limits) if limits else None

    def _done(self) -> bool:
        return bool(self.cfg.max_steps) and self.step >= self.cfg.max_steps

    def train(self) -> dict:
        """Run until max_steps / max_epochs or a stop signal; returns the last logged values.

        Resumes first (unless ``resume`` was called already). Relaunching a finished run changes
        nothing: no validation, no checkpoint, no record.
        """
        resumed = self.resume() if self.resumed is None else self.resumed
        if resumed and self.finished():
            log.info("the run finished at update %d already: nothing to do", self.step)
            return {}
        if not resumed:
            self.train_data.set_epoch(self.epoch)
            self.position = self._data_position()
        if self.dm.is_main:
            self.metrics = MetricsWriter(self.run.path, self.cfg.tensorboard)
            self.metrics.write("run", self.step, resumed=resumed, **self.run_info)
        total = self._total_steps()
        if total is not None and total > self.step:
            log.info(
                "training %d updates (from update %d to %d) of at most %d tokens each "
                "(trainer.max_tokens %d x update_freq %d x %d process%s)",
                total - self.step,
                self.step,
                total,
                self.cfg.max_tokens * self.cfg.update_freq * self.dm.world_size,
                self.cfg.max_tokens,
                self.cfg.update_freq,
                self.dm.world_size,
                "" if self.dm.world_size == 1 else "es",
            )
        pace = Pace(self.step, total, PACE_UPDATES)
        bar = tqdm(
            total=total,
            initial=self.step,
            disable=not (self.cfg.progress and self.dm.is_main and sys.stderr.isatty()),
            unit="upd",
            dynamic_ncols=True,
        )
        last: dict = {}
        with self.stop.installed():
            if self.valid_data is not None and (
                self._validation_pending or (self.step == 0 and self.cfg.validate_at_start)
            ):
                self._validate_and_record()
            if not (self._done() or self.stopped_by is not None):
                with Prefetcher(self._epochs(), self._data_position, self.cfg.prefetch, self.dm.device) as batches:
                    last = self._train_updates(batches, pace, bar)
            bar.close()
            self._finish()  # inside: a launcher's handler of the stop signal runs after the checkpoint
        return last

    def _train_updates(self, batches: Prefetcher[DataPosition], pace: Pace, bar: tqdm) -> dict:
        """Update after update until max_steps or max_epochs, a stop signal or the end of the
        patience; the last logged values.

        The host reads the device only at log, validation and checkpoint points. A stop signal
        stops one process after the update it arrived in (a host flag, checked after every
        update); the processes of a data-parallel job agree on it at the next log point (one
        exchange), or at a validation they cut short, so they stop after the same update.
        """
        window = LogWindow(self.dm.device, self.dm.all_reduce_sum)
        last: dict = {}
        for group in self._updates(batches):
            out = self.train_step(group)
            self.dm.adapt_threads()
            self._unread_skips.append(out["skipped"])
            window.add(out["loss_sum"], out["nll_sum"], out["tokens"], out["skipped"], out["grad_norm"])
            bar.update(1)
            if (estimate := pace.after_update(self.step)) is not None:
                log.info(estimate)
            if not self.dm.distributed:
                self.stopped_by = self.stop.signum
            if self.step % self.cfg.log_interval == 0 or self._done():
                last = self._log_window(window, pace, bar)
                if self.dm.distributed:
                    (signum,) = self.dm.all_reduce_max([float(self.stop.signum or 0)])
                    self.stopped_by = int(signum) or None
            epoch_end = self.position.epoch_done
            if self.valid_data is not None and (
                _every(self.step, self.cfg.val_interval) or (epoch_end and self.cfg.val_every_epoch)
            ):
                self._validate_and_record(epoch_end)
            elif _every(self.step, self.cfg.save_interval) or (epoch_end and self.cfg.save_every_epoch):
                self.save(epoch_end=epoch_end)
            if self._done() or self.stopped_by is not None:
                break
            if self.tracker.out_of_patience():
                log.info(
                    "no better validation %s for %d validations: stopping early",
                    self.cfg.best_metric,
                    self.cfg.patience,
                )
                break
        return last

    def _read_skips(self) -> None:
        """Read the skip flags of the updates since the last read (one host read), count, log
        and record (a "skip" record) each skipped update, and stop the run with
        :class:`TrainingDiverged` once ``trainer.max_nonfinite_updates`` came in a row."""
        if not self._unread_skips:
            return
        flags = torch.stack(self._unread_skips).tolist()
        self._unread_skips = []
        for step, skipped in enumerate(flags, start=self.step - len(flags) + 1):
            if not skipped:
                self._nonfinite_in_a_row = 0
                continue
            self.skipped_updates += 1
            self._nonfinite_in_a_row += 1
            log.warning(
                "update %d: loss is NaN or infinite, update skipped (%d in a row, %d in all)",
                step,
                self._nonfinite_in_a_row,
                self.skipped_updates,
            )
            if self.metrics:
                self.metrics.write("skip", step, in_a_row=self._nonfinite_in_a_row, total=self.skipped_updates)
            if self._nonfinite_in_a_row >= self.cfg.max_nonfinite_updates:
                raise TrainingDiverged(
                    f"the loss was NaN or infinite for {self._nonfinite_in_a_row} updates in a row after update "
                    f"{step - self._nonfinite_in_a_row} (trainer.max_nonfinite_updates): lower the peak lr, lengthen "
                    "the warmup or set trainer.clip_norm; the checkpoints hold the last finite state"
                )

    def _log_window(self, window: LogWindow, pace: Pace, bar: tqdm) -> dict:
        """The "train" record and the log line of the updates since the last one, their skips
        read first."""
        self._read_skips()
        record = {"epoch": self.epoch, **window.close(), "lr": self.schedule(self.step)}
        total = f"/{pace.total}" if pace.total is not None else ""
        gnorm = f" | gnorm {record['grad_norm']:.3f}" if "grad_norm" in record else ""
        remaining = pace.remaining(self.step)
        eta = f" | eta {clock(remaining)}" if remaining is not None else ""
        log.info(
            "epoch %03d | update %d%s | loss %.3f | nll %.3f | ppl %.2f | lr %.3e%s | tok/s %.0f | elapsed %s%s",
            self.epoch,
            self.step,
            total,
            record["loss"],
            record["nll_loss"],
            record["ppl"],
            record["lr"],
            gnorm,
            record["tokens_per_s"],
            clock(pace.elapsed()),
            eta,
        )
        bar.set_postfix(
            loss=f"{record['loss']:.3f}",
            lr=f"{record['lr']:.2e}",
            tok_s=f"{record['tokens_per_s']:.0f}",
            ep=self.epoch,
        )
        if self.metrics:
            self.metrics.write("train", self.step, **record)
        return record

    def _finish(self) -> None:
        interrupted = self.stopped_by is not None
        validated = self._validated_step == self.step
        if not interrupted and not validated and self.valid_data is not None and not self.tracker.out_of_patience():
            self._validate_and_record()
        self.save()
        if self.metrics:
            self.metrics.write("end", self.step, epoch=self.epoch, interrupted=interrupted, **self.tracker.finite())
            self.metrics.close()
        log.info(
            "%s at update %d; checkpoints in %s",
            "stopped" if interrupted else "finished",
            self.step,
            self.checkpointer.folder,
        )


def _every(step: int, interval: int) -> bool:
    """True on every ``interval``-th update; never when ``interval`` is 0."""
    return interval > 0 and step % interval == 0


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _mismatch(state: Mapping[str, Any], extra_state: Mapping[str, Any], err: Exception) -> str:
    """Which model, tokenizer or data settings differ between a checkpoint and this run."""
    sections = ("model", "tokenizer", "data")
    stored = {k: v for k, v in (state.get("config") or {}).items() if k in sections}
    current = {k: v for k, v in (extra_state.get("config") or {}).items() if k in sections}
    changes = config_differences(stored, current)
    if changes:
        return "settings differ (checkpoint -> now): " + "; ".join(changes)
    return str(err).strip().splitlines()[0]
