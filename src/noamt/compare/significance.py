"""Is one schedule better than another? The comparison's tests, and sentences that say no more
than the tests show.

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

from noamt.compare.runs import RunResult, SettingSummary, evaluation_dir
from noamt.compare.seed_sentence_test import Power, SeedSentenceTest, power_analysis, seed_sentence_test_from
from noamt.compare.stats import (
    PairedBootstrap,
    SeedComparison,
    Summary,
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


def _p(value: float) -> str:
    return f"p = {value:.3f}" if value < 0.01 else f"p = {value:.2f}"


def _with_holm(p: float, p_holm: float | None, family: int) -> str:
    """``p = …`` and, for one test of several, ``; p = … after Holm's adjustment for N comparisons``."""
    adjusted = f"; {_p(p_holm)} after Holm's adjustment for {family} comparisons" if family > 1 else ""
    return _p(p) + adjusted


def _significant(p: float, p_holm: float | None, family: int) -> bool:
    return (p_holm if family > 1 else p) < ALPHA


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
    if not _significant(test.p_value, p_holm, family):
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
    verdict = "significant" if _significant(test.p_value, p_holm, family) else "not significant"
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

    real = [c for c in tested if _significant(c.test.p_value, c.test_p_holm, family)]
    given = [c for c in comparisons if _significant(c.bootstrap.p_value, c.bootstrap_p_holm, len(comparisons))]
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


@dataclass(frozen=True)
class Comparison:
    """The reference setting against another on one test split."""

    split: str
    reference: str
    other: str
    test: SeedSentenceTest | None  # the headline: seeds and sentences random (None: 1 common seed)
    test_p_holm: float | None  # test.p_value adjusted for all the comparisons reported together (Holm)
    power: Power | None
    conclusion: str
    bootstrap: PairedBootstrap  # given these trained models: sentences resampled, seeds fixed
    bootstrap_p_holm: float | None
    bootstrap_conclusion: str
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
    family, boot_family = sum(t is not None for t in tests), len(pairs)
    out = []
    for i, (split, other) in enumerate(pairs):
        test, boot = tests[i], boots[i]
        out.append(
            Comparison(
                split=split,
                reference=ref.setting,
                other=other.setting,
                test=test,
                test_p_holm=test_holm[i],
                power=power_analysis(test, TARGET_DIFFERENCE, ALPHA) if test else None,
                conclusion=conclusion(split, ref, other, test, records[i], test_holm[i], family),
                bootstrap=boot,
                bootstrap_p_holm=boot_holm[i],
                bootstrap_conclusion=bootstrap_conclusion(split, ref, other, boot, boot_holm[i], boot_family),
                seeds=records[i],
            )
        )
    return out
