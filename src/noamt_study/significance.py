"""Is one schedule better than another? The comparison's tests (``noamt_study.report.sentences``
words their results, saying no more than they show).

For each metric, each test split and each schedule B other than the reference A, with the runs
paired by seed:

- the headline, ``seed_sentence_test``: seeds and test sentences both random, so the answer is
  about training A or B again, with other seeds, and scoring other sentences of the same kind;
- the paired bootstrap over test sentences, *given these trained models*: whether the
  difference between these particular runs survives other test sentences;
- the seed-by-seed record: on how many seeds each schedule scores higher.

Two metrics are tested the same way: corpus BLEU of the hypotheses (the headline a translator
cares about) and the teacher-forced likelihood of the references, NLL per target token =
sum_i nll_i / sum_i tokens_i over the test sentences (label smoothing off; ``noamt-evaluate``
writes nll_i and tokens_i per sentence). Every sentence contributes to the likelihood, not only
the n-grams the search happened to produce, so it separates training setups with fewer seeds.
Each kind of p-value is Holm-adjusted over all the comparisons of its metric in the report (one
family per metric and kind).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from noamt.run_dir import RunDir
from noamt_study.collect import RunResult, SettingSummary, tuning_score
from noamt_study.seed_sentence_test import Power, SeedSentenceTest, power_analysis, seed_sentence_test_from
from noamt_study.stats import (
    PairedBootstrap,
    SeedComparison,
    bleu_from_statistic_rows,
    bleu_from_statistics,
    bleu_statistics,
    bootstrap_differences,
    compare_seeds,
    holm_adjusted,
    nll_per_token_rows,
    paired_bootstrap_from,
)

ALPHA = 0.05


@dataclass(frozen=True)
class Metric:
    """A corpus metric computed from summed per-sentence statistics, and how the report words it."""

    name: str  # the key in a run's scores: "bleu" or "nll"
    label: str  # in sentences: "BLEU", "NLL/token"
    unit: str  # of a difference: "BLEU", "nats/token"
    higher_is_better: bool
    score_rows: Callable[[np.ndarray], np.ndarray]  # summed statistics (R, k) -> scores (R,)
    target: float  # the difference the power analysis asks the seeds for
    digits: int  # decimals of a difference in the report


BLEU_METRIC = Metric("bleu", "BLEU", "BLEU", True, bleu_from_statistic_rows, 0.5, 2)
NLL_METRIC = Metric("nll", "NLL/token", "nats/token", False, nll_per_token_rows, 0.01, 4)
METRICS = {m.name: m for m in (BLEU_METRIC, NLL_METRIC)}
TARGET_DIFFERENCE = BLEU_METRIC.target  # BLEU: the power analysis says how many seeds would detect it


def sentence_statistics(run: RunResult, split: str, references: Sequence[str], metric: str = "bleu") -> np.ndarray:
    """The run's per-sentence statistics of ``metric`` on ``split``, checked against its
    results.json: BLEU's (N, 10) from its hypotheses, or the likelihood's (N, 2) [nll, tokens]."""
    if metric == "nll":
        return run.sentence_nll(split)
    table = bleu_statistics(run.hypotheses(split), references)
    bleu, recorded = bleu_from_statistics(table.sum(axis=0)), run.scores[split]["bleu"]
    if abs(bleu - recorded) > 0.01:
        raise ValueError(
            f"{RunDir.at(run.run_dir).eval_dir}: {split} hypotheses score {bleu:.2f} BLEU but results.json says "
            f"{recorded:.2f}; delete that folder to evaluate the run again"
        )
    return table


def paired_differences(
    a: SettingSummary,
    b: SettingSummary,
    split: str,
    references: Sequence[str],
    n_samples: int = 1000,
    metric: Metric = BLEU_METRIC,
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The seeds both settings ran, d_s = M(a_s) - M(b_s) on ``split`` and d_s on ``n_samples``
    resamples of its sentences (``stats.bootstrap_differences``), M the ``metric``."""
    seeds = sorted(set(a.seeds) & set(b.seeds))
    if not seeds:
        raise ValueError(f"{a.setting} and {b.setting} share no seed to pair runs by")

    def tables(s: SettingSummary) -> list[np.ndarray]:
        by_seed = {r.job.seed: r for r in s.runs}
        return [sentence_statistics(by_seed[seed], split, references, metric.name) for seed in seeds]

    return seeds, *bootstrap_differences(tables(a), tables(b), n_samples, score_rows=metric.score_rows)


