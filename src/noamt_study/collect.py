"""Reading a study's runs back: their state (new, partial, finished), whether a stored run was
trained with the config asked for now, each run's training log and evaluation, and the runs of a
setting (schedule and peak) summarized over their seeds.

Every run is evaluated at its last checkpoint, i.e. after exactly the budgeted number of updates.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from noamt.checkpoint import RERUN_MAY_CHANGE, CheckpointError, config_differences, load_checkpoint, run_checkpoints
from noamt.cli.config import read_yaml_config, resolved_settings, saved_train_config
from noamt.data import read_lines
from noamt.likelihood import read_sentence_nll
from noamt.metrics import read_metrics
from noamt.results import RESULTS_FILE, EvaluationResults, SplitResults, read_results_json
from noamt.run_dir import LAST, RunDir
from noamt.schedules import noam_peak
from noamt.yaml_files import YamlRefused
from noamt_study.plan import Job
from noamt_study.stats import Summary, summarize

log = logging.getLogger(__name__)

SCORED_METRICS = ("bleu", "chrf", "nll")  # nll: the references' likelihood per token, where evaluated
CONVERGENCE_TAIL = 0.2  # the last fifth of the budget: was validation loss still falling there?
CONVERGENCE_TOLERANCE = 0.002  # a relative drop above 0.2% counts as still falling
IGNORED_CHANGES = RERUN_MAY_CHANGE  # may differ between a stored run and a re-run without changing what it computes


class CompareError(Exception):
    """A problem the user can fix; reported as one line."""


# ----------------------------------------------------------------------------- run state
@dataclass
class TrainingLog:
    """What metrics.jsonl says about the current training of a run (from its last fresh start)."""

    info: dict  # the "run" record: schedule, schedule_params, peak_lr, peak_step, ...
    valid: list[dict]  # "valid" records, one per step (the latest, after a resume), by step
    step: int  # the last update recorded
    end: dict | None  # the final "end" record, when the last session ended
    wall_time_s: float  # sum over sessions of (last record time - "run" record time)
    hosts: list[str]  # each session's host, in order, once each ("not recorded" by older trainers)


def read_training(run_dir: Path) -> TrainingLog | None:
    """The run's training log, or None when it has no metrics yet."""
    path = RunDir.at(run_dir).metrics
    records = read_metrics(path) if path.is_file() else []
    starts = [i for i, r in enumerate(records) if r["kind"] == "run" and not r.get("resumed")]
    if not starts:
        return None
    records = records[starts[-1] :]
    sessions = [i for i, r in enumerate(records) if r["kind"] == "run"] + [len(records)]
    wall = sum(records[b - 1]["time"] - records[a]["time"] for a, b in zip(sessions, sessions[1:], strict=False))
    valid = {r["step"]: r for r in records if r["kind"] == "valid"}
    return TrainingLog(
        info=records[0],
        valid=[valid[k] for k in sorted(valid)],
        step=max(r["step"] for r in records),
        end=records[-1] if records[-1]["kind"] == "end" else None,
        wall_time_s=wall,
        hosts=list(dict.fromkeys(records[i].get("host", "not recorded") for i in sessions[:-1])),
    )


@dataclass(frozen=True)
class RunState:
    status: str  # "finished" (nothing to train), "partial" (resume from checkpoint) or "new"
    step: int  # updates in its last checkpoint (0 when new)


def finished_end(run_dir: Path, max_steps: int) -> dict | None:
    """The run's "end" record when its records say it finished (not interrupted, at step >=
    ``max_steps``), else None; no checkpoint is read."""
    training = read_training(run_dir)
    end = training.end if training else None
    return end if end and not end.get("interrupted") and end["step"] >= max_steps else None


