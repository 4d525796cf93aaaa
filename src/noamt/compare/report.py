"""The schedule comparison's report: report.md, results.csv, results.json and the plots.

Every number comes from the per-run files (metrics.jsonl, eval/results.json) through
``noamt.compare.runs``; this module only lays them out.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypedDict

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from noamt.compare.runs import (  # noqa: E402
    SettingSummary,
    divergence_warnings,
    evaluation_results_file,
    format_summary,
)
from noamt.compare.significance import Comparison, power_line, verdict  # noqa: E402
from noamt.compare.stats import Summary  # noqa: E402

VALIDATION_PLOT = "validation_curves.png"
TEST_PLOT = "test_bleu.png"

METHOD = (
    "mean ± sample standard deviation over seeds; 95% CI = mean ± t(0.975, n−1) · std / √n (Student t). "
    "**Headline test, seeds and test sentences random**: the runs of two schedules are paired seed by seed "
    "(same seed = same initialisation and batches), d_s = BLEU(A_s) − BLEU(B_s), Δ = mean(d_s); "
    "Var(Δ) = V_seed + V_f, where V_seed = Σ(d_s − Δ)² / (n(n−1)) is the seeds' spread and "
    "V_f = max(0, (n·V_sent − V_pair) / (n − 1)) the part of the test-sentence variance that all seeds "
    "share (V_sent: bootstrap variance of Δ, V_pair: mean bootstrap variance of one seed's d_s, over "
    "{n_samples} resamples of the sentences shared by all runs, numpy seed 12345); t = Δ / √Var with "
    "(n − 1)(Var / V_seed)² degrees of freedom (Welch–Satterthwaite; the paired t-test when V_f = 0). Its null, "
    "“no difference in expected BLEU over new seeds and new sentences”, includes the seed-to-seed variance. "
    "With it: the smallest difference the comparison detects with 80% power at 5% (two-sided), "
    "(t(0.975) + t(0.8)) · √(n·V_seed / m + V_f) for m seeds, and the seeds that a 0.5 BLEU "
    "difference would need. **Given these trained models**: the paired bootstrap over test sentences "
    "(Koehn 2004) on the same resamples, two-sided p = (1 + #{{|Δ* − Δ| ≥ |Δ|}}) / (resamples + 1); it holds "
    "the runs fixed and says nothing about other seeds. Several comparisons: each kind of p-value is "
    "Holm-adjusted over all the comparisons of the report ([in brackets]; sorted p_(1) ≤ … ≤ p_(m), "
    "adjusted p_(i) = max_(j≤i) min(1, (m − j + 1) · p_(j))), and a difference is called significant only "
    "when its adjusted p is below 0.05. A run is flagged as diverged when its validation loss rose over "
    "the last half of training (positive least-squares slope over the validations from half-way, last loss "
    "more than 1% above the run's lowest); flagged runs stay in the means."
)


class SummaryEntry(TypedDict):
    """A :class:`~noamt.compare.stats.Summary` over seeds."""

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
    diverged: bool
    scores: dict[str, dict[str, float]]  # split -> {"bleu", "chrf", "ter"}


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
    diverged_seeds: list[int]
    scores: dict[str, dict[str, SummaryEntry]]  # split -> metric -> summary
    runs: list[RunEntry]


class BenchmarkMeta(TypedDict):
    """How the benchmark was run."""

    profile: str
    mode: str  # "same_peak" or "lr_sweep"
    data: str  # the data config's name, e.g. multi30k_en_de
    src_lang: str
    tgt_lang: str
    schedules: list[str]
    seeds: list[int]
    lr_scales: list[float] | None
    max_steps: int
    beam_size: int
    checkpoint: str  # the checkpoint each run is evaluated at
    reference: str  # the schedule the others are compared with
    test_splits: list[str]
    bootstrap_samples: int
    description: dict


class BenchmarkResults(TypedDict):
    """The benchmark's results.json."""

    meta: BenchmarkMeta
    settings: list[SettingEntry]
    comparisons: list[dict]  # dataclasses.asdict(Comparison), each test's n_seeds and seed_sd added
    verdict: list[str]  # what the comparisons establish and what they do not (significance.verdict)
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
        diverged_seeds=s.diverged_seeds,
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
                diverged=r.diverged,
                scores={split: {m: v[m] for m in ("bleu", "chrf", "ter")} for split, v in r.scores.items()},
            )
            for r in s.runs
        ],
    )


