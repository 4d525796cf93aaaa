"""Every sentence of the study's report: its header, its statistics paragraph, the conclusion of
each comparison, the verdict, the power lines, the divergence warnings and the number formats.

A difference is called significant only when its p-value, Holm-adjusted when several are
reported together, is below 0.05 (``significance.significant``); each kind of p-value forms one
family: the headline tests that exist (two seeds or more) and the paired bootstraps (all).
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import datetime

import torch

from noamt.checkpoint import LAST
from noamt_study.collect import SettingSummary
from noamt_study.plan import Study
from noamt_study.seed_sentence_test import Power, SeedSentenceTest
from noamt_study.significance import ALPHA, TARGET_DIFFERENCE, Comparison, significant
from noamt_study.stats import PairedBootstrap, SeedComparison, Summary

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


def format_duration(seconds: float) -> str:
    """``1h02m03s`` or ``2m03s``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def format_summary(s: Summary, digits: int = 1) -> str:
    """``34.1 ± 0.3`` (mean ± std over seeds), or ``34.1 (1 seed)``."""
    if s.std is None:
        return f"{s.mean:.{digits}f} (1 seed)"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"


def divergence_warnings(settings: Sequence[SettingSummary]) -> list[str]:
    """One line per run whose validation loss rose over its last half; its scores stay in the means."""
    return [
        f"{r.job.name} diverged: validation loss rose over the last half of training "
        f"({r.valid[len(r.valid) // 2]['loss']:.3f} at update {r.valid[len(r.valid) // 2]['step']}, "
        f"{r.valid[-1]['loss']:.3f} at update {r.valid[-1]['step']}); it is counted in {s.setting}'s means"
        for s in settings
        for r in s.runs
        if r.diverged
    ]


def _p(value: float) -> str:
    return f"p = {value:.3f}" if value < 0.01 else f"p = {value:.2f}"


def _with_holm(p: float, p_holm: float | None, family: int) -> str:
    """``p = …`` and, for one test of several, ``; p = … after Holm's adjustment for N comparisons``."""
    adjusted = f"; {_p(p_holm)} after Holm's adjustment for {family} comparisons" if family > 1 else ""
    return _p(p) + adjusted


def _head(split: str, a: SettingSummary, b: SettingSummary) -> str:
    sa, sb = a.scores[split]["bleu"], b.scores[split]["bleu"]
    n = min(sa.n, sb.n)

    def value(s: Summary) -> str:
        return f"{s.mean:.1f}" if s.std is None else f"{s.mean:.1f} ± {s.std:.1f}"

    spread = f"mean ± std over {n} seeds" if n > 1 else "1 seed"
    return f"{split}: {a.setting} {value(sa)} vs {b.setting} {value(sb)} BLEU ({spread})"


def conclusion(
    split: str,
    a: SettingSummary,
    b: SettingSummary,
    test: SeedSentenceTest | None,
    seeds: SeedComparison,
    p_holm: float | None = None,
    family: int = 1,
) -> str:
    """The headline line: the difference, its interval and p-value with seeds and sentences random,
    and the seed record. Significant only when the (Holm-adjusted, for several) p is below ALPHA."""
    head = _head(split, a, b)
    if test is None:
        return f"{head}: 1 common seed, so no test can count the variation between seeds"
    record = f"{a.setting} higher on {seeds.wins} of {test.n_seeds} seeds, {b.setting} on {seeds.losses}"
    interval = f"95% CI [{test.ci_low:+.2f}, {test.ci_high:+.2f}]"
    p = _with_holm(test.p_value, p_holm, family)
    if not significant(test.p_value, p_holm, family):
        if test.p_value < ALPHA:
            verdict = f"not significant once adjusted for the {family} comparisons"
        else:
            verdict = "not significant with seeds and test sentences random"
        return f"{head}: difference {test.delta:+.2f} ({interval}), {verdict} ({p}); {record}"
    winner = a.setting if test.delta > 0 else b.setting
    return (
        f"{head}: {winner} higher by {abs(test.delta):.2f} ({interval}), significant with seeds and test "
        f"sentences random ({p}); {record}"
    )


def bootstrap_conclusion(
    split: str, a: SettingSummary, b: SettingSummary, test: PairedBootstrap, p_holm: float | None, family: int
) -> str:
    """The paired bootstrap's line, labelled as what it is: a statement about these trained models."""
    p = _with_holm(test.p_value, p_holm, family)
    verdict = "significant" if significant(test.p_value, p_holm, family) else "not significant"
    return (
        f"{split}, given these trained models ({test.n_seeds} per schedule; test sentences resampled, seeds not): "
        f"{a.setting} − {b.setting} = {test.delta:+.2f} [{test.ci_low:+.2f}, {test.ci_high:+.2f}], {verdict} ({p})"
    )


def power_line(split: str, a: str, b: str, power: Power) -> str:
    """What the comparison could have detected, and the seeds a TARGET_DIFFERENCE would need."""
    need = (
        f"{power.seeds_for_target} seeds"
        if power.seeds_for_target is not None
        else "more seeds than 100 (the test set's own variance alone is too large)"
    )
    return (
        f"{split}, {a} vs {b}: with {power.seeds} seeds this comparison detects a difference of "
        f"{power.detectable:.2f} BLEU "
        f"({power.power:.0%} power, two-sided {power.alpha:.0%}); {power.target:g} BLEU would need {need}"
    )


