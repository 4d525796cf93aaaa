"""Atomic checkpoint files: save, load, rotate, average.

A checkpoint is one ``torch.save`` file holding a :class:`CheckpointState` dict. It is written
to a temporary file in the same folder, flushed to disk and renamed over the target, so a crash
or kill at any moment leaves either the old or the new file, never a broken one.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypedDict

import torch

LAST, BEST = "checkpoint_last.pt", "checkpoint_best.pt"
TMP_SUFFIX = ".tmp"
_NUMBERED = {"update": re.compile(r"checkpoint_(\d+)\.pt$"), "epoch": re.compile(r"checkpoint_epoch(\d+)\.pt$")}


class CheckpointState(TypedDict):
    """What a training checkpoint holds (``Trainer.state_dict``). An averaged one
    (:func:`average_checkpoints`) also lists the files it averages, ``averaged_from``."""

    model: dict  # the bare model's state_dict (before torch.compile / DDP wrapping)
    optimizer: dict
    scaler: dict  # the gradient scaler (fp16)
    step: int  # optimizer updates done
    epoch: int
    best: dict[str, float]  # {"loss": lowest, "bleu": highest} validation scores so far
    validations_without_improvement: int
    skipped_updates: int  # updates skipped for a NaN or infinite loss
    data: dict  # position in the batch stream (TokenBudgetBatches.state_dict)
    rng: dict  # every generator's state (noamt.device.rng_state)
    config: dict  # the resolved run config
    tokenizer: str  # the tokenizer as JSON


def update_checkpoint_name(step: int) -> str:
    """``checkpoint_<update>.pt``: written every ``trainer.save_interval`` updates."""
    return f"checkpoint_{step}.pt"


def epoch_checkpoint_name(epoch: int) -> str:
    """``checkpoint_epoch<epoch>.pt``: written at the end of an epoch (``trainer.save_every_epoch``)."""
    return f"checkpoint_epoch{epoch}.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or lacks what is needed."""


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    return save_checkpoints(state, [path])[0]


def save_checkpoints(state: dict, paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Serialize ``state`` once and write it to every path in ``paths``, each atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getbuffer()
    return [_write_atomic(Path(path), data) for path in paths]


def _write_atomic(path: Path, data: memoryview) -> Path:
    """Temporary file, fsync, rename; a failed write (a full disk) is a one-line CheckpointError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path}: {err}") from err
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the previous {path.name} is intact" if path.exists() else f"no {path.name} was written"
        raise CheckpointError(f"cannot write checkpoint {path}: {err} ({kept})") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a process killed while writing a checkpoint left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(f".checkpoint*.pt.*{TMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def check_new_run(folder: str | os.PathLike, resume: str) -> None:
    """Refuse to start a new run (``resume="none"``) over a checkpoint folder that holds one."""
    last = Path(folder) / LAST
    if resume == "none" and last.exists():
        raise FileExistsError(
            f"{last} exists: pass trainer.resume=auto to continue that run, or choose another run_name"
        )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> CheckpointState:
    """Read a checkpoint; a missing or unreadable file is a one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated file, not a torch file, ...
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {err}") from err
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a noamt checkpoint (no 'model' entry)")
    return state


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
    step) is taken from the last checkpoint, and the optimizer state is dropped.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        model = load_checkpoint(path)["model"]
        if total and model.keys() != total.keys():
            raise CheckpointError(f"{path} has different parameters from {paths[0]}")
        for name, tensor in model.items():
            total[name] = total.get(name, 0) + tensor.to(torch.float64)
    last = load_checkpoint(paths[-1])
    reference = last["model"]
    averaged = {name: (t / len(paths)).to(reference[name].dtype) for name, t in total.items()}
    keep = {k: v for k, v in last.items() if k not in {"model", "optimizer", "rng", "data"}}
    return {**keep, "model": averaged, "averaged_from": [str(p) for p in paths]}


def config_differences(stored: dict, wanted: dict, ignore: Sequence[str] = ()) -> list[str]:
    """``key: stored -> wanted`` for each dotted key whose value differs (keys under ``ignore`` skipped)."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in d.items():
            path = f"{prefix}{key}"
            out.update(flat(value, path + ".") if isinstance(value, dict) else {path: value})
        return out

    a, b = flat(stored), flat(wanted)
    skip = tuple(ignore)
    keys = sorted(k for k in a.keys() | b.keys() if not any(k == i or k.startswith(i + ".") for i in skip))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


class Checkpointer:
    """Which checkpoint files a run writes, when, and which run it resumes.

    ``save`` writes checkpoint_last.pt once per update, checkpoint_<step>.pt every
    ``save_interval`` updates and checkpoint_epoch<E>.pt at epoch ends when ``save_every_epoch``
    (each kind rotated to its ``keep_*`` count), and checkpoint_best.pt when asked; the state is
    serialized once for all of them. Only the main process (``enabled``) writes.
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
        self, state: Callable[[], dict], step: int, epoch: int, best: bool = False, epoch_end: bool = False
    ) -> None:
        """Write what is due at update ``step`` of epoch ``epoch``; ``state()`` builds the contents."""
        if not self.enabled:
            return
        names = []
        if self._saved_step != step:
            names.append(LAST)
            if self.save_interval > 0 and step % self.save_interval == 0:
                names.append(update_checkpoint_name(step))
        if epoch_end and self.save_every_epoch:
            names.append(epoch_checkpoint_name(epoch))
        if best:
            names.append(BEST)
        if not names:
            return
        save_checkpoints(state(), [self.folder / name for name in names])
        self._saved_step = step
        prune_checkpoints(self.folder, self.keep_last, kind="update")
        prune_checkpoints(self.folder, self.keep_last_epochs, kind="epoch")

    def resume_path(self, resume: str) -> Path | None:
        """The checkpoint ``trainer.resume`` names: ``none`` (refusing a folder that holds
        checkpoints), ``auto`` (checkpoint_last.pt if there is one) or a path; None to start fresh."""
        if resume == "none":
            check_new_run(self.folder, resume)
            return None
        path = self.folder / LAST if resume == "auto" else Path(resume)
        return None if resume == "auto" and not path.exists() else path
