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
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import torch
from scipy.stats import norm

from noamt.run_dir import CHECKPOINTS, LAST
from noamt_study.collect import CONVERGENCE_TAIL, CONVERGENCE_TOLERANCE, SettingSummary
from noamt_study.plan import Study
from noamt_study.seed_sentence_test import Power, SeedSentenceTest
from noamt_study.significance import ALPHA, BLEU_METRIC, METRICS, Comparison, Leader, Metric, significant
from noamt_study.stats import PairedBootstrap, SeedComparison, Summary

METHOD = (
    "mean ± sample standard deviation over seeds; 95% CI = mean ± t(0.975, n−1) · std / √n (Student t). "
    "Two metrics, each tested the same way: corpus **BLEU** of the hypotheses (sacreBLEU), and the "
    "**likelihood** of the references, NLL per target token = Σ nll_i / Σ tokens_i over the test "
    "sentences (teacher-forced, label smoothing off, nats; lower is better), which every sentence "
    "informs. **Headline test, seeds and test sentences random**: the runs of two schedules are paired "
    "seed by seed (same seed = same initialisation and batches), d_s = M(A_s) − M(B_s) for the metric M, "
    "Δ = mean(d_s); Var(Δ) = V_s + V_f, where V_seed = Σ(d_s − Δ)² / (n(n−1)) is the seeds' spread, V_f = "
    "max(0, (n·V_sent − V_pair) / (n − 1)) the part of the test-sentence variance that all seeds share "
    "(V_sent: bootstrap variance of Δ, V_pair: mean bootstrap variance of one seed's d_s, over "
    "{n_samples} resamples of the sentences shared by all runs, numpy seed 12345), and V_s = max(V_seed, "
    "V_own) the seeds' spread floored at V_own = max(0, V_pair − V_f) / n, the part of it the sentences "
    "alone give; t = Δ / √Var with (n − 1)(Var / V_seed)² degrees of freedom (Welch–Satterthwaite; the "
    "paired t-test when V_f = 0 and the floor is not reached). Its null, “no difference in the expected "
    "metric over new seeds and new sentences”, includes the seed-to-seed variance. With it: the smallest "
    "difference the comparison detects with 80% power at 5% (two-sided), (t(0.975) + t(0.8)) · √(n·V_s / "
    "m + V_f) for m seeds, and the seeds that a difference of 0.5 BLEU (0.01 nats per token) would need; "
    "these rest on variances estimated from the seeds at hand (n − 1 degrees of freedom), so they are "
    "estimates, not bounds. **Given these trained models**: the paired bootstrap over test sentences "
    "(Koehn 2004) on the same resamples, two-sided p = (1 + #{{|Δ* − Δ| ≥ |Δ|}}) / (resamples + 1); it "
    "holds the runs fixed and says nothing about other seeds. Several comparisons: each kind of p-value "
    "is Holm-adjusted over all the comparisons of its metric in the report ([in brackets]; sorted p_(1) ≤ "
    "… ≤ p_(m), adjusted p_(i) = max_(j≤i) min(1, (m − j + 1) · p_(j))), and a difference is called "
    "significant only when its adjusted p is below 0.05. A run is flagged as diverged when its validation "
    "loss rose over the last half of training (positive least-squares slope over the validations from "
    "half-way, last loss more than 1% above the run's lowest); flagged runs stay in the means."
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


def convergence_line(s: SettingSummary, budget: int) -> str:
    """Whether the setting's validation loss was still falling over the last fifth of the budget
    (``collect.tail_drop``): on how many seeds, and the median relative fall."""
    start = round((1.0 - CONVERGENCE_TAIL) * budget)
    if not s.convergence_known:
        return f"{s.setting}: no validation before update {start:,}, so whether it converged is not known"
    drops = sorted(r.tail_drop for r in s.runs)
    median = (drops[(len(drops) - 1) // 2] + drops[len(drops) // 2]) / 2
    falling = s.still_falling_seeds
    state = (
        f"still falling on {len(falling)} of {len(s.runs)} seeds"
        if falling
        else f"no longer falling by more than {CONVERGENCE_TOLERANCE:.1%} on any of its {len(s.runs)} seeds"
    )
    return (
        f"{s.setting}: validation loss from the last validation at or before update {start:,} to update "
        f"{budget:,}: {state} (median fall {median:+.2%})"
    )


def budget_scope(selected: Sequence[SettingSummary], budget: int) -> str:
    """The one sentence that scopes every verdict to the budget the runs were given."""
    falling = [s.setting for s in selected if len(s.still_falling_seeds) * 2 > len(s.runs)]
    if falling:
        return (
            f"Every verdict here is about a budget of {budget:,} updates. At that budget validation loss was still "
            f"falling for {', '.join(falling)} (on most seeds): these runs had not converged, and a longer budget "
            "may rank the schedules differently."
        )
    if not all(s.convergence_known for s in selected):
        return f"Every verdict here is about a budget of {budget:,} updates; whether every run converged is not known."
    return (
        f"Every verdict here is about a budget of {budget:,} updates, at which no schedule's validation loss was "
        f"still falling on most seeds (by more than {CONVERGENCE_TOLERANCE:.1%} over the last fifth)."
    )


def _p(value: float) -> str:
    return f"p = {value:.3f}" if value < 0.01 else f"p = {value:.2f}"


def _with_holm(p: float, p_holm: float | None, family: int) -> str:
    """``p = …`` and, for one test of several, ``; p = … after Holm's adjustment for N comparisons``."""
    adjusted = f"; {_p(p_holm)} after Holm's adjustment for {family} comparisons" if family > 1 else ""
    return _p(p) + adjusted


def _head(split: str, a: SettingSummary, b: SettingSummary, metric: Metric = BLEU_METRIC) -> str:
    sa, sb = a.scores[split][metric.name], b.scores[split][metric.name]
    n = min(sa.n, sb.n)
    digits = 1 if metric.higher_is_better else 3

    def value(s: Summary) -> str:
        return f"{s.mean:.{digits}f}" if s.std is None else f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"

    spread = f"mean ± std over {n} seeds" if n > 1 else "1 seed"
    return f"{split}: {a.setting} {value(sa)} vs {b.setting} {value(sb)} {metric.label} ({spread})"


def _record(a: SettingSummary, b: SettingSummary, seeds: SeedComparison, metric: Metric) -> str:
    """``noam higher on 2 of 3 seeds, cosine on 1`` (BLEU), ``noam lower on ...`` (NLL)."""
    a_better, b_better = (seeds.wins, seeds.losses) if metric.higher_is_better else (seeds.losses, seeds.wins)
    word = "higher" if metric.higher_is_better else "lower"
    return f"{a.setting} {word} on {a_better} of {len(seeds.differences)} seeds, {b.setting} on {b_better}"


def conclusion(
    split: str,
    a: SettingSummary,
    b: SettingSummary,
    test: SeedSentenceTest | None,
    seeds: SeedComparison,
    p_holm: float | None = None,
    family: int = 1,
    metric: Metric = BLEU_METRIC,
) -> str:
    """The headline line: the difference, its interval and p-value with seeds and sentences random,
    and the seed record. Significant only when the (Holm-adjusted, for several) p is below ALPHA;
    the better schedule is the one with the higher BLEU or the lower NLL."""
    head = _head(split, a, b, metric)
    if test is None:
        return f"{head}: 1 common seed, so no test can count the variation between seeds"
    record = _record(a, b, seeds, metric)
    d = metric.digits
    interval = f"95% CI [{test.ci_low:+.{d}f}, {test.ci_high:+.{d}f}]"
    p = _with_holm(test.p_value, p_holm, family)
    if not significant(test.p_value, p_holm, family):
        if test.p_value < ALPHA:
            verdict = f"not significant once adjusted for the {family} comparisons"
        else:
            verdict = "not significant with seeds and test sentences random"
        return f"{head}: difference {test.delta:+.{d}f} ({interval}), {verdict} ({p}); {record}"
    winner = a.setting if (test.delta > 0) == metric.higher_is_better else b.setting
    word = "higher" if metric.higher_is_better else "lower"
    return (
        f"{head}: {winner} {word} by {abs(test.delta):.{d}f} ({interval}), significant with seeds and test "
        f"sentences random ({p}); {record}"
    )


def bootstrap_conclusion(
    split: str,
    a: SettingSummary,
    b: SettingSummary,
    test: PairedBootstrap,
    p_holm: float | None,
    family: int,
    metric: Metric = BLEU_METRIC,
) -> str:
    """The paired bootstrap's line, labelled as what it is: a statement about these trained models."""
    p = _with_holm(test.p_value, p_holm, family)
    verdict = "significant" if significant(test.p_value, p_holm, family) else "not significant"
    d, of = metric.digits, "" if metric is BLEU_METRIC else f" {metric.label}"
    return (
        f"{split}, given these trained models ({test.n_seeds} per schedule; test sentences resampled, seeds not): "
        f"{a.setting} − {b.setting}{of} = {test.delta:+.{d}f} [{test.ci_low:+.{d}f}, {test.ci_high:+.{d}f}], "
        f"{verdict} ({p})"
    )


def power_line(split: str, a: str, b: str, power: Power, metric: Metric = BLEU_METRIC) -> str:
    """What the comparison could have detected, and the seeds the metric's target difference would need."""
    need = f"{power.seeds_for_target} seeds" if power.seeds_for_target is not None else _beyond_100(power, metric)
    return (
        f"{split}, {a} vs {b}: with {power.seeds} seeds this comparison detects a difference of "
        f"{power.detectable:.{metric.digits}f} {metric.unit} "
        f"({power.power:.0%} power, two-sided {power.alpha:.0%}; 95% interval {_interval(power, metric)}, as the "
        f"seeds' variance is estimated with {power.seeds - 1} degrees of freedom); "
        f"{power.target:g} {metric.unit} would need {need}"
    )


def _beyond_100(power: Power, metric: Metric) -> str:
    """Why no number of seeds up to 100 detects the target: the seeds' spread, or the test set's
    shared sentence variance V_f, whose floor (z(0.975) + z(0.8)) sqrt(V_f) no seed count lowers."""
    floor = (norm.ppf(1 - power.alpha / 2) + norm.ppf(power.power)) * power.v_shared**0.5
    if floor > power.target:
        return (
            f"more than any number of seeds: the test set's shared sentence variance alone puts the detectable "
            f"difference at {floor:.{metric.digits}f} {metric.unit} however many seeds are trained"
        )
    return f"more than 100 seeds (at the seeds' measured spread; V_f alone allows {floor:.{metric.digits}f})"


def _interval(power: Power, metric: Metric) -> str:
    d = metric.digits
    return f"{power.detectable_low:.{d}f} to {power.detectable_high:.{d}f}"


def verdict(comparisons: Sequence[Comparison]) -> list[str]:
    """What the report establishes and what it does not: for each metric compared (BLEU first),
    ``metric_verdict``'s three lines, each saying which metric it rests on."""
    names = [m for m in METRICS if any(c.metric == m for c in comparisons)] or [BLEU_METRIC.name]
    return [
        f"On {_metric_name(METRICS[name])}: {line[0].lower()}{line[1:]}"
        for name in names
        for line in metric_verdict([c for c in comparisons if c.metric == name], METRICS[name])
    ]


CRITERIA = {  # what a peak or the validation leader is chosen on (collect.tuning_score)
    "bleu": "the highest mean validation BLEU",
    "loss": "the lowest mean validation loss at the budget",
}


def leader_verdict(leader: Leader) -> list[str]:
    """Where the validation leader stands: which setting it is, and per metric compared (BLEU
    first) the settings it is ahead of and behind on some test split with seeds and sentences
    random (Holm-adjusted over the leader's comparisons of that metric), and those it is separated
    from on none. The leader is picked on validation only, so its test-set comparisons are fair."""
    picked = (
        f"The validation leader is {leader.setting} ({CRITERIA[leader.criterion]}; "
        "the test sets play no part in picking it)"
    )
    if not leader.comparisons:  # it is the reference, or one of only two schedules
        return [f"{picked}: the comparisons above are all those it takes part in."]
    lines = [f"{picked}, tested against every other schedule:"]
    for name in [m for m in METRICS if any(c.metric == m for c in leader.comparisons)]:
        metric = METRICS[name]
        tested = [c for c in leader.comparisons if c.metric == name and c.test is not None]
        if not tested:
            lines.append(f"On {_metric_name(metric)}: one seed per schedule, so nothing can be tested.")
            continue
        splits = len({c.split for c in tested})
        ahead: Counter[str] = Counter()
        behind: Counter[str] = Counter()
        for c in tested:
            if significant(c.test.p_value, c.test_p_holm, len(tested)):
                (ahead if (c.test.delta > 0) == metric.higher_is_better else behind)[c.other] += 1
        level = [o for o in dict.fromkeys(c.other for c in tested) if o not in ahead and o not in behind]
        lines.append(
            f"On {_metric_name(metric)}, with seeds and test sentences random ({len(tested)} comparisons, "
            f"Holm-adjusted together): {leader.setting} is ahead of {_on_splits(ahead, splits)}; "
            f"behind {_on_splits(behind, splits)}; "
            + (
                f"not separated on any test set from {', '.join(level)}."
                if level
                else "separated from every other schedule on some test set."
            )
        )
    return lines


def _on_splits(counts: Counter[str], splits: int) -> str:
    """``a on 2 of 4 test sets, b on 4 of 4 test sets``, or ``none``."""
    return ", ".join(f"{name} on {k} of {splits} test sets" for name, k in counts.items()) or "none"


def _metric_name(metric: Metric) -> str:
    return metric.label if metric is BLEU_METRIC else f"test-set likelihood ({metric.label})"


def metric_verdict(comparisons: Sequence[Comparison], metric: Metric = BLEU_METRIC) -> list[str]:
    """What the report establishes on one metric and what it does not, in three lines: the
    differences that are significant with seeds and sentences random (Holm-adjusted), those
    significant only given the trained models, and what the seeds could detect."""
    tested = [c for c in comparisons if c.test is not None]
    family = len(tested)
    if not tested:
        return ["One seed per schedule: no difference can be tested against the variation between seeds."]

    def name(c: Comparison) -> str:
        return f"{c.reference} − {c.other} on {c.split} ({c.test.delta:+.{metric.digits}f})"

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
    low, high = min(c.power.detectable_low for c in tested), max(c.power.detectable_high for c in tested)
    needed = [c.power.seeds_for_target for c in tested]
    counts = sorted(n for n in needed if n is not None)
    need = (f"{counts[0]} seeds" if counts[0] == counts[-1] else f"{counts[0]} to {counts[-1]} seeds") if counts else ""
    if None in needed:
        need = (
            (need + " (and " if need else "")
            + f"more than 100 on {needed.count(None)} comparison{'s' if needed.count(None) > 1 else ''}"
            + (")" if counts else "")
        )
    d = metric.digits
    lines.append(
        f"With {tested[0].test.n_seeds} seeds the comparisons detect differences of {min(detectable):.{d}f} to "
        f"{max(detectable):.{d}f} {metric.unit} (80% power, 5%; estimated from these seeds: their 95% intervals "
        f"span {low:.{d}f} to {high:.{d}f}); "
        f"{metric.target:g} {metric.unit} would need {need}."
    )
    return lines


def comparison_conclusions(
    comparisons: Sequence[Comparison], settings: Sequence[SettingSummary]
) -> list[tuple[str, str]]:
    """Each comparison's headline conclusion and paired-bootstrap line, as reported together."""
    by_name = {s.setting: s for s in settings}
    lines = []
    for c in comparisons:
        a, b, metric = by_name[c.reference], by_name[c.other], c.scored
        same = [x for x in comparisons if x.metric == c.metric]
        family = sum(x.test is not None for x in same)
        lines.append(
            (
                conclusion(c.split, a, b, c.test, c.seeds, c.test_p_holm, family, metric),
                bootstrap_conclusion(c.split, a, b, c.bootstrap, c.bootstrap_p_holm, len(same), metric),
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
    hosts = Counter(r.host for r in trained)
    on = "; ".join(f"{host}: {n} run{'s' if n > 1 else ''}" for host, n in sorted(hosts.items()))
    return {
        "mode": _mode(study, selected),
        "training": f"experiment={study.experiment} ({cfg['model']['name']} model, {data['name']}), "
        f"{steps} updates per run, seeds {', '.join(map(str, study.seeds))}; runs with the same seed share "
        f"initialisation and batch order{overrides}",
        "evaluated": f"{CHECKPOINTS}/{LAST} of every run (the model after exactly {steps} updates, no selection), "
        f"{decoding}, valid and test sets{limit}; sacreBLEU BLEU and chrF on detokenized, cased text",
        "compared": f"{study.reference} against each other schedule on each test set"
        + (
            f"; the validation leader, where it is not {study.reference}, against each other schedule"
            if len(selected) > 2
            else ""
        ),
        "runs": f"{len(trained)}, {format_duration(sum(r.wall_time_s for r in trained))} of training in all",
        "machine": f"trained on {devices} (hosts: {on}); report written on {platform.node()} ({platform.machine()}, "
        f"{os.cpu_count()} CPUs, {platform.system()}, Python {platform.python_version()}, torch {torch.__version__})",
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": f"`{shlex.join(['noamt-compare', *sys.argv[1:]])}`",
    }


def _mode(study: Study, selected: Sequence[SettingSummary]) -> str:
    """How the peaks were chosen: a sweep, one shared peak, or each schedule's configured peak."""
    if study.tuning:
        scales = ", ".join(f"{s:g}" for s in study.lr_scales)
        by = (
            "mean validation BLEU (last checkpoint)"
            if study.tuning.criterion == "bleu"
            else ("mean validation loss at the budget")
        )
        chosen = ", ".join(f"{s.schedule} × {s.lr_scale:g} ({s.peak_lr:.3g})" for s in selected)
        return (
            f"tuned peaks: per schedule a grid of × {scales} its default peak (the Noam peak of the model), trained "
            f"with seed{'s' if len(study.tuning.seeds) > 1 else ''} {', '.join(map(str, study.tuning.seeds))} and "
            f"grown by ×2 past an edge holding the best peak (at most {study.tuning.max_extensions} times); the peak "
            f"with the best {by} is chosen on validation only, and every seed is trained there. Chosen: {chosen}"
        )
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
