"""Machine-readable training records: ``metrics.jsonl`` and TensorBoard events."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path


class MetricsWriter:
    """Append one JSON object per record to ``metrics.jsonl`` and mirror scalars to TensorBoard.

    Every record carries ``step`` (optimizer updates so far), ``kind`` (``train``, ``valid``,
    ...) and ``time`` (Unix seconds). Files are opened in append mode so a resumed run continues
    the same log.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self._file = self.path.open("a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def write(self, kind: str, step: int, **values) -> dict:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{name}", value, step)
        return record

    def drop_after(self, step: int) -> int:
        """Remove the records of updates after ``step`` (and any torn last line), e.g. those a
        killed run wrote after its last checkpoint, so that a resumed run does not repeat them.
        Returns how many records were dropped."""
        self._file.close()
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
        dropped = sum(1 for line in lines if line.strip()) - len(keep)
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(keep), encoding="utf-8")
            os.replace(tmp, self.path)
        self._file = self.path.open("a", encoding="utf-8")
        return dropped

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict]:
    """All records of a ``metrics.jsonl`` file, in order."""
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _step_of(line: str) -> int | None:
    """The step of one metrics.jsonl line; None for a blank or torn line."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