def significant(p: float, p_holm: float | None, family: int) -> bool:
    """Whether a difference is called significant: its p-value, Holm-adjusted when it is one test
    of a ``family`` of several, below ALPHA."""
    return (p_holm if family > 1 else p) < ALPHA


@dataclass(frozen=True)
class Comparison:
    """The reference setting against another on one test split, on one metric (Δ = reference − other)."""

    split: str
    reference: str
    other: str
    test: SeedSentenceTest | None  # the headline: seeds and sentences random (None: 1 common seed)
    test_p_holm: float | None  # test.p_value adjusted for all the comparisons reported together (Holm)
    power: Power | None
    bootstrap: PairedBootstrap  # given these trained models: sentences resampled, seeds fixed
    bootstrap_p_holm: float | None
    seeds: SeedComparison  # seed by seed: the differences, wins and losses (and the paired t-test)
    metric: str = "bleu"  # "bleu" or "nll" (METRICS)

    @property
    def scored(self) -> Metric:
        return METRICS[self.metric]


def compare_to_reference(
    settings: Sequence[SettingSummary],
    reference: str,
    splits: Sequence[str],
    references: dict[str, Sequence[str]],
    n_samples: int = 1000,
    metrics: Sequence[str] = ("bleu",),
) -> list[Comparison]:
    """The schedule ``reference`` against every other setting on each split and each of ``metrics``
    (a metric is skipped on a split where some run lacks it), every test on the same sentence
    resamples; each kind of p-value Holm-adjusted over all the comparisons of its metric."""
    ref = next((s for s in settings if s.schedule == reference), None)
    if ref is None:
        raise ValueError(f"reference schedule {reference!r} is not among {[s.setting for s in settings]}")
    comparisons = []
    for name in metrics:
        metric = METRICS[name]
        scored = [split for split in splits if all(name in s.scores.get(split, {}) for s in settings)]
        pairs = [(split, other) for split in scored for other in settings if other is not ref]
        comparisons += _family(ref, pairs, references, n_samples, metric)
    return comparisons


@dataclass(frozen=True)
class Leader:
    """The compared setting with the best validation score (``collect.tuning_score`` of
    ``criterion``), and its comparisons with every other setting on the test sets. Picked on
    validation only, it can be tested on the test sets without the pick biasing the test."""

    setting: str
    criterion: str  # "bleu": highest mean validation BLEU; "loss": lowest mean validation loss at the budget
    comparisons: list[Comparison]  # empty where they would repeat the reference's (see compare_to_leader)


def compare_to_leader(
    settings: Sequence[SettingSummary],
    reference: str,
    criterion: str,
    splits: Sequence[str],
    references: dict[str, Sequence[str]],
    n_samples: int = 1000,
    metrics: Sequence[str] = ("bleu",),
) -> Leader:
    """The validation leader (the first on ties) against every other setting, as
    :func:`compare_to_reference`, in families of their own (one per metric). No comparisons where
    the leader is the schedule ``reference`` or only two settings are compared: the reference's
    comparisons are then the same ones."""
    leader = max(settings, key=lambda s: tuning_score(s, criterion))
    if leader.schedule == reference or len(settings) < 3:
        return Leader(leader.setting, criterion, [])
    comparisons = compare_to_reference(settings, leader.schedule, splits, references, n_samples, metrics)
    return Leader(leader.setting, criterion, comparisons)


def _family(
    ref: SettingSummary,
    pairs: Sequence[tuple[str, SettingSummary]],
    references: dict[str, Sequence[str]],
    n_samples: int,
    metric: Metric,
) -> list[Comparison]:
    """The comparisons of one metric, their p-values Holm-adjusted together."""
    tests, boots, records = [], [], []
    for split, other in pairs:
        _, observed, resampled = paired_differences(ref, other, split, references[split], n_samples, metric)
        tests.append(seed_sentence_test_from(observed, resampled) if len(observed) > 1 else None)
        boots.append(paired_bootstrap_from(observed, resampled))
        records.append(compare_seeds(list(observed), [0.0] * len(observed)))
    test_holm = holm_adjusted([t.p_value if t else None for t in tests])
    boot_holm = holm_adjusted([b.p_value for b in boots])
    return [
        Comparison(
            split=split,
            reference=ref.setting,
            other=other.setting,
            test=tests[i],
            test_p_holm=test_holm[i],
            power=power_analysis(tests[i], metric.target, ALPHA) if tests[i] else None,
            bootstrap=boots[i],
            bootstrap_p_holm=boot_holm[i],
            seeds=records[i],
            metric=metric.name,
        )
        for i, (split, other) in enumerate(pairs)
    ]
