"""results.json and results.csv: the study's numbers as typed entries (a run, a setting over its
seeds, a comparison) and as one CSV row per (setting, split, metric)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypedDict

from noamt_study.collect import SettingSummary, evaluation_results_file
from noamt_study.report.sentences import comparison_conclusions, divergence_warnings, leader_verdict, verdict
from noamt_study.significance import Comparison, Leader
from noamt_study.stats import Summary


class SummaryEntry(TypedDict):
    """A :class:`~noamt_study.stats.Summary` over seeds."""

    n: int
    mean: float
    std: float
    ci95: list[float]  # [low, high]
    values: list[float]  # one per seed, in seed order


class RunEntry(TypedDict):
    """One run: where its files are and its own numbers."""

    name: str
    seed: int
    run_dir: str
    results_json: str  # the run's eval/results.json, the source of its scores
    schedule_params: dict
    updates: int
    wall_time_s: float
    best_valid_loss: float
    final_valid_loss: float  # at the last validation, the budget
    tail_drop: float | None  # relative fall of validation loss over the last fifth of the budget
    still_falling: bool | None  # tail_drop above collect.CONVERGENCE_TOLERANCE (None: not known)
    diverged: bool
    scores: dict[str, dict[str, float]]  # split -> {"bleu", "chrf", "ter"[, "nll": NLL per token]}


class SettingEntry(TypedDict):
    """One schedule at one peak, summarised over its seeds."""

    setting: str
    schedule: str
    lr_scale: float | None
    peak_lr: float
    selected: bool  # in the comparison (with --lr-sweep: the schedule's best peak)
    seeds: list[int]
    updates: SummaryEntry
    wall_time_s: SummaryEntry
    best_valid_loss: SummaryEntry
    final_valid_loss: SummaryEntry
    diverged_seeds: list[int]
    still_falling_seeds: list[int]  # validation loss still falling over the last fifth of the budget
    scores: dict[str, dict[str, SummaryEntry]]  # split -> metric ("bleu", "chrf", "nll") -> summary
    runs: list[RunEntry]


class BenchmarkMeta(TypedDict):
    """How the benchmark was run."""

    profile: str
    mode: str  # "same_peak", "lr_sweep" or "tuned"
    data: str  # the data config's name, e.g. multi30k_en_de
    src_lang: str
    tgt_lang: str
    schedules: list[str]
    seeds: list[int]
    lr_scales: list[float] | None  # the sweep's peak scales; with --tune, the first grid
    tune_seeds: list[int] | None  # --tune: the seeds that trained the grid
    tune_criterion: str | None  # --tune: "bleu" or "loss", on the validation set
    chosen_on: dict[str, float] | None  # --tune: per grid setting, the score its peak was chosen on (tuning.json)
    chosen_lr_scales: dict[str, float] | None  # each schedule's chosen peak scale (sweep, tune)
    max_steps: int
    beam_size: int
    checkpoint: str  # the checkpoint each run is evaluated at
    reference: str  # the schedule the others are compared with
    test_splits: list[str]
    bootstrap_samples: int
    description: dict


class ComparisonEntry(TypedDict):
    """One comparison: ``dataclasses.asdict(Comparison)``, its test's n_seeds and seed_sd added,
    and its two sentences."""

    metric: str  # "bleu" or "nll" (NLL per target token; lower is better)
    split: str
    reference: str
    other: str
    test: dict | None
    test_p_holm: float | None
    power: dict | None
    conclusion: str  # the headline test's sentence
    bootstrap: dict
    bootstrap_p_holm: float | None
    bootstrap_conclusion: str  # the paired bootstrap's sentence, given these trained models
    seeds: dict


class LeaderEntry(TypedDict):
    """The validation leader (``significance.Leader``) and its comparisons with every other setting."""

    setting: str
    criterion: str  # "bleu": highest mean validation BLEU; "loss": lowest mean validation loss at the budget
    comparisons: list[ComparisonEntry]  # empty where they would repeat the reference's
    verdict: list[str]  # where the leader stands (sentences.leader_verdict)


class BenchmarkResults(TypedDict):
    """The benchmark's results.json."""

    meta: BenchmarkMeta
    settings: list[SettingEntry]
    comparisons: list[ComparisonEntry]
    verdict: list[str]  # what the comparisons establish and what they do not (significance.verdict)
    leader: LeaderEntry | None
    diverged: list[str]  # one warning per diverged run


def summary_entry(s: Summary) -> SummaryEntry:
    return SummaryEntry(n=s.n, mean=s.mean, std=s.std, ci95=[s.ci_low, s.ci_high], values=list(s.values))


