"""Checkpoint files: save, verify, load, rotate, average.

A checkpoint is one ``torch.save`` file holding a :class:`CheckpointState` dict and, under
``sha256``, the SHA-256 of its contents (:func:`content_digest`). It is written with
:func:`noamt.io.write_atomic` (a temporary file in the same folder, flushed to disk and renamed
over the target), so a crash or kill at any moment leaves either the old or the new file, never
a broken one; a file damaged afterwards (a
flipped bit, a bad copy) fails the checksum when it is loaded.

Loading never runs code from the file: ``torch.load(weights_only=True)`` unpickles tensors and
plain values (dict, list, tuple, str, numbers, None) only, and refuses anything else.

A checkpoint of ``noamt-train`` names the run that wrote it: ``identity`` (:func:`run_identity`)
holds the run's name, the SHA-256 of its settings less those a resumed launch may change
(:data:`RESUME_MAY_CHANGE`) and the SHA-256 of its tokenizer. :func:`run_differences` tells
whether a checkpoint is a state of a given run; the trainer, ``noamt-evaluate`` and
``noamt-translate`` ask it before they take a checkpoint of a run directory for that run's.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

import torch

from noamt.io import TMP_SUFFIX, write_atomic
from noamt.run_dir import BEST, LAST

log = logging.getLogger(__name__)

CHECKSUM_KEY = "sha256"
TRAIN_WEIGHTS = "train_weights"
_NUMBERED = {"update": re.compile(r"checkpoint_(\d+)\.pt$"), "epoch": re.compile(r"checkpoint_epoch(\d+)\.pt$")}


class _TrainingState(TypedDict):
    model: dict  # the bare model's state_dict (before torch.compile / DDP wrapping): the weights to evaluate
    optimizer: dict
    scaler: dict  # the gradient scaler (fp16)
    step: int  # optimizer updates done
    epoch: int
    best: dict[str, float]  # {"loss": lowest, "bleu": highest} validation scores so far
    best_step: int  # the update whose validation set best[trainer.best_metric] (0: none yet)
    validated_step: int  # the last update validated (-1: none)
    validation_pending: bool  # a stop signal cut the validation of this update short: it runs on resuming
    validations_without_improvement: int
    skipped_updates: int  # updates skipped for a NaN or infinite loss
    data: dict  # position in the batch stream (TokenBudgetBatches.state_dict)
    rng: dict  # every generator's state (noamt.device.rng_state)


class Identity(TypedDict):
    """The ``identity`` entry of a checkpoint (:func:`run_identity`)."""

    run_name: str
    config_sha256: str  # of the settings that identify the run (:func:`identity_settings`)
    tokenizer_sha256: str  # of the tokenizer's JSON


class RunIdentity(TypedDict, total=False):
    """What ties a checkpoint to its run; ``noamt-train`` always writes all three."""

    config: dict  # the resolved run config
    tokenizer: str  # the tokenizer as JSON
    identity: Identity  # computed from the two (run_identity); absent from checkpoints of older noamt


class CheckpointState(_TrainingState, RunIdentity, total=False):
    """What a training checkpoint holds: exactly the keys ``Trainer.state_dict`` writes: the
    training state, the run's identity (:class:`RunIdentity`, given to the trainer by its
    caller), and ``train_weights`` with schedule-free AdamW only. The file adds ``sha256``
    (:data:`CHECKSUM_KEY`), which :func:`load_checkpoint` verifies and removes. An averaged one
    (:func:`average_checkpoints`) also lists the files it averages, ``averaged_from``."""

    train_weights: dict  # schedule-free AdamW only: the weights training resumes from (noamt.optim)


def update_checkpoint_name(step: int) -> str:
    """``checkpoint_<update>.pt``: written every ``trainer.save_interval`` updates."""
    return f"checkpoint_{step}.pt"


def epoch_checkpoint_name(epoch: int) -> str:
    """``checkpoint_epoch<epoch>.pt``: written at the end of an epoch (``trainer.save_every_epoch``)."""
    return f"checkpoint_epoch{epoch}.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or lacks what is needed."""


