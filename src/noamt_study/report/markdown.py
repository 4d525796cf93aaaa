"""report.md: the study's report laid out as Markdown tables and lines (the sentences come from
``noamt_study.report.sentences``, every number from the per-run files through ``collect``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from noamt_study.collect import SettingSummary, evaluation_results_file
from noamt_study.report.results import BenchmarkMeta
from noamt_study.report.sentences import (
    CRITERIA,
    METHOD,
    budget_scope,
    comparison_conclusions,
    convergence_line,
    divergence_warnings,
    format_duration,
    format_summary,
    leader_verdict,
    power_line,
    verdict,
)
from noamt_study.retrain import report_note
from noamt_study.significance import BLEU_METRIC, NLL_METRIC, Comparison, Leader, Metric
from noamt_study.stats import Summary


def _ci(s: Summary, digits: int = 1) -> str:
    return "–" if s.ci_low is None else f"[{s.ci_low:.{digits}f}, {s.ci_high:.{digits}f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def _summary_section(selected: Sequence[SettingSummary]) -> list[str]:
    header = [
        "schedule",
        "peak lr",
        "seeds",
        "updates",
        "wall time / run",
        "best valid loss",
        "valid loss at the budget",
        "valid BLEU",
        "valid chrF",
        "still falling (seeds)",
        "diverged seeds",
    ]
    rows = [
        [
            s.setting,
            f"{s.peak_lr:.3g}",
            ",".join(map(str, s.seeds)),
            f"{s.updates.mean:.0f}",
            format_duration(s.wall_time_s.mean),
            format_summary(s.best_valid_loss, 3),
            format_summary(s.final_valid_loss, 3),
            format_summary(s.scores["valid"]["bleu"]),
            format_summary(s.scores["valid"]["chrf"]),
            f"{len(s.still_falling_seeds)} of {len(s.runs)}" if s.convergence_known else "not known",
            ",".join(map(str, s.diverged_seeds)) or "none",
        ]
        for s in selected
    ]
    warnings = [f"- **{line}**" for line in divergence_warnings(selected)]
    return ["## Summary", "", *_table(header, rows), *(["", *warnings] if warnings else [])]


def _split_section(
    split: str,
    reference: str,
    selected: Sequence[SettingSummary],
    comparisons: Sequence[Comparison],
    conclusions: Sequence[tuple[str, str]],
) -> list[str]:
    """The split's BLEU table and, where the runs scored it, its likelihood table, each followed by
    its comparisons' sentences."""
    lines = [f"## {split}"]
    for metric in (BLEU_METRIC, NLL_METRIC):
        here = [
            (c, w) for c, w in zip(comparisons, conclusions, strict=True) if (c.split, c.metric) == (split, metric.name)
        ]
        if metric is BLEU_METRIC or here:
            lines += ["", *_metric_table(split, reference, selected, here, metric), ""]
            lines += [f"- {headline}" for _, (headline, _) in here]
            lines += [f"- {power_line(split, c.reference, c.other, c.power, metric)}" for c, _ in here if c.power]
            lines += [f"- {bootstrap_line}" for _, (_, bootstrap_line) in here]
    return lines