def setting_entry(s: SettingSummary, selected: bool, out_dir: Path) -> SettingEntry:
    return SettingEntry(
        setting=s.setting,
        schedule=s.schedule,
        lr_scale=s.lr_scale,
        peak_lr=s.peak_lr,
        selected=selected,
        seeds=s.seeds,
        updates=summary_entry(s.updates),
        wall_time_s=summary_entry(s.wall_time_s),
        best_valid_loss=summary_entry(s.best_valid_loss),
        final_valid_loss=summary_entry(s.final_valid_loss),
        diverged_seeds=s.diverged_seeds,
        still_falling_seeds=s.still_falling_seeds,
        scores={split: {m: summary_entry(v) for m, v in ms.items()} for split, ms in s.scores.items()},
        runs=[
            RunEntry(
                name=r.job.name,
                seed=r.job.seed,
                run_dir=os.path.relpath(r.run_dir, out_dir),
                results_json=os.path.relpath(evaluation_results_file(r.run_dir), out_dir),
                schedule_params=r.schedule_params,
                updates=r.updates,
                wall_time_s=r.wall_time_s,
                best_valid_loss=r.best_valid_loss,
                final_valid_loss=r.final_valid_loss,
                tail_drop=r.tail_drop,
                still_falling=r.still_falling,
                diverged=r.diverged,
                scores={
                    split: {m: v[m] for m in ("bleu", "chrf", "ter", "nll") if m in v} for split, v in r.scores.items()
                },
            )
            for r in s.runs
        ],
    )


def comparison_entry(c: Comparison, conclusions: tuple[str, str]) -> ComparisonEntry:
    """``asdict(c)`` with the test's derived figures (seeds and the standard deviation of d_s) and
    the comparison's (headline, paired bootstrap) sentences."""
    entry = asdict(c)
    if c.test is not None:
        entry["test"].update(n_seeds=c.test.n_seeds, seed_sd=c.test.seed_sd)
    headline, bootstrap_line = conclusions
    return ComparisonEntry(
        metric=c.metric,
        split=c.split,
        reference=c.reference,
        other=c.other,
        test=entry["test"],
        test_p_holm=c.test_p_holm,
        power=entry["power"],
        conclusion=headline,
        bootstrap=entry["bootstrap"],
        bootstrap_p_holm=c.bootstrap_p_holm,
        bootstrap_conclusion=bootstrap_line,
        seeds=entry["seeds"],
    )


def write_json(
    path: Path,
    meta: BenchmarkMeta,
    settings: Sequence[SettingSummary],
    selected: Sequence[SettingSummary],
    comparisons: Sequence[Comparison],
    leader: Leader | None = None,
) -> None:
    chosen = {s.setting for s in selected}

    def entries(family: Sequence[Comparison]) -> list[ComparisonEntry]:
        worded = comparison_conclusions(family, selected)
        return [comparison_entry(c, lines) for c, lines in zip(family, worded, strict=True)]

    data = BenchmarkResults(
        meta=meta,
        settings=[setting_entry(s, s.setting in chosen, path.parent) for s in settings],
        comparisons=entries(comparisons),
        verdict=verdict(comparisons),
        leader=None
        if leader is None
        else LeaderEntry(
            setting=leader.setting,
            criterion=leader.criterion,
            comparisons=entries(leader.comparisons),
            verdict=leader_verdict(leader),
        ),
        diverged=divergence_warnings(settings),
    )
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_csv(path: Path, settings: Sequence[SettingSummary], selected: Sequence[SettingSummary]) -> None:
    """One row per (setting, split, metric): n, mean, std, 95% CI and the per-seed values."""
    chosen = {s.setting for s in selected}
    header = [
        "setting",
        "schedule",
        "lr_scale",
        "peak_lr",
        "selected",
        "split",
        "metric",
        "n",
        "mean",
        "std",
        "ci95_low",
        "ci95_high",
        "values",
    ]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for s in settings:
            rows = [(split, m, v) for split, ms in s.scores.items() for m, v in ms.items()]
            rows += [
                ("", "best_valid_loss", s.best_valid_loss),
                ("", "final_valid_loss", s.final_valid_loss),
                ("", "updates", s.updates),
                ("", "wall_time_s", s.wall_time_s),
            ]
            for split, metric, v in rows:
                writer.writerow(
                    [
                        s.setting,
                        s.schedule,
                        s.lr_scale,
                        s.peak_lr,
                        s.setting in chosen,
                        split,
                        metric,
                        v.n,
                        v.mean,
                        v.std,
                        v.ci_low,
                        v.ci_high,
                        ";".join(f"{x:g}" for x in v.values),
                    ]
                )