def content_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint's contents, independent of how torch lays out the file.

    The hash runs over a walk of the nested values: for each dict its length and then each key
    and value in order; for a list or tuple its length and elements; for a tensor its dtype,
    shape and raw bytes (on the CPU, in row-major order); for a str, int, float, bool or None its
    type and ``repr`` (exact for floats). Every item is prefixed by a type tag, so different
    structures cannot produce the same byte stream. The ``sha256`` entry itself is left out.
    """
    digest = hashlib.sha256()

    def feed(tag: bytes, payload: bytes = b"") -> None:
        digest.update(tag + struct.pack("<Q", len(payload)) + payload)

    def walk(value) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous()
            feed(b"T", f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            if tensor.numel():
                digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
        elif isinstance(value, dict):
            feed(b"D", str(len(value)).encode())
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, (list, tuple)):
            feed(b"L" if isinstance(value, list) else b"U", str(len(value)).encode())
            for item in value:
                walk(item)
        elif value is None or isinstance(value, (str, int, float, bool)):
            feed(b"V", f"{type(value).__name__}:{value!r}".encode())
        else:
            raise CheckpointError(f"a checkpoint holds tensors and plain values only, not {type(value).__name__}")

    walk({k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` and its checksum to ``path`` atomically (:func:`noamt.io.write_atomic`)."""
    return save_checkpoints(state, [path])[0]