def run_state(run_dir: Path, max_steps: int) -> RunState:
    """Finished: an "end" record not interrupted at step >= max_steps, or checkpoint_last.pt at
    step >= max_steps; partial: a checkpoint_last.pt before that, or checkpoints of which
    checkpoint_last.pt is not one that verifies (its trainer resumes from the latest that does);
    new: no checkpoint."""
    end = finished_end(run_dir, max_steps)
    if end is not None:
        return RunState("finished", end["step"])
    run = RunDir.at(run_dir)
    if not run_checkpoints(run.checkpoints):
        return RunState("new", 0)
    try:
        step = int(load_checkpoint(run.last)["step"])
    except CheckpointError as err:
        log.warning("%s: its trainer resumes from the latest checkpoint that verifies", err)
        return RunState("partial", 0)
    return RunState("finished" if step >= max_steps else "partial", step)


def read_run_config(path: Path) -> dict:
    """A run's ``.hydra/config.yaml`` as its settings after resolution, read within the bounds of
    :func:`noamt.cli.config.read_yaml_config` (size, aliases, OmegaConf's safe loader); a file it
    refuses (too large, an alias bomb, a ``!!python`` tag) or cannot resolve is a one-line
    CompareError naming it. Configs saved with the peak as ``${noam_peak:d_model,
    warmup_steps[,factor]}`` resolve it to ``noamt.schedules.noam_peak``."""
    if not OmegaConf.has_resolver("noam_peak"):
        OmegaConf.register_new_resolver("noam_peak", noam_peak)
    try:
        config = read_yaml_config(path)
    except YamlRefused as err:
        raise CompareError(f"{path}: cannot read the run's config ({err.reason})") from err
    except OSError as err:
        raise CompareError(f"{path}: cannot read the run's config ({err.strerror or err})") from err
    try:
        return resolved_settings(saved_train_config(config))
    except (OSError, ValueError, KeyError, yaml.YAMLError, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CompareError(f"{path}: cannot read the run's config ({first})") from err


def check_runs(jobs: Sequence[Job], configs: dict[str, dict], runs_dir: Path) -> dict[str, RunState]:
    """Each job's state; a run trained with another config is an error, not something to resume."""
    states = {}
    for job in jobs:
        run_dir = runs_dir / job.name
        stored = RunDir.at(run_dir).hydra_config
        if stored.is_file():
            changes = config_differences(read_run_config(stored), configs[job.name], IGNORED_CHANGES)
            if changes:
                raise CompareError(
                    f"{run_dir} was trained with another config ({'; '.join(changes)}): "
                    "pass the same overrides, or another --out"
                )
        states[job.name] = run_state(run_dir, configs[job.name]["trainer"]["max_steps"])
    return states


# ----------------------------------------------------------------------------- results
def evaluation_results_file(run_dir: Path) -> Path:
    """The run's ``eval/results.json``, written by :func:`noamt.evaluation.evaluate_checkpoint`."""
    return RunDir.at(run_dir).eval_dir / RESULTS_FILE


def current_evaluation(run_dir: Path, step: int, decoding: dict, splits: Sequence[str]) -> EvaluationResults | None:
    """The run's eval/results.json if it scored checkpoint_last.pt at ``step`` with ``decoding``
    on every split of ``splits``, the references' likelihood included where checkpoint_last.pt is
    there to score it (a run kept as evidence without its checkpoints keeps its evaluation); None
    when it must be (re)done."""
    path = evaluation_results_file(run_dir)
    if not path.is_file():
        return None
    results = read_results_json(path)
    same_model = Path(results["checkpoint"]).name == LAST and results["step"] == step
    same_decoding = all(results["decoding"].get(k) == v for k, v in decoding.items())
    scored = set(splits) <= set(results["splits"])
    can_score = RunDir.at(run_dir).last.is_file()
    likelihood = not can_score or all("likelihood" in results["splits"][s] for s in splits if s in results["splits"])
    return results if same_model and same_decoding and scored and likelihood else None


@dataclass
class RunResult:
    """One finished, evaluated run."""

    job: Job
    run_dir: Path
    schedule_params: dict
    peak_lr: float
    updates: int
    wall_time_s: float
    best_valid_loss: float
    valid: list[dict]  # validation records during training: step, loss, bleu (from update 1)
    scores: dict[str, SplitResults]  # split -> scores, from the run's eval/results.json
    tgt_lang: str
    device: str  # as the trainer described it, e.g. "cpu (cpu), fp32, 2 threads"
    host: str  # CPU model, architecture and torch build (noamt.device.host_description); several: "a, then b"

    def hypotheses(self, split: str) -> list[str]:
        return read_lines(RunDir.at(self.run_dir).eval_dir / f"{split}.hyp.{self.tgt_lang}")

    def sentence_nll(self, split: str) -> np.ndarray:
        """The references' per-sentence likelihood on ``split``, shape (N, 2): [nll in nats, target
        tokens], from the file its results.json names, checked against the figure recorded there."""
        recorded = self.scores[split]["likelihood"]
        path = RunDir.at(self.run_dir).eval_dir / recorded["file"]
        scores = read_sentence_nll(path)
        per_token = math.fsum(scores.nll.tolist()) / int(scores.tokens.sum())
        if not math.isclose(per_token, recorded["nll_per_token"], rel_tol=1e-9):
            raise ValueError(
                f"{path}: {per_token:.6f} nats per token but results.json says {recorded['nll_per_token']:.6f}; "
                "delete that folder to evaluate the run again"
            )
        return np.column_stack([scores.nll, scores.tokens.astype(np.float64)])

    @property
    def diverged(self) -> bool:
        return diverged(self.valid)

    @property
    def final_valid_loss(self) -> float:
        """The validation loss at the last validation (at the budget: every profile validates there)."""
        return self.valid[-1]["loss"]

    @property
    def tail_drop(self) -> float | None:
        """How much validation loss fell over the last fifth of the budget (see :func:`tail_drop`)."""
        return tail_drop(self.valid, self.updates)

    @property
    def still_falling(self) -> bool | None:
        """Whether validation loss fell by more than CONVERGENCE_TOLERANCE over the last fifth of
        the budget; None when no validation lies before it."""
        drop = self.tail_drop
        return None if drop is None else drop > CONVERGENCE_TOLERANCE


def diverged(valid: Sequence[dict], tolerance: float = 0.01) -> bool:
    """Whether the validation loss rose over the last half of training.

    Over the validations at updates >= half the last one (two at least): the least-squares
    slope of loss against update is positive, and the last loss exceeds the lowest loss of the
    whole run by more than ``tolerance`` (relative), so that a flat, noisy end is not flagged.
    A non-finite loss anywhere counts as diverged.
    """
    losses = [(r["step"], r["loss"]) for r in valid]
    if not losses:
        return False
    if not all(math.isfinite(loss) for _, loss in losses):
        return True
    last_step = losses[-1][0]
    tail = [(step, loss) for step, loss in losses if step >= last_step / 2]
    if len(tail) < 2:
        return False
    steps, values = np.array(tail, dtype=np.float64).T
    slope = np.polyfit(steps, values, 1)[0]
    return bool(slope > 0 and values[-1] > min(loss for _, loss in losses) * (1 + tolerance))


def tail_drop(valid: Sequence[dict], budget: int, tail: float = CONVERGENCE_TAIL) -> float | None:
    """The relative fall of validation loss over the last ``tail`` of the budget,

        (L(k_0) - L(k_last)) / L(k_0),   k_0 the last validation at or before (1 - tail) * budget,

    k_last the last validation; positive while the loss is still falling. None when no validation
    lies at or before (1 - tail) * budget or none after it."""
    start = (1.0 - tail) * budget
    before = [r for r in valid if r["step"] <= start]
    if not before or valid[-1]["step"] <= start:
        return None
    first, last = before[-1]["loss"], valid[-1]["loss"]
    return (first - last) / first


def split_scores(entry: SplitResults) -> dict:
    """A split's entry of results.json with its likelihood per token as the metric ``nll``."""
    likelihood = entry.get("likelihood")
    return {**entry, "nll": likelihood["nll_per_token"]} if likelihood else dict(entry)


def collect_run(job: Job, run_dir: Path) -> RunResult:
    """A run's training log and evaluation as a RunResult (both must exist)."""
    training = read_training(run_dir)
    path = evaluation_results_file(run_dir)
    if training is None or not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl or {path.name}: train and evaluate the run first")
    evaluation = read_results_json(path)
    return RunResult(
        job=job,
        run_dir=run_dir,
        schedule_params=training.info["schedule_params"],
        peak_lr=training.info["peak_lr"],
        updates=training.step,
        wall_time_s=training.wall_time_s,
        best_valid_loss=min(r["loss"] for r in training.valid),
        valid=training.valid,
        scores={split: split_scores(entry) for split, entry in evaluation["splits"].items()},
        tgt_lang=evaluation["tgt_lang"],
        device=training.info.get("device", "unknown"),
        host=", then ".join(training.hosts),
    )


@dataclass
class SettingSummary:
    """The runs of one setting (schedule and peak) summarized over their seeds."""

    setting: str
    schedule: str
    lr_scale: float | None
    peak_lr: float
    runs: list[RunResult]
    updates: Summary
    wall_time_s: Summary
    best_valid_loss: Summary
    final_valid_loss: Summary  # at the last validation, the budget
    scores: dict[str, dict[str, Summary]]  # split -> metric -> summary over seeds

    @property
    def seeds(self) -> list[int]:
        return [r.job.seed for r in self.runs]

    @property
    def diverged_seeds(self) -> list[int]:
        """Seeds whose run's validation loss rose over its last half (see :func:`diverged`)."""
        return [r.job.seed for r in self.runs if r.diverged]

    @property
    def still_falling_seeds(self) -> list[int]:
        """Seeds whose validation loss was still falling over the last fifth of the budget."""
        return [r.job.seed for r in self.runs if r.still_falling]

    @property
    def convergence_known(self) -> bool:
        """Whether every run validated before the last fifth of its budget (so ``still_falling`` is known)."""
        return all(r.still_falling is not None for r in self.runs)


def summarize_settings(runs: Sequence[RunResult]) -> list[SettingSummary]:
    """Group runs by setting (in the order first seen) and summarize each over its seeds."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.job.setting, []).append(run)
    summaries = []
    for setting, group in groups.items():
        group = sorted(group, key=lambda r: r.job.seed)
        splits = [s for s in group[0].scores if all(s in r.scores for r in group)]
        metrics = {s: [m for m in SCORED_METRICS if all(m in r.scores[s] for r in group)] for s in splits}
        summaries.append(
            SettingSummary(
                setting=setting,
                schedule=group[0].job.schedule,
                lr_scale=group[0].job.lr_scale,
                peak_lr=group[0].peak_lr,
                runs=group,
                updates=summarize([r.updates for r in group]),
                wall_time_s=summarize([r.wall_time_s for r in group]),
                best_valid_loss=summarize([r.best_valid_loss for r in group]),
                final_valid_loss=summarize([r.final_valid_loss for r in group]),
                scores={s: {m: summarize([r.scores[s][m] for r in group]) for m in metrics[s]} for s in splits},
            )
        )
    return summaries


TUNING_CRITERIA = ("bleu", "loss")


def tuning_score(s: SettingSummary, criterion: str) -> float:
    """What the peak is chosen on, higher is better: mean validation BLEU (last checkpoint, the
    whole validation set) or minus the mean validation loss at the budget (last validation)."""
    if criterion == "bleu":
        return s.scores["valid"]["bleu"].mean
    if criterion == "loss":
        return -s.final_valid_loss.mean
    raise ValueError(f"tuning criterion {criterion!r}: expected one of {', '.join(TUNING_CRITERIA)}")


def select_best_peaks(summaries: Sequence[SettingSummary], criterion: str = "bleu") -> list[SettingSummary]:
    """Per schedule, the setting with the best ``tuning_score`` (the first on ties): validation only."""
    best: dict[str, SettingSummary] = {}
    for s in summaries:
        if s.schedule not in best or tuning_score(s, criterion) > tuning_score(best[s.schedule], criterion):
            best[s.schedule] = s
    return list(best.values())
