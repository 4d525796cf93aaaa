"""Machine-readable training records: ``metrics.jsonl`` and TensorBoard events."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from noamt.io import write_atomic
from noamt.run_dir import RunDir

DAMAGED_SUFFIX = ".damaged"  # metrics.jsonl.damaged: lines set aside on resume


class MetricsError(ValueError):
    """A metrics file that cannot be read or written; the message names it."""


class MetricsWriter:
    """Append one JSON object per record to ``metrics.jsonl`` and mirror scalars to TensorBoard.

    Every record carries ``step`` (optimizer updates so far), ``kind`` (``train``, ``valid``,
    ...) and ``time`` (Unix seconds). Files are opened in append mode so a resumed run continues
    the same log.
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        run = RunDir.at(run_dir)
        self.path = run.metrics
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as err:
            raise MetricsError(f"cannot write {self.path}: {err.strerror or err}") from err
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run.tensorboard))

    def write(self, kind: str, step: int, **values) -> dict:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        if self._tb is not None:
            for name, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{name}", value, step)
        return record

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def parse_record(line: bytes) -> dict | None:
    """One metrics.jsonl line as a record: a JSON object with a str ``kind``, a non-negative
    int ``step`` and a finite ``time``; None for anything else (a torn or damaged line)."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    kind, step, stamp = record.get("kind"), record.get("step"), record.get("time")
    valid = (
        isinstance(kind, str)
        and type(step) is int
        and step >= 0
        and isinstance(stamp, (int, float))
        and not isinstance(stamp, bool)
        and math.isfinite(stamp)
    )
    return record if valid else None


def _read_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MetricsError(f"cannot read {path}: {err.strerror or err}") from err
    return [line for line in data.split(b"\n") if line.strip()]


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file, in order, leaving out lines that are not records
    (:func:`parse_record`; a run killed while writing leaves a torn last line)."""
    return [r for line in _read_lines(Path(path)) if (r := parse_record(line)) is not None]


def keep_records_until(path: str | Path, step: int) -> tuple[int, int]:
    """Rewrite ``metrics.jsonl`` with only its records of updates up to ``step`` (all records go
    when ``step`` is negative), e.g. before a run resumes from its checkpoint at ``step``; lines
    that are not records are appended to ``metrics.jsonl.damaged`` rather than lost. Returns
    (records dropped, lines set aside); the file is untouched when both are 0."""
    path = Path(path)
    if not path.exists():
        return 0, 0
    lines = _read_lines(path)
    parsed = [(line, parse_record(line)) for line in lines]
    keep = [line for line, record in parsed if record is not None and record["step"] <= step]
    damaged = [line for line, record in parsed if record is None]
    dropped = len(lines) - len(keep) - len(damaged)
    if damaged:
        with path.with_name(path.name + DAMAGED_SUFFIX).open("ab") as f:
            f.write(b"".join(line + b"\n" for line in damaged))
    if dropped or damaged:
        write_atomic(path, b"".join(line + b"\n" for line in keep))
    return dropped, len(damaged)