def save_checkpoints(state: Mapping[str, Any], paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Serialize ``state`` with its ``sha256`` once and write it to every path in ``paths``, in
    order, each atomically."""
    buffer = io.BytesIO()
    torch.save({**state, CHECKSUM_KEY: content_digest(state)}, buffer)
    data = buffer.getbuffer()
    return [_write_checkpoint_file(Path(path), data) for path in paths]


def _write_checkpoint_file(path: Path, data: memoryview) -> Path:
    """:func:`~noamt.io.write_atomic`; a failed write (a full disk) is a one-line CheckpointError."""
    try:
        return write_atomic(path, data)
    except OSError as err:
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise CheckpointError(f"cannot write checkpoint {path}: {err} ({kept})") from err


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a process killed while writing a checkpoint left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".checkpoint*.pt.*{TMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def run_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """The training checkpoints in ``folder``: checkpoint_last.pt first, then checkpoint_best.pt,
    then the numbered ones newest first (averaged or other files are not training states)."""
    folder = Path(folder)
    named = [folder / name for name in (LAST, BEST) if (folder / name).is_file()]
    numbered = numbered_checkpoints(folder, "update")[::-1] + numbered_checkpoints(folder, "epoch")[::-1]
    return named + numbered


def check_new_run(folder: str | os.PathLike, resume: str) -> None:
    """Refuse to start a new run (``resume="none"``) over a checkpoint folder that holds one;
    ``noamt.pipeline.train`` asks once per launch, holding the run's lock."""
    found = run_checkpoints(folder)
    if resume == "none" and found:
        raise FileExistsError(
            f"{found[0]} exists: pass trainer.resume=auto to continue that run, or choose another run_name"
        )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> CheckpointState:
    """Read and verify a checkpoint, without running code from it.

    A missing, unreadable or damaged file (its contents do not match their ``sha256``), one that
    holds anything but tensors and plain values, or one whose model weights hold NaN or infinite
    values (a model that cannot be right, whatever its checksum) is a one-line
    :class:`CheckpointError` naming it. The checksum entry is removed from the returned state.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip().rstrip(".") for line in str(err).splitlines()]
        blocked = next((line for line in lines if "GLOBAL" in line), None)
        if blocked:
            raise CheckpointError(
                f"refused to load {path}: it holds objects other than tensors and plain values, which would "
                f"run code when loaded ({blocked})"
            ) from err
        reason = next((line for line in lines if line.startswith("Unsupported")), _first_line(err))
        raise CheckpointError(
            f"cannot read checkpoint {path}: not a file torch's safe loader reads ({reason})"
        ) from err
    except Exception as err:  # truncated file, not a torch file, ...
        raise CheckpointError(f"cannot read checkpoint {path}: {_first_line(err)}") from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a noamt checkpoint (no 'model' entry)")
    stored = state.pop(CHECKSUM_KEY, None)
    if stored is None:
        raise CheckpointError(f"{path} has no {CHECKSUM_KEY} entry, so its contents cannot be verified")
    if content_digest(state) != stored:
        raise CheckpointError(f"{path} is damaged: its contents do not match the checksum written with them")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path}: 'model' is not a mapping of weight names to tensors")
    require_finite_weights(state["model"], path, "'model'")  # training never saves a NaN model
    if TRAIN_WEIGHTS in state:
        _check_train_weights(path, state)
    return cast(CheckpointState, state)  # what save_checkpoint wrote, as its checksum shows


def require_finite_weights(weights: Mapping[str, Any], source: str | os.PathLike, entry: str = "") -> None:
    """Every floating-point tensor of ``weights`` is finite; otherwise a one-line CheckpointError
    ``<source>: <entry> <name> holds NaN or infinite values`` (a model that cannot be right)."""
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            where = f"{entry} {name}" if entry else name
            raise CheckpointError(f"{source}: {where} holds NaN or infinite values")


def _check_train_weights(path: Path, state: dict) -> None:
    """A schedule-free checkpoint's "train_weights" must hold finite tensors of the same names,
    shapes and dtypes as "model"; otherwise a one-line CheckpointError naming the file."""
    weights, model = state[TRAIN_WEIGHTS], state["model"]
    if not isinstance(weights, dict) or not isinstance(model, dict) or weights.keys() != model.keys():
        raise CheckpointError(f"{path}: '{TRAIN_WEIGHTS}' does not name the tensors of 'model'")
    for name, tensor in weights.items():
        reference = model[name]
        fits = isinstance(tensor, torch.Tensor) and isinstance(reference, torch.Tensor)
        if not (fits and tensor.shape == reference.shape and tensor.dtype == reference.dtype):
            raise CheckpointError(f"{path}: '{TRAIN_WEIGHTS}' {name} does not match its shape and dtype in 'model'")
    require_finite_weights(weights, path, f"'{TRAIN_WEIGHTS}'")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def numbered_checkpoints(folder: str | os.PathLike, kind: str = "update") -> list[Path]:
    """``checkpoint_<update>.pt`` (kind "update") or ``checkpoint_epoch<epoch>.pt`` (kind
    "epoch") files in ``folder``, oldest first."""
    if kind not in _NUMBERED:
        raise ValueError(f"checkpoint kind must be one of {sorted(_NUMBERED)}, got {kind!r}")
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NUMBERED[kind].match(p.name))]
    return [p for _, p in sorted(found)]


def prune_checkpoints(folder: str | os.PathLike, keep_last: int, kind: str = "update") -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints of ``kind``; returns the deleted paths."""
    if keep_last <= 0:
        return []
    stale = numbered_checkpoints(folder, kind)[:-keep_last]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict:
    """Checkpoint whose model weights are the element-wise mean of those in ``paths``.

    theta = (1/n) sum_i theta_i, accumulated in float64; everything else (config, tokenizer,
    identity, step) is taken from the last checkpoint, and the training state (optimizer,
    schedule-free train_weights, RNG, data position) is dropped.

    Refused in one line naming the file (:class:`CheckpointError`): weights that hold NaN or
    infinite values (:func:`require_finite_weights`; the mean of finite values lies between
    them, so the average is finite too), other tensor names, shapes or dtypes than
    the first checkpoint's, and another ``config.model`` or tokenizer than the first
    checkpoint's (checkpoints of several runs average when they share both, as the seeds of one
    setting do).
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    first = Path(paths[0])
    total: dict[str, torch.Tensor] = {}
    reference: CheckpointState | None = None
    last: CheckpointState | None = None
    for path in paths:
        last = load_checkpoint(path)
        model = last["model"]
        require_finite_weights(model, path, "'model'")
        if reference is None:
            reference = last
        else:
            _check_same_model(Path(path), last, first, reference)
        for name, tensor in model.items():
            total[name] = total.get(name, 0) + tensor.to(torch.float64)
    assert last is not None
    weights = last["model"]
    averaged = {name: (t / len(paths)).to(weights[name].dtype) for name, t in total.items()}
    keep = {k: v for k, v in last.items() if k not in {"model", TRAIN_WEIGHTS, "optimizer", "rng", "data"}}
    return {**keep, "model": averaged, "averaged_from": [str(p) for p in paths]}


def _check_same_model(path: Path, state: CheckpointState, first: Path, reference: CheckpointState) -> None:
    """``state`` (of ``path``) holds the same model as ``reference`` (of ``first``): the same
    config.model and tokenizer (where both record them) and tensors of the same names, shapes
    and dtypes; otherwise a one-line CheckpointError naming both files and what differs."""
    model_cfg, reference_cfg = _model_config(state), _model_config(reference)
    if model_cfg != reference_cfg:
        changes = config_differences({"model": reference_cfg or {}}, {"model": model_cfg or {}})
        raise CheckpointError(
            f"{path} is another model than {first} (config.model: {'; '.join(changes) or 'one of them has none'})"
        )
    tokenizer, reference_tokenizer = state.get("tokenizer"), reference.get("tokenizer")
    if tokenizer != reference_tokenizer:
        raise CheckpointError(
            f"{path} has another tokenizer than {first} (sha256 {_short_sha256(tokenizer)} vs "
            f"{_short_sha256(reference_tokenizer)})"
        )
    weights, reference_weights = state["model"], reference["model"]
    if weights.keys() != reference_weights.keys():
        extra = sorted(weights.keys() - reference_weights.keys())
        missing = sorted(reference_weights.keys() - weights.keys())
        named = f"'model' {extra[0]} is not in it" if extra else f"it has no 'model' {missing[0]}"
        raise CheckpointError(f"{path} has other tensors than {first}: {named}")
    for name, tensor in weights.items():
        other = reference_weights[name]
        if tensor.shape != other.shape or tensor.dtype != other.dtype:
            raise CheckpointError(
                f"{path}: 'model' {name} is {_describe(tensor)}, in {first} {_describe(other)}: "
                "they are not checkpoints of one model"
            )


def _model_config(state: Mapping[str, Any]) -> Any:
    config = state.get("config")
    return config.get("model") if isinstance(config, dict) else None


def _describe(tensor: torch.Tensor) -> str:
    return f"{list(tensor.shape)} {str(tensor.dtype).removeprefix('torch.')}"


def is_training_checkpoint_name(name: str) -> bool:
    """``name`` is that of a file a run's training writes: checkpoint_last.pt,
    checkpoint_best.pt, checkpoint_<update>.pt or checkpoint_epoch<epoch>.pt."""
    return name in (LAST, BEST) or any(pattern.fullmatch(name) for pattern in _NUMBERED.values())


def check_average_output(output: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> None:
    """Where an average may be written: not over a run's training checkpoints (whatever folder
    they are in: :func:`is_training_checkpoint_name`), where resuming, evaluating a run or
    another average would take it for a state of training, and not over one of ``inputs``; a
    one-line CheckpointError naming the output otherwise."""
    output = Path(output)
    if is_training_checkpoint_name(output.name):
        raise CheckpointError(
            f"output {output}: {output.name} is the name of a training checkpoint, which an average must "
            "not replace or pass for; write it to another name (default: checkpoint_avg.pt)"
        )
    for path in map(Path, inputs):
        if output.resolve() == path.resolve():
            raise CheckpointError(f"output {output}: it is one of the checkpoints averaged; write to another file")


# ----------------------------------------------------------------------------- run identity
# Settings that may differ between two launches of one run without changing what it computes:
# where things are, how progress is shown, which device trains. A study compares a stored run's
# config with the one asked for now without them (noamt_study.collect).
RERUN_MAY_CHANGE: tuple[str, ...] = (
    "trainer.resume",
    "trainer.progress",
    "trainer.tensorboard",
    "trainer.log_interval",
    "trainer.prefetch",
    "device",
    "data.dir",
    "data.source",
    "data.release",
    "data.hub_split_names",
    "tokenizer.cache_dir",
)
# Settings a resumed launch may change besides those: the run's directory name, how long it
# trains (and so a decaying schedule's total_steps), how many batches one update accumulates
# (kept constant across a change of GPUs), when it validates and saves, what it validates and
# evaluates. Everything else (model, optimizer, schedule, seed, data, tokenizer, batch size)
# identifies the run.
RESUME_MAY_CHANGE: tuple[str, ...] = RERUN_MAY_CHANGE + (
    "run_name",
    "trainer.max_steps",
    "trainer.max_epochs",
    "schedule.total_steps",
    "trainer.update_freq",
    "trainer.max_nonfinite_updates",
    "trainer.val_interval",
    "trainer.val_every_epoch",
    "trainer.validate_at_start",
    "trainer.val_bleu",
    "trainer.val_bleu_max_examples",
    "trainer.best_metric",
    "trainer.patience",
    "trainer.save_interval",
    "trainer.keep_last",
    "trainer.save_every_epoch",
    "trainer.keep_last_epochs",
    "data.valid_split",
    "data.max_eval_examples",
    "data.test_splits",
)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{dotted key: value}`` of a nested config; tuples become lists (as in YAML and JSON)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_config(value, path + "."))
        else:
            out[path] = list(value) if isinstance(value, tuple) else value
    return out


def _under(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_differences(stored: dict, wanted: dict, ignore: Sequence[str] = ()) -> list[str]:
    """``key: stored -> wanted`` for each dotted key whose value differs (keys under ``ignore`` skipped)."""
    a, b = flatten_config(stored), flatten_config(wanted)
    keys = sorted(k for k in a.keys() | b.keys() if not _under(k, ignore))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def identity_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that identify a run: its resolved config, flattened, without the keys under
    :data:`RESUME_MAY_CHANGE`."""
    return {k: v for k, v in flatten_config(config).items() if not _under(k, RESUME_MAY_CHANGE)}


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _short_sha256(text: str | None) -> str:
    return "none" if text is None else text_sha256(text)[:12]


