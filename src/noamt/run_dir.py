"""The run directory: the one place that names what a run of ``noamt-train`` keeps where.

    <run>/
      .hydra/config.yaml      the resolved config of the launch (Hydra writes it)
      train.log               the log
      metrics.jsonl           one JSON record per log window, validation and session
      tensorboard/            TensorBoard events
      tokenizer.json          the run's BPE model
      train.lock              held by the trainer while it runs
      checkpoints/            checkpoint_last.pt, checkpoint_best.pt, checkpoint_<update>.pt, ...
      eval/                   noamt-evaluate's results.json and translations of the run

Every reader and writer of these paths goes through :class:`RunDir`, so a name is spelt once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS = "checkpoints"
LAST = "checkpoint_last.pt"
BEST = "checkpoint_best.pt"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = "train.lock"
EVAL_DIR = "eval"
HYDRA_CONFIG = Path(".hydra") / "config.yaml"


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is read or created by naming them)."""

    path: Path

    @classmethod
    def at(cls, path: str | os.PathLike) -> RunDir:
        return cls(Path(path))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> RunDir | None:
        """The run a checkpoint file belongs to: the folder above its ``checkpoints/``; None for a
        file kept elsewhere."""
        folder = Path(checkpoint).parent
        return cls(folder.parent) if folder.name == CHECKPOINTS else None

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last(self) -> Path:
        """The state after the latest update: what ``trainer.resume=auto`` continues."""
        return self.checkpoints / LAST

    @property
    def best(self) -> Path:
        """The state with the lowest validation loss so far."""
        return self.checkpoints / BEST

    @property
    def tokenizer(self) -> Path:
        return self.path / TOKENIZER_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_DIR

    @property
    def lock(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def eval_dir(self) -> Path:
        return self.path / EVAL_DIR

    @property
    def hydra_config(self) -> Path:
        return self.path / HYDRA_CONFIG

    def model_checkpoint(self) -> Path | None:
        """The checkpoint that stands for the run's model: checkpoint_best.pt, else
        checkpoint_last.pt; None when neither exists."""
        return next((p for p in (self.best, self.last) if p.is_file()), None)
