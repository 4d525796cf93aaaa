"""report.md: the study's report laid out as Markdown tables and lines (the sentences come from
``noamt_study.report.sentences``, every number from the per-run files through ``collect``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from noamt_study.collect import SettingSummary, evaluation_results_file
from noamt_study.report.results import BenchmarkMeta
from noamt_study.report.sentences import (
    METHOD,
    comparison_conclusions,
    divergence_warnings,
    format_duration,
    format_summary,
    power_line,
    verdict,
)
from noamt_study.significance import Comparison
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
        "valid BLEU",
        "valid chrF",
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
            format_summary(s.scores["valid"]["bleu"]),
            format_summary(s.scores["valid"]["chrf"]),
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
    tests = {c.other: c for c in comparisons if c.split == split}
    header = [
        "schedule",
        "BLEU",
        "BLEU 95% CI",
        "chrF",
        f"Δ BLEU {reference} − schedule [95% CI, seeds and sentences random]",
        "p [Holm]",
        f"seeds won ({reference} : schedule)",
        "detectable Δ (80% power)",
        "p given these models [Holm]",
    ]
    rows = []
    for s in selected:
        bleu, chrf, c = s.scores[split]["bleu"], s.scores[split]["chrf"], tests.get(s.setting)
        row = [s.setting, format_summary(bleu), _ci(bleu), format_summary(chrf)]
        if c is None:
            row += ["reference", "", "", "", ""]
        else:
            t, boot = c.test, c.bootstrap
            row += [
                f"{t.delta:+.2f} [{t.ci_low:+.2f}, {t.ci_high:+.2f}]" if t else f"{boot.delta:+.2f} (1 seed)",
                f"{t.p_value:.3f} [{_holm(c.test_p_holm)}]" if t else "",
                f"{c.seeds.wins} : {c.seeds.losses}",
                f"{c.power.detectable:.2f}" if c.power else "",
                f"{boot.p_value:.3f} [{_holm(c.bootstrap_p_holm)}]",
            ]
        rows.append(row)
    here = [(c, worded) for c, worded in zip(comparisons, conclusions, strict=True) if c.split == split]
    lines = [f"- {headline}" for _, (headline, _) in here]
    lines += [f"- {power_line(split, c.reference, c.other, c.power)}" for c, _ in here if c.power]
    lines += [f"- {bootstrap_line}" for _, (_, bootstrap_line) in here]
    return [f"## {split}", "", *_table(header, rows), "", *lines]


def _holm(p: float | None) -> str:
    return "–" if p is None else f"{p:.3f}"


def _sweep_section(settings: Sequence[SettingSummary], selected: Sequence[SettingSummary]) -> list[str]:
    chosen = {s.setting for s in selected}
    header = ["schedule", "× Noam peak", "peak lr", "valid BLEU", "valid chrF", "best valid loss", "chosen"]
    rows = [
        [
            s.schedule,
            f"{s.lr_scale:g}",
            f"{s.peak_lr:.3g}",
            format_summary(s.scores["valid"]["bleu"]),
            format_summary(s.scores["valid"]["chrf"]),
            format_summary(s.best_valid_loss, 3),
            "yes" if s.setting in chosen else "",
        ]
        for s in settings
    ]
    return ["## Peak learning-rate sweep (validation set, last checkpoints)", "", *_table(header, rows)]


def _runs_section(out_dir: Path, splits: Sequence[str], selected: Sequence[SettingSummary]) -> list[str]:
    header = ["run", "peak lr", "updates", "wall time", "best valid loss", *(f"{split} BLEU" for split in splits)]
    rows = [
        [
            f"[{r.job.name}]({os.path.relpath(evaluation_results_file(r.run_dir), out_dir)})"
            + (" (diverged)" if r.diverged else ""),
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
) -> str:
    """report.md: header, summary, one section per test split, the sweep (if any), plots, runs."""
    lines = [f"# Schedule comparison: {meta['profile']} profile", ""]
    lines += [f"- **{k}**: {v}" for k, v in meta["description"].items()]
    lines += ["", f"Statistics: {METHOD.format(n_samples=meta['bootstrap_samples'])}", ""]
    lines += _summary_section(selected)
    lines += ["", "## Verdict", "", *(f"- {line}" for line in verdict(comparisons))]
    reference = next(s.setting for s in selected if s.schedule == meta["reference"])
    conclusions = comparison_conclusions(comparisons, selected)
    for split in meta["test_splits"]:
        lines += ["", *_split_section(split, reference, selected, comparisons, conclusions)]
    if len(settings) > len(selected):
        lines += ["", *_sweep_section(settings, selected)]
    lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots), ""]
    lines += _runs_section(out_dir, ["valid", *meta["test_splits"]], selected)
    return "\n".join(lines) + "\n"