def run_identity(config: Mapping[str, Any], tokenizer: str) -> Identity:
    """The ``identity`` entry ``noamt-train`` writes in each checkpoint of a run with resolved
    ``config`` and ``tokenizer`` (JSON): the run's name, the SHA-256 of its
    :func:`identity_settings` as canonical JSON (sorted keys) and that of the tokenizer."""
    settings = json.dumps(identity_settings(config), sort_keys=True, separators=(",", ":"), default=repr)
    return {
        "run_name": str(config.get("run_name", "")),
        "config_sha256": text_sha256(settings),
        "tokenizer_sha256": text_sha256(tokenizer),
    }


def checkpoint_identity(state: Mapping[str, Any], path: str | os.PathLike) -> Identity | None:
    """The checkpoint's ``identity``; for one written before noamt recorded it, computed from its
    ``config`` and ``tokenizer`` (a notice says so); None when it has neither."""
    identity = _identity(state)
    if identity is not None and "identity" not in state:
        log.info("%s has no 'identity' entry (an older checkpoint): its run is told by its config and tokenizer", path)
    return identity


def _identity(entries: Mapping[str, Any]) -> Identity | None:
    """``entries``' own ``identity``, else the one their ``config`` and ``tokenizer`` give."""
    stored = entries.get("identity")
    if isinstance(stored, dict):
        return cast(Identity, stored)
    config, tokenizer = entries.get("config"), entries.get("tokenizer")
    return run_identity(config, tokenizer) if isinstance(config, dict) and isinstance(tokenizer, str) else None


