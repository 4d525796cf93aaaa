"""Runs whose checkpoints are gone before their evaluation was complete: a study kept as evidence
(records and scores in git, checkpoints not) that goes on on another machine needs a run's
checkpoint_last.pt to score a split it has not scored yet (the test sets of a tuning run that
became a chosen peak).

Such a run is trained again from scratch, with the same config and seed. Its first training is
set aside first, in ``<run>/first_training/`` (metrics.jsonl, eval/, tensorboard/ and a copy of
.hydra/, whose config the second training is checked against and then rewrites), and once the
second training is finished ``<run>/retraining.json`` records whether it repeats the first: every
training and validation record equal in every field both trainings record (a newer noamt may
record more), apart from the clock (``time``, ``tokens_per_s``). On one machine type at a fixed
thread count the two are bit for bit the same; a difference names the first record and field
where they part.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from noamt.io import write_atomic
from noamt.metrics import read_metrics
from noamt.run_dir import RunDir

FIRST_TRAINING = "first_training"
RETRAINING_FILE = "retraining.json"
SET_ASIDE = ("metrics.jsonl", "eval", "tensorboard")
CLOCK_FIELDS = frozenset({"time", "tokens_per_s"})


@dataclass(frozen=True)
class Retraining:
    """How a second training of a run compares with its first."""

    identical: bool
    records_compared: int
    first_difference: str | None  # "<kind> record at update <step>: <field> <first> -> <second>"


def set_aside(run_dir: Path) -> Path:
    """Move the run's records, scores and tensorboard events into ``first_training/`` so that its
    trainer starts fresh; returns that folder. A run set aside before keeps its first training
    (the one the study's records came from): what is there now is discarded."""
    (run_dir / RETRAINING_FILE).unlink(missing_ok=True)
    folder = run_dir / FIRST_TRAINING
    keep = not folder.exists()
    folder.mkdir(exist_ok=True)
    if keep and (run_dir / ".hydra").is_dir():
        shutil.copytree(run_dir / ".hydra", folder / ".hydra")
    for name in SET_ASIDE:
        source = run_dir / name
        if not source.exists():
            continue
        if keep:
            source.rename(folder / name)
        elif source.is_dir():
            shutil.rmtree(source)
        else:
            source.unlink()
    return folder


def comparable_records(path: Path) -> dict[tuple[str, int], dict]:
    """The training and validation records of a metrics.jsonl, the last one per (kind, update)
    (a resumed session repeats the updates after its checkpoint), without the clock fields."""
    records = {}
    for record in read_metrics(path):
        if record["kind"] in ("train", "valid"):
            records[record["kind"], record["step"]] = {k: v for k, v in record.items() if k not in CLOCK_FIELDS}
    return records


def compare_trainings(first: Path, second: Path) -> Retraining:
    """Compare two metrics.jsonl of the same run, record by record in update order, on the
    fields both records hold."""
    a, b = comparable_records(first), comparable_records(second)
    for key in sorted(a.keys() | b.keys(), key=lambda k: (k[1], k[0])):
        kind, step = key
        if key not in a or key not in b:
            where = "the first" if key not in a else "the second"
            return Retraining(False, len(a), f"{kind} record at update {step}: missing in {where} training")
        for field in sorted(a[key].keys() & b[key].keys()):
            if a[key][field] != b[key][field]:
                change = f"{field} {a[key][field]!r} -> {b[key][field]!r}"
                return Retraining(False, len(a), f"{kind} record at update {step}: {change}")
    return Retraining(True, len(a), None)


def record_retraining(run_dir: Path) -> Retraining:
    """Compare the run's second training with the first set aside and write retraining.json."""
    result = compare_trainings(run_dir / FIRST_TRAINING / "metrics.jsonl", RunDir.at(run_dir).metrics)
    write_atomic(run_dir / RETRAINING_FILE, json.dumps(asdict(result), indent=2) + "\n")
    return result


def retrained(run_dirs: Sequence[Path]) -> list[Path]:
    """The runs of ``run_dirs`` that hold a first training set aside."""
    return [d for d in run_dirs if (d / FIRST_TRAINING / "metrics.jsonl").is_file()]


def report_note(run_dir: Path) -> str:
    """What the report's table of runs adds to a retrained run's name ("" for the others)."""
    path = run_dir / RETRAINING_FILE
    if not path.is_file():
        return ""
    result = Retraining(**json.loads(path.read_text(encoding="utf-8")))
    if result.identical:
        return " (trained again: the same records)"
    return f" (trained again: differs at the {result.first_difference})"


def describe(run_dir: Path, result: Retraining) -> str:
    """One line on a retrained run, for the study's log."""
    if result.identical:
        return (
            f"[compare] {run_dir.name}: trained again (its checkpoints were gone before its evaluation); "
            f"all {result.records_compared} training and validation records equal the first training's"
        )
    return (
        f"[compare] {run_dir.name}: trained again (its checkpoints were gone before its evaluation); "
        f"it differs from the first training at the {result.first_difference}"
    )