def comparison_entry(c: Comparison) -> dict:
    """``asdict(c)`` with the test's derived figures (seeds and the standard deviation of d_s)."""
    entry = asdict(c)
    if c.test is not None:
        entry["test"].update(n_seeds=c.test.n_seeds, seed_sd=c.test.seed_sd)
    return entry


def write_json(
    path: Path,
    meta: BenchmarkMeta,
    settings: Sequence[SettingSummary],
    selected: Sequence[SettingSummary],
    comparisons: Sequence[Comparison],
) -> None:
    chosen = {s.setting for s in selected}
    data = BenchmarkResults(
        meta=meta,
        settings=[setting_entry(s, s.setting in chosen, path.parent) for s in settings],
        comparisons=[comparison_entry(c) for c in comparisons],
        verdict=verdict(comparisons),
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


def _ci(s: Summary, digits: int = 1) -> str:
    return "–" if s.ci_low is None else f"[{s.ci_low:.{digits}f}, {s.ci_high:.{digits}f}]"


def format_duration(seconds: float) -> str:
    """``1h02m03s`` or ``2m03s``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


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
    split: str, reference: str, selected: Sequence[SettingSummary], comparisons: Sequence[Comparison]
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
    here = [c for c in comparisons if c.split == split]
    lines = [f"- {c.conclusion}" for c in here]
    lines += [f"- {power_line(split, c.reference, c.other, c.power)}" for c in here if c.power]
    lines += [f"- {c.bootstrap_conclusion}" for c in here]
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
    for split in meta["test_splits"]:
        lines += ["", *_split_section(split, reference, selected, comparisons)]
    if len(settings) > len(selected):
        lines += ["", *_sweep_section(settings, selected)]
    lines += ["", "## Plots", "", *(f"![{Path(p).stem}]({p})" for p in plots), ""]
    lines += _runs_section(out_dir, ["valid", *meta["test_splits"]], selected)
    return "\n".join(lines) + "\n"


def plot_validation(selected: Sequence[SettingSummary], path: Path) -> None:
    """Validation loss and BLEU against updates: mean over seeds, band from min to max."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for s in selected:
        for ax, key in zip(axes, ("loss", "bleu"), strict=True):
            curves = [{r["step"]: r[key] for r in run.valid if key in r} for run in s.runs]
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            if not steps:
                continue
            values = np.array([[c[k] for k in steps] for c in curves])  # (seeds, steps)
            (line,) = ax.plot(steps, values.mean(axis=0), marker=".", label=f"{s.setting} ({len(s.runs)} seeds)")
            ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    for ax, label in zip(axes, ("validation loss (label-smoothed)", "validation BLEU (greedy)"), strict=True):
        ax.set_xlabel("update")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("mean over seeds; band: min..max over seeds")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_test_bleu(selected: Sequence[SettingSummary], splits: Sequence[str], path: Path) -> None:
    """Final test BLEU per schedule and test set: mean ± std over seeds, one dot per seed."""
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(splits)), 4.5))
    width = 0.8 / len(selected)
    for i, s in enumerate(selected):
        x = np.arange(len(splits)) + (i - (len(selected) - 1) / 2) * width
        bleu = [s.scores[split]["bleu"] for split in splits]
        container = ax.errorbar(
            x, [b.mean for b in bleu], yerr=[b.std or 0.0 for b in bleu], fmt="o", capsize=4, label=s.setting
        )
        color = container.lines[0].get_color()
        for xi, b in zip(x, bleu, strict=True):
            ax.scatter([xi] * b.n, b.values, s=12, color=color, alpha=0.5)
    ax.set_xticks(np.arange(len(splits)), splits)
    ax.set_ylabel("sacreBLEU")
    ax.set_title("test BLEU: mean ± std over seeds (dots: seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_report(
    out_dir: Path,
    meta: BenchmarkMeta,
    settings: Sequence[SettingSummary],
    selected: Sequence[SettingSummary],
    comparisons: Sequence[Comparison],
    extra_plots: Sequence[str] = (),
) -> list[Path]:
    """Write the plots, results.json, results.csv and report.md to ``out_dir``; returns their paths."""
    plot_validation(selected, out_dir / VALIDATION_PLOT)
    plot_test_bleu(selected, meta["test_splits"], out_dir / TEST_PLOT)
    write_json(out_dir / "results.json", meta, settings, selected, comparisons)
    write_csv(out_dir / "results.csv", settings, selected)
    plots = [*extra_plots, VALIDATION_PLOT, TEST_PLOT]
    (out_dir / "report.md").write_text(
        markdown(out_dir, meta, settings, selected, comparisons, plots), encoding="utf-8"
    )
    return [out_dir / name for name in ("report.md", "results.csv", "results.json", *plots)]