def run_differences(state: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    """Why the checkpoint ``state`` is not a state of the run whose ``config`` and
    ``tokenizer`` (and ``identity``) are ``run``: ``key: checkpoint -> run`` for each identifying
    setting (:func:`identity_settings`) both configs hold and that differs, and ``tokenizer:
    sha256 a -> b`` when the tokenizers differ; empty when it is that run's, or when either
    lacks a config (nothing to tell them apart by).

    Equal identities settle it at once; otherwise the configs are compared key by key, so a
    setting that only one of them knows (added to noamt since the checkpoint was written) is
    no difference. A checkpoint without an ``identity`` entry is told by its config and tokenizer
    (:func:`checkpoint_identity` gives the notice)."""
    stored, current = _identity(state), _identity(run)
    same = ("config_sha256", "tokenizer_sha256")
    if stored is not None and current is not None and all(stored.get(k) == current.get(k) for k in same):
        return []
    changes = []
    if isinstance(state.get("config"), dict) and isinstance(run.get("config"), dict):
        a, b = identity_settings(state["config"]), identity_settings(run["config"])
        changes = [f"{k}: {a[k]!r} -> {b[k]!r}" for k in sorted(a.keys() & b.keys()) if a[k] != b[k]]
    tokenizers = (_tokenizer_sha256(state, stored), _tokenizer_sha256(run, current))
    if None not in tokenizers and tokenizers[0] != tokenizers[1]:
        changes.append(f"tokenizer: sha256 {str(tokenizers[0])[:12]} -> {str(tokenizers[1])[:12]}")
    return changes


def _tokenizer_sha256(entries: Mapping[str, Any], identity: Identity | None) -> str | None:
    """The SHA-256 of the tokenizer that ``entries`` record (in their identity, or as JSON)."""
    if identity is not None:
        return identity["tokenizer_sha256"]
    tokenizer = entries.get("tokenizer")
    return text_sha256(tokenizer) if isinstance(tokenizer, str) else None


def run_label(state: Mapping[str, Any]) -> str:
    """``run '<run_name>' (seed <seed>)`` of a checkpoint or a run's entries (``config``)."""
    config = _dict(state.get("config"))
    return f"run {config.get('run_name', '?')!r} (seed {_dict(config.get('trainer')).get('seed', '?')})"


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def peek_run_entries(path: str | os.PathLike) -> RunIdentity | None:
    """The ``config``, ``tokenizer`` and ``identity`` of the checkpoint at ``path``, read without
    its tensors (memory-mapped) and without verifying its checksum: a reference to compare with,
    not a state to use. None when the file cannot be read that way."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable, damaged, not a zip-format torch file: no reference
        return None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        return None
    return cast(RunIdentity, {k: state[k] for k in ("config", "tokenizer", "identity") if k in state})


class Checkpointer:
    """Which checkpoint files a run writes, when, and which run it resumes.

    ``save`` writes checkpoint_last.pt whenever the state changed (a new update, or a validation
    after the update was saved), checkpoint_<step>.pt every ``save_interval`` updates
    and checkpoint_epoch<E>.pt at epoch ends when ``save_every_epoch`` (each kind rotated to its
    ``keep_*`` count), and checkpoint_best.pt when asked; checkpoint_last.pt is written after the
    others, and the state is serialized once for all of them. Only the main process (``enabled``) writes.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        save_interval: int,
        keep_last: int,
        save_every_epoch: bool,
        keep_last_epochs: int,
        enabled: bool = True,
    ):
        self.folder = Path(folder)
        self.save_interval, self.keep_last = save_interval, keep_last
        self.save_every_epoch, self.keep_last_epochs = save_every_epoch, keep_last_epochs
        self.enabled = enabled
        self._saved_step = -1

    def save(
        self,
        state: Callable[[], Mapping[str, Any]],
        step: int,
        epoch: int,
        best: bool = False,
        epoch_end: bool = False,
        validated: bool = False,
    ) -> None:
        """Write what is due at update ``step`` of epoch ``epoch``; ``state()`` builds the contents.
        ``validated``: a validation changed the state (best scores, patience) since the last save."""
        if not self.enabled:
            return
        if self._saved_step == step and not (best or epoch_end or validated):
            return
        # checkpoint_last.pt last: once it holds update `step`, every file due at `step` is written,
        # so a kill between the writes leaves it behind (the run resumes earlier and writes them
        # again), never checkpoint_best.pt behind the best it records or a numbered file missing.
        names = [BEST] if best else []
        if self.save_interval > 0 and step % self.save_interval == 0 and self._saved_step != step:
            names.append(update_checkpoint_name(step))
        if epoch_end and self.save_every_epoch:
            names.append(epoch_checkpoint_name(epoch))
        names.append(LAST)
        save_checkpoints(state(), [self.folder / name for name in names])
        self._saved_step = step
        prune_checkpoints(self.folder, self.keep_last, kind="update")
        prune_checkpoints(self.folder, self.keep_last_epochs, kind="epoch")

    def resume_state(self, resume: str) -> tuple[Path, CheckpointState] | None:
        """The checkpoint ``trainer.resume`` names, loaded and verified; None to start fresh.

        ``none`` starts fresh (the launch has refused a folder that holds checkpoints:
        :func:`check_new_run`); a path loads that file;
        ``auto`` loads checkpoint_last.pt, and when it is damaged or unreadable the checkpoint of
        the latest update among the run's other checkpoints that verify, saying so in one line.
        ``auto`` on a folder without checkpoints starts fresh.
        """
        if resume == "none":
            return None
        if resume != "auto":
            return Path(resume), load_checkpoint(resume, map_location="cpu")
        candidates = run_checkpoints(self.folder)
        failures, loaded = [], []
        for path in candidates:
            try:
                loaded.append((path, load_checkpoint(path, map_location="cpu")))
            except CheckpointError as err:
                failures.append(str(err))
            if loaded and loaded[0][0].name == LAST:
                return loaded[0]  # checkpoint_last.pt verifies: the others need not be read
        if not candidates:
            return None
        if not loaded:
            raise CheckpointError(f"no checkpoint in {self.folder} can be resumed: {'; '.join(failures)}")
        path, state = max(loaded, key=lambda item: item[1].get("step", 0))
        log.warning(
            "%s; resuming from %s (update %s), the latest checkpoint that verifies",
            failures[0],
            path.name,
            state.get("step"),
        )
        return path, state
