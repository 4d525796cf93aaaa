"""The study's report: report.md, results.csv, results.json and the plots of ``out_dir``.

``sentences`` words everything the report says, ``markdown`` lays out report.md, ``results``
writes results.json and results.csv; every number comes from the per-run files (metrics.jsonl,
eval/results.json) through ``noamt_study.collect``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from noamt_study.collect import SettingSummary
from noamt_study.plots import plot_test_bleu, plot_validation
from noamt_study.report.markdown import markdown
from noamt_study.report.results import BenchmarkMeta, write_csv, write_json
from noamt_study.significance import Comparison, Leader

VALIDATION_PLOT = "validation_curves.png"
TEST_PLOT = "test_bleu.png"


def write_report(
    out_dir: Path,
    meta: BenchmarkMeta,
    settings: Sequence[SettingSummary],
    selected: Sequence[SettingSummary],
    comparisons: Sequence[Comparison],
    extra_plots: Sequence[str] = (),
    grid: Sequence[SettingSummary] | None = None,
    leader: Leader | None = None,
) -> list[Path]:
    """Write the plots, results.json, results.csv and report.md to ``out_dir``; returns their paths.
    ``grid``: the peak sweep's settings when they are not all of ``settings`` (--tune: the tuning
    seeds' runs only); ``leader``: the validation leader and its comparisons."""
    plot_validation(selected, out_dir / VALIDATION_PLOT)
    plot_test_bleu(selected, meta["test_splits"], out_dir / TEST_PLOT)
    write_json(out_dir / "results.json", meta, settings, selected, comparisons, leader)
    write_csv(out_dir / "results.csv", settings, selected)
    plots = [*extra_plots, VALIDATION_PLOT, TEST_PLOT]
    (out_dir / "report.md").write_text(
        markdown(out_dir, meta, settings, selected, comparisons, plots, grid, leader), encoding="utf-8"
    )
    return [out_dir / name for name in ("report.md", "results.csv", "results.json", *plots)]
