"""Is one schedule better than another? The comparison's tests (``noamt_study.report.sentences``
words their results, saying no more than they show).

For each test split and each schedule B other than the reference A, with the runs paired by seed:

- the headline, ``seed_sentence_test``: seeds and test sentences both random, so the answer is
  about training A or B again, with other seeds, and scoring other sentences of the same kind;
- the paired bootstrap over test sentences, *given these trained models*: whether the
  difference between these particular runs survives other test sentences;
- the seed-by-seed record: on how many seeds each schedule scores higher.

Each kind of p-value is Holm-adjusted over all the comparisons of the report (one family).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from noamt_study.collect import RunResult, SettingSummary, evaluation_dir
from noamt_study.seed_sentence_test import Power, SeedSentenceTest, power_analysis, seed_sentence_test_from
from noamt_study.stats import (
    PairedBootstrap,
    SeedComparison,
    bleu_from_statistics,
    bleu_statistics,
    bootstrap_differences,
    compare_seeds,
    holm_adjusted,
    paired_bootstrap_from,
)

ALPHA = 0.05
TARGET_DIFFERENCE = 0.5  # BLEU: the power analysis says how many seeds would detect it


def sentence_statistics(run: RunResult, split: str, references: Sequence[str]) -> np.ndarray:
    """BLEU statistics of the run's hypotheses on ``split``, checked against its results.json."""
    table = bleu_statistics(run.hypotheses(split), references)
    bleu, recorded = bleu_from_statistics(table.sum(axis=0)), run.scores[split]["bleu"]
    if abs(bleu - recorded) > 0.01:
        raise ValueError(
            f"{evaluation_dir(run.run_dir)}: {split} hypotheses score {bleu:.2f} BLEU but results.json says "
            f"{recorded:.2f}; delete that folder to evaluate the run again"
        )
    return table


def paired_differences(
    a: SettingSummary, b: SettingSummary, split: str, references: Sequence[str], n_samples: int = 1000
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The seeds both settings ran, d_s = BLEU(a_s) - BLEU(b_s) on ``split`` and d_s on
    ``n_samples`` resamples of its sentences (``stats.bootstrap_differences``)."""
    seeds = sorted(set(a.seeds) & set(b.seeds))
    if not seeds:
        raise ValueError(f"{a.setting} and {b.setting} share no seed to pair runs by")

    def tables(s: SettingSummary) -> list[np.ndarray]:
        by_seed = {r.job.seed: r for r in s.runs}
        return [sentence_statistics(by_seed[seed], split, references) for seed in seeds]

    return seeds, *bootstrap_differences(tables(a), tables(b), n_samples)


def significant(p: float, p_holm: float | None, family: int) -> bool:
    """Whether a difference is called significant: its p-value, Holm-adjusted when it is one test
    of a ``family`` of several, below ALPHA."""
    return (p_holm if family > 1 else p) < ALPHA


@dataclass(frozen=True)
class Comparison:
    """The reference setting against another on one test split."""

    split: str
    reference: str
    other: str
    test: SeedSentenceTest | None  # the headline: seeds and sentences random (None: 1 common seed)
    test_p_holm: float | None  # test.p_value adjusted for all the comparisons reported together (Holm)
    power: Power | None
    bootstrap: PairedBootstrap  # given these trained models: sentences resampled, seeds fixed
    bootstrap_p_holm: float | None
    seeds: SeedComparison  # seed by seed: the differences, wins and losses (and the paired t-test)


def compare_to_reference(
    settings: Sequence[SettingSummary],
    reference: str,
    splits: Sequence[str],
    references: dict[str, Sequence[str]],
    n_samples: int = 1000,
) -> list[Comparison]:
    """The schedule ``reference`` against every other setting on each split, every test on the
    same sentence resamples; each kind of p-value Holm-adjusted over all the comparisons."""
    ref = next((s for s in settings if s.schedule == reference), None)
    if ref is None:
        raise ValueError(f"reference schedule {reference!r} is not among {[s.setting for s in settings]}")
    pairs = [(split, other) for split in splits for other in settings if other is not ref]
    tests, boots, records = [], [], []
    for split, other in pairs:
        _, observed, resampled = paired_differences(ref, other, split, references[split], n_samples)
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
            power=power_analysis(tests[i], TARGET_DIFFERENCE, ALPHA) if tests[i] else None,
            bootstrap=boots[i],
            bootstrap_p_holm=boot_holm[i],
            seeds=records[i],
        )
        for i, (split, other) in enumerate(pairs)
    ]
