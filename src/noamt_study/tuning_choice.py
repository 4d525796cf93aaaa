"""The peaks ``--tune`` chose, kept in ``<out>/tuning.json`` from the moment the grid is done.

The choice is made once, on the validation scores the grid's runs had when the last of them was
evaluated. Later calls (the seeds, the report) read it back instead of choosing again: a grid run
trained a second time (:mod:`noamt_study.retrain`) scores a little differently, and a protocol
whose choice could move after its seeds were trained would not be the protocol it claims. A
schedule the file does not hold yet (one added to ``--schedules``) is tuned and added.

The file::

    {"criterion": "bleu", "tune_seeds": [1], "lr_scales": [0.5, 1, 2, 4],
     "grids": {"noam": [0.5, 1, 2, 4], ...}, "chosen": {"noam": 2.0, ...},
     "validation": {"noam-x2": 30.81, ...}}

``validation``: per grid setting, the score the choice was made on (mean validation BLEU, or with
criterion ``loss`` the mean validation loss at the budget, over the tuning seeds).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from noamt.io import write_atomic
from noamt_study.collect import TUNING_CRITERIA, CompareError, SettingSummary

CHOICE_FILE = "tuning.json"


@dataclass(frozen=True)
class TuningChoice:
    """Each schedule's grid of peak scales, its chosen scale, and the scores it was chosen on."""

    criterion: str
    tune_seeds: list[int]
    lr_scales: list[float]  # the grid every schedule started from (--lr-scales)
    grids: dict[str, list[float]]  # per schedule, the scales trained (grown past an edge)
    chosen: dict[str, float]
    validation: dict[str, float]  # setting -> its criterion score when chosen

    def merged(self, other: TuningChoice) -> TuningChoice:
        """This choice with ``other``'s schedules added (its own kept where both hold one)."""
        return TuningChoice(
            self.criterion,
            self.tune_seeds,
            self.lr_scales,
            {**other.grids, **self.grids},
            {**other.chosen, **self.chosen},
            {**other.validation, **self.validation},
        )


def validation_score(s: SettingSummary, criterion: str) -> float:
    """The figure the criterion chooses on, as the report shows it: mean validation BLEU, or mean
    validation loss at the budget."""
    return s.scores["valid"]["bleu"].mean if criterion == "bleu" else s.final_valid_loss.mean


def read_choice(out: Path, criterion: str, tune_seeds: list[int], lr_scales: list[float]) -> TuningChoice | None:
    """The choice kept in ``out``, None if there is none yet; a file written for another criterion,
    other tuning seeds or another first grid is refused in one line (its choice is not this
    command's), as is a file that does not hold a choice."""
    path = out / CHOICE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        choice = TuningChoice(
            criterion=str(data["criterion"]),
            tune_seeds=[int(s) for s in data["tune_seeds"]],
            lr_scales=[float(x) for x in data["lr_scales"]],
            grids={str(k): [float(x) for x in v] for k, v in data["grids"].items()},
            chosen={str(k): float(v) for k, v in data["chosen"].items()},
            validation={str(k): float(v) for k, v in data["validation"].items()},
        )
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise CompareError(
            f"{path}: not a tuning choice ({type(err).__name__}: {err}); delete it to choose again"
        ) from err
    _check(choice, path)
    asked = {"criterion": criterion, "tune_seeds": sorted(tune_seeds), "lr_scales": sorted(lr_scales)}
    kept = {
        "criterion": choice.criterion,
        "tune_seeds": sorted(choice.tune_seeds),
        "lr_scales": sorted(choice.lr_scales),
    }
    for key, value in asked.items():
        if kept[key] != value:
            raise CompareError(
                f"{path}: the peaks were chosen with {key} {kept[key]}, this command asks for {value}; "
                "use another --out, or delete the file to choose again"
            )
    return choice


def _check(choice: TuningChoice, path: Path) -> None:
    """Every chosen scale in its schedule's grid, every number finite and the criterion known."""
    if choice.criterion not in TUNING_CRITERIA:
        raise CompareError(f"{path}: criterion {choice.criterion!r} is not one of {', '.join(TUNING_CRITERIA)}")
    for name, scale in choice.chosen.items():
        grid = choice.grids.get(name, [])
        if scale not in grid:
            raise CompareError(f"{path}: chosen {name} x{scale:g} is not in its grid {grid}")
    numbers = [*choice.lr_scales, *choice.chosen.values(), *choice.validation.values()]
    numbers += [x for grid in choice.grids.values() for x in grid]
    if not all(math.isfinite(x) for x in numbers):
        raise CompareError(f"{path}: holds a number that is not finite")


def write_choice(out: Path, choice: TuningChoice) -> Path:
    return write_atomic(out / CHOICE_FILE, json.dumps(asdict(choice), indent=2) + "\n")