def _metric_table(
    split: str,
    reference: str,
    selected: Sequence[SettingSummary],
    here: Sequence[tuple[Comparison, tuple[str, str]]],
    metric: Metric,
) -> list[str]:
    tests = {c.other: c for c, _ in here}
    bleu = metric is BLEU_METRIC
    name, d = ("BLEU", 1) if bleu else ("NLL/token (nats)", 3)
    header = [
        "schedule",
        name,
        f"{name} 95% CI",
        *(["chrF"] if bleu else []),
        f"Δ {metric.label} {reference} − schedule [95% CI, seeds and sentences random]",
        "p [Holm]",
        f"seeds {'higher' if bleu else 'lower'} ({reference} : schedule)",
        "detectable Δ (80% power)",
        "p given these models [Holm]",
    ]
    rows = []
    for s in selected:
        value, c = s.scores[split][metric.name], tests.get(s.setting)
        row = [
            s.setting,
            format_summary(value, d),
            _ci(value, d),
            *([format_summary(s.scores[split]["chrf"])] if bleu else []),
        ]
        if c is None:
            row += ["reference", "", "", "", ""]
        else:
            t, boot, k = c.test, c.bootstrap, metric.digits
            better = (c.seeds.wins, c.seeds.losses) if bleu else (c.seeds.losses, c.seeds.wins)
            row += [
                f"{t.delta:+.{k}f} [{t.ci_low:+.{k}f}, {t.ci_high:+.{k}f}]" if t else f"{boot.delta:+.{k}f} (1 seed)",
                f"{t.p_value:.3f} [{_holm(c.test_p_holm)}]" if t else "",
                f"{better[0]} : {better[1]}",
                f"{c.power.detectable:.{k}f}" if c.power else "",
                f"{boot.p_value:.3f} [{_holm(c.bootstrap_p_holm)}]",
            ]
        rows.append(row)
    return _table(header, rows)


def _leader_section(leader: Leader, splits: Sequence[str]) -> list[str]:
    """Per metric, one row per other schedule and one column per test split: the leader's
    difference with its 95% interval, p and Holm-adjusted p (seeds and sentences random)."""
    lines = [f"## Against the validation leader, {leader.setting}"]
    for metric in (BLEU_METRIC, NLL_METRIC):
        here = {(c.other, c.split): c for c in leader.comparisons if c.metric == metric.name}
        if not here:
            continue
        k = metric.digits
        rows = []
        for other in dict.fromkeys(other for other, _ in here):
            row = [other]
            for split in splits:
                c = here.get((other, split))
                t = c.test if c else None
                if c is None:
                    row.append("")
                elif t is None:
                    row.append(f"{c.bootstrap.delta:+.{k}f} (1 seed)")
                else:
                    interval = f"[{t.ci_low:+.{k}f}, {t.ci_high:+.{k}f}]"
                    row.append(f"{t.delta:+.{k}f} {interval}, p {t.p_value:.3f} [{_holm(c.test_p_holm)}]")
            rows.append(row)
        lines += [
            "",
            f"Δ {metric.label} = {leader.setting} − schedule ({'> 0' if metric.higher_is_better else '< 0'}: the "
            f"leader is better), its 95% interval and p [Holm-adjusted over the {len(here)} cells], seeds and "
            "test sentences random:",
            "",
            *_table(["schedule", *splits], rows),
        ]
    return lines


def _holm(p: float | None) -> str:
    return "–" if p is None else f"{p:.3f}"


def _sweep_section(
    grid: Sequence[SettingSummary], selected: Sequence[SettingSummary], meta: BenchmarkMeta
) -> list[str]:
    chosen = {(s.schedule, s.lr_scale) for s in selected}
    header = ["schedule", "× Noam peak", "peak lr", "valid BLEU", "valid chrF", "valid loss at the budget", "chosen"]
    ordered = sorted(grid, key=lambda s: (meta["schedules"].index(s.schedule), s.lr_scale))
    rows = [
        [
            s.schedule,
            f"{s.lr_scale:g}",
            f"{s.peak_lr:.3g}",
            format_summary(s.scores["valid"]["bleu"]),
            format_summary(s.scores["valid"]["chrf"]),
            format_summary(s.final_valid_loss, 3),
            "yes" if (s.schedule, s.lr_scale) in chosen else "",
        ]
        for s in ordered
    ]
    seeds = meta.get("tune_seeds")
    whose = f", tuning seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds else ""
    by = CRITERIA[meta.get("tune_criterion") or "bleu"]
    lines = [f"## Peak learning-rate sweep (validation set, last checkpoints{whose})", "", *_table(header, rows)]
    lines += ["", f"Chosen per schedule: {by}; the test sets play no part in the choice."]
    return lines + _moved_since_chosen(ordered, meta)


