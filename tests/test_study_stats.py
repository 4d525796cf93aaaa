"""noamt_study.stats: summaries over seeds, BLEU from sentence statistics, the paired bootstrap,
Holm's adjustment and the seed-by-seed comparison, each against values worked out by hand."""

import math

import pytest
from helpers.study_runs import degrade, sentences
from sacrebleu.metrics import BLEU

from noamt_study import stats


@pytest.mark.parametrize(
    "df, expected",  # two-sided 95% points of Student's t, from printed tables
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622), (30, 2.0423)],
)
def test_t_quantile_matches_tables(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=5e-5)
    assert stats.t_quantile(0.025, df) == pytest.approx(-expected, abs=5e-5)
    assert stats.t_two_sided_mass(expected, df) == pytest.approx(0.95, abs=1e-5)


def test_summary_mean_std_and_t_interval_by_hand():
    s = stats.summarize([30.0, 32.0, 34.0])
    # mean 32; std sqrt((4 + 0 + 4) / 2) = 2; half width t(0.975, 2) * 2 / sqrt(3) = 4.302653 * 1.154701
    assert (s.n, s.mean, s.std) == (3, 32.0, 2.0)
    assert s.ci_low == pytest.approx(32.0 - 4.968275, abs=1e-5)
    assert s.ci_high == pytest.approx(32.0 + 4.968275, abs=1e-5)
    s = stats.summarize([1.0, 2.0, 3.0, 4.0])
    # std sqrt(5 / 3) = 1.290994; half width t(0.975, 3) * 1.290994 / 2 = 3.182446 * 0.645497
    assert s.std == pytest.approx(1.290994, abs=1e-6)
    assert (s.ci_low, s.ci_high) == pytest.approx((2.5 - 2.054260, 2.5 + 2.054260), abs=1e-5)
    one = stats.summarize([7.0])
    assert (one.mean, one.std, one.ci_low, one.ci_high) == (7.0, None, None, None)


def test_sentence_statistics_reproduce_sacrebleu_corpus_bleu():
    refs = sentences(100, 0)
    hyps = degrade(refs, 0.3, 1)
    summed = stats.bleu_statistics(hyps, refs).sum(axis=0)
    assert stats.bleu_from_statistics(summed) == pytest.approx(BLEU().corpus_score(hyps, [refs]).score, abs=1e-9)


def test_paired_bootstrap_finds_a_planted_difference():
    refs = sentences(200, 0)
    better = [stats.bleu_statistics(degrade(refs, 0.2, seed), refs) for seed in (1, 2)]
    worse = [stats.bleu_statistics(degrade(refs, 0.4, seed), refs) for seed in (3, 4)]
    result = stats.paired_bootstrap(better, worse, n_samples=1000)
    assert result.delta > 10 and result.ci_low > 0
    assert result.p_value < 0.05
    assert result.n_samples == 1000 and result.n_seeds == 2


def test_paired_bootstrap_finds_nothing_between_identical_systems():
    refs = sentences(200, 0)
    same = [stats.bleu_statistics(degrade(refs, 0.3, seed), refs) for seed in (1, 2)]
    result = stats.paired_bootstrap(same, same)
    assert result.delta == 0.0 and result.p_value == 1.0


def test_paired_bootstrap_finds_nothing_between_systems_of_equal_quality():
    refs = sentences(300, 0)
    a = stats.bleu_statistics(degrade(refs, 0.3, 1), refs)
    b = stats.bleu_statistics(degrade(refs, 0.3, 2), refs)
    assert stats.paired_bootstrap([a], [b]).p_value > 0.05


def test_holm_adjustment_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4 * 0.005, 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04)
    assert stats.holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm_adjusted([None, 0.2, 0.01]) == [None, pytest.approx(0.2), pytest.approx(0.02)]
    assert stats.holm_adjusted([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, and never below a smaller p's
    assert stats.holm_adjusted([0.03]) == [0.03]


def test_seed_level_comparison_has_the_known_winner_and_t_test():
    seeds = stats.compare_seeds([31.0, 32.0, 33.0], [30.0, 30.0, 30.0])  # d = 1, 2, 3
    assert (seeds.wins, seeds.losses, seeds.ties, seeds.mean_difference) == (3, 0, 0, 2.0)
    assert seeds.t == pytest.approx(2.0 / (1.0 / math.sqrt(3)))  # mean(d) / (std(d) / sqrt(n))
    assert seeds.p_value == pytest.approx(0.07418, abs=1e-4)  # Student t, 2 degrees of freedom
    split = stats.compare_seeds([30.0, 29.0], [29.0, 30.0])
    assert (split.wins, split.losses, split.mean_difference, split.p_value) == (1, 1, 0.0, pytest.approx(1.0))
    assert stats.compare_seeds([3.0], [1.0]).p_value is None