def verdict(comparisons: Sequence[Comparison]) -> list[str]:
    """What the report establishes and what it does not, in three lines: the differences that are
    significant with seeds and sentences random (Holm-adjusted), those significant only given the
    trained models, and what the seeds could detect."""
    tested = [c for c in comparisons if c.test is not None]
    family = len(tested)
    if not tested:
        return ["One seed per schedule: no difference can be tested against the variation between seeds."]

    def name(c: Comparison) -> str:
        return f"{c.reference} − {c.other} on {c.split} ({c.test.delta:+.2f})"

    real = [c for c in tested if significant(c.test.p_value, c.test_p_holm, family)]
    given = [c for c in comparisons if significant(c.bootstrap.p_value, c.bootstrap_p_holm, len(comparisons))]
    given_only = [c for c in given if c not in real]
    lines = [
        f"With seeds and test sentences random, {len(real)} of the {family} differences "
        f"{'is' if len(real) == 1 else 'are'} significant after Holm's adjustment"
        + (
            ": " + "; ".join(name(c) for c in real) + ". No other difference is established."
            if real
            else ": no ranking of the schedules is established here."
        ),
        f"Given these trained models (test sentences resampled, seeds fixed), {len(given)} of the {len(comparisons)} "
        f"{'is' if len(given) == 1 else 'are'} significant after Holm's adjustment"
        + (f"; {len(given_only)} of them not once the seeds count" if given_only else "")
        + ".",
    ]
    detectable = [c.power.detectable for c in tested]
    needed = [c.power.seeds_for_target for c in tested]
    counts = sorted(n for n in needed if n is not None)
    need = f"{counts[0]} to {counts[-1]} seeds" if counts else ""
    if None in needed:
        need = (
            (need + " (and " if need else "")
            + f"more than 100 on {needed.count(None)} comparisons"
            + (")" if counts else "")
        )
    lines.append(
        f"With {tested[0].test.n_seeds} seeds the comparisons detect differences of {min(detectable):.2f} to "
        f"{max(detectable):.2f} BLEU (80% power, 5%); {TARGET_DIFFERENCE:g} BLEU would need {need}."
    )
    return lines


def comparison_conclusions(
    comparisons: Sequence[Comparison], settings: Sequence[SettingSummary]
) -> list[tuple[str, str]]:
    """Each comparison's headline conclusion and paired-bootstrap line, as reported together."""
    by_name = {s.setting: s for s in settings}
    family = sum(c.test is not None for c in comparisons)
    lines = []
    for c in comparisons:
        a, b = by_name[c.reference], by_name[c.other]
        lines.append(
            (
                conclusion(c.split, a, b, c.test, c.seeds, c.test_p_holm, family),
                bootstrap_conclusion(c.split, a, b, c.bootstrap, c.bootstrap_p_holm, len(comparisons)),
            )
        )
    return lines


def describe(study: Study, cfg: dict, settings: Sequence[SettingSummary], selected: Sequence[SettingSummary]) -> dict:
    """The report's header: what was run, how it was evaluated and compared, where and when."""
    steps, data = cfg["trainer"]["max_steps"], cfg["data"]
    limit = f", first {data['max_eval_examples']} sentences" if data["max_eval_examples"] else ""
    decoding = "greedy search" if study.beam_size == 1 else f"beam {study.beam_size}"
    overrides = f"; overrides: `{' '.join(study.overrides)}`" if study.overrides else ""
    trained = [r for s in settings for r in s.runs]
    devices = "; ".join(sorted({r.device for r in trained}))
    return {
        "mode": _mode(study, selected),
        "training": f"experiment={study.experiment} ({cfg['model']['name']} model, {data['name']}), "
        f"{steps} updates per run, seeds {', '.join(map(str, study.seeds))}; runs with the same seed share "
        f"initialisation and batch order{overrides}",
        "evaluated": f"checkpoints/{LAST} of every run (the model after exactly {steps} updates, no selection), "
        f"{decoding}, valid and test sets{limit}; sacreBLEU BLEU and chrF on detokenized, cased text",
        "compared": f"{study.reference} against each other schedule on each test set",
        "runs": f"{len(trained)}, {format_duration(sum(r.wall_time_s for r in trained))} of training in all",
        "machine": f"trained on {devices}; report written on {platform.node()} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.system()}, Python {platform.python_version()}, torch {torch.__version__})",
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": f"`{shlex.join(['noamt-compare', *sys.argv[1:]])}`",
    }


def _mode(study: Study, selected: Sequence[SettingSummary]) -> str:
    """How the peaks were chosen: a sweep, one shared peak, or each schedule's configured peak."""
    if study.lr_sweep:
        scales = ", ".join(f"{s:g}" for s in study.lr_scales)
        return (
            f"peak-lr sweep: each schedule trained at × {scales} its default peak (the Noam peak of the model); "
            "per schedule the peak with the highest mean validation BLEU (last checkpoint) is compared on test"
        )
    if len({f"{s.peak_lr:.6g}" for s in selected}) == 1:
        noam = " (the Noam peak of the model)" if any(s.schedule == "noam" for s in selected) else ""
        return f"same peak: every schedule at peak lr {selected[0].peak_lr:.3g}{noam}"
    return "peaks as configured: " + ", ".join(f"{s.setting} {s.peak_lr:.3g}" for s in selected)