def _moved_since_chosen(grid: Sequence[SettingSummary], meta: BenchmarkMeta) -> list[str]:
    """The grid settings whose validation score is not the one their schedule's peak was chosen on
    (tuning.json): runs trained again since, or evaluated again."""
    chosen_on = meta.get("chosen_on") or {}
    loss = meta.get("tune_criterion") == "loss"
    moved = []
    for s in grid:
        now = s.final_valid_loss.mean if loss else s.scores["valid"]["bleu"].mean
        then = chosen_on.get(s.setting)
        if then is not None and abs(now - then) > 1e-9:
            digits = 3 if loss else 2
            moved.append(f"{s.setting} ({then:.{digits}f} when chosen, {now:.{digits}f} now)")
    if not moved:
        return []
    what = "validation loss at the budget" if loss else "validation BLEU"
    return [
        "",
        f"The peaks were chosen once, when the grid was done (`tuning.json`), and stay chosen. Since then "
        f"the {what} of {len(moved)} setting{'s' if len(moved) > 1 else ''} moved (trained or evaluated "
        f"again): {'; '.join(moved)}.",
    ]


def _runs_section(out_dir: Path, splits: Sequence[str], selected: Sequence[SettingSummary]) -> list[str]:
    header = ["run", "peak lr", "updates", "wall time", "best valid loss", *(f"{split} BLEU" for split in splits)]
    rows = [
        [
            f"[{r.job.name}]({os.path.relpath(evaluation_results_file(r.run_dir), out_dir)})"
            + (" (diverged)" if r.diverged else "")
            + report_note(r.run_dir),
            f"{r.peak_lr:.3g}",
            str(r.updates),
            format_duration(r.wall_time_s),
            f"{r.best_valid_loss:.3f}",
            *(f"{r.scores[split]['bleu']:.2f}" for split in splits),
        ]
        for s in selected
        for r in s.runs
    ]
    signatures = next(iter(selected[0].runs[0].scores.values()))["signatures"]
    used = "; ".join(f"{name}: `{signatures[name]}`" for name in ("bleu", "chrf"))
    return ["## Runs", "", *_table(header, rows), "", f"sacreBLEU signatures: {used}"]


def markdown(
    out_dir: Path,
    meta: BenchmarkMeta,
    settings: Sequence[SettingSummary],
    selected: Sequence[SettingSummary],
    comparisons: Sequence[Comparison],
    plots: Sequence[str],
    grid: Sequence[SettingSummary] | None = None,
    leader: Leader | None = None,
) -> str:
    """report.md: header, summary, convergence, verdict, one section per test split, the
    validation leader's comparisons (if any), the sweep (if any), plots, runs."""
    lines = [f"# Schedule comparison: {meta['profile']} profile", ""]
    lines += [f"- **{k}**: {v}" for k, v in meta["description"].items()]
    lines += ["", f"Statistics: {METHOD.format(n_samples=meta['bootstrap_samples'])}", ""]
    lines += _summary_section(selected)
    budget = int(selected[0].updates.mean)
    lines += ["", "## Convergence", "", *(f"- {convergence_line(s, budget)}" for s in selected)]
    lines += [
        "",
        "## Verdict",
        "",
        f"- {budget_scope(selected, budget)}",
        *(f"- {line}" for line in verdict(comparisons)),
    ]
    reference = next(s.setting for s in selected if s.schedule == meta["reference"])
    if leader is not None:
        lines += [f"- {line}" for line in leader_verdict(leader)]
    conclusions = comparison_conclusions(comparisons, selected)
    for split in meta["test_splits"]:
        lines += ["", *_split_section(split, reference, selected, comparisons, conclusions)]
    if leader is not None and leader.comparisons:
        lines += ["", *_leader_section(leader, meta["test_splits"])]
    grid = settings if grid is None else grid
    if len(grid) > len(selected):
        lines += ["", *_sweep_section(grid, selected, meta)]
    lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots), ""]
    lines += _runs_section(out_dir, ["valid", *meta["test_splits"]], selected)
    return "\n".join(lines) + "\n"
