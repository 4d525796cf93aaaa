"""The seed-and-sentence test: its formula by hand, its calibration on simulated null comparisons
(where the sentence-only bootstrap and the t-test over seeds each reject too often), its power."""

import math

import numpy as np
import pytest
from sacrebleu.metrics import BLEU
from scipy import stats as scipy_stats

from noamt_study import stats
from noamt_study.seed_sentence_test import (
    LARGE_DF,
    detectable_difference,
    from_variances,
    power_analysis,
    seed_sentence_test,
    seed_sentence_test_from,
)
from noamt_study.simulate import Scenario, rejection_rates, simulate_statistics


def test_bleu_of_many_rows_at_once_is_sacrebleus_bleu():
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(300):
        sys_len, ref_len = rng.integers(0, 60, 2)
        totals = [max(int(sys_len) - k, 0) for k in range(4)]
        correct = [int(rng.integers(0, t + 1)) if rng.random() > 0.15 else 0 for t in totals]  # zeros: smoothing
        rows.append([sys_len, ref_len, *correct, *totals])
    rows = np.array(rows, dtype=np.float64)
    expected = [
        BLEU.compute_bleu(
            correct=[int(x) for x in r[2:6]],
            total=[int(x) for x in r[6:]],
            sys_len=int(r[0]),
            ref_len=int(r[1]),
            smooth_method="exp",
        ).score
        for r in rows
    ]
    assert stats.bleu_from_statistic_rows(rows) == pytest.approx(expected, abs=1e-9)
    assert any(e == 0.0 for e in expected) and any(0 < e < 100 for e in expected)


def test_the_variance_components_by_hand():
    # d = 1, 2, 3: V_seed = 1 / 3; V_f = (3 * 0.2 - 0.3) / 2 = 0.15; Var = 0.48333; df = 2 (Var / V_seed)^2
    test = from_variances(np.array([1.0, 2.0, 3.0]), v_sent=0.2, v_pair=0.3, n_samples=1000)
    assert (test.delta, test.n_seeds) == (2.0, 3)
    assert test.v_seed == pytest.approx(1 / 3) and test.v_shared == pytest.approx(0.15)
    assert test.std_error == pytest.approx(math.sqrt(1 / 3 + 0.15))
    assert test.df == pytest.approx(2 * ((1 / 3 + 0.15) / (1 / 3)) ** 2)
    assert test.t == pytest.approx(2.0 / math.sqrt(1 / 3 + 0.15))
    assert test.p_value == pytest.approx(2 * scipy_stats.t.sf(test.t, test.df))
    half = scipy_stats.t.ppf(0.975, test.df) * test.std_error
    assert (test.ci_low, test.ci_high) == pytest.approx((2.0 - half, 2.0 + half))
    assert test.seed_sd == pytest.approx(1.0)
    # the sentence variance all seeds share is never negative
    assert from_variances(np.array([1.0, 2.0, 3.0]), v_sent=0.05, v_pair=0.3, n_samples=1000).v_shared == 0.0


def test_seeds_that_agree_by_chance_do_not_make_the_test_surer_than_the_sentences_allow():
    # V_seed = 1e-4 / 3; V_f = 0.15; V_own = (0.3 - 0.15) / 3 = 0.05 > V_seed: Var = 0.05 + 0.15 = V_sent
    test = from_variances(np.array([0.99, 1.0, 1.01]), v_sent=0.2, v_pair=0.3, n_samples=1000)
    assert test.v_own == pytest.approx(0.05) and test.v_seeds_used == pytest.approx(0.05)
    assert test.std_error == pytest.approx(math.sqrt(0.2))
    assert test.df == LARGE_DF  # the seeds agree: a normal test on the sentence variance
    rng = np.random.default_rng(0)
    for _ in range(200):  # Var^ >= V_sent whenever the seeds share sentence variance
        n = int(rng.integers(2, 8))
        v_pair = float(rng.uniform(0.01, 1.0))
        v_sent = float(rng.uniform(v_pair / n, v_pair))
        test = from_variances(rng.normal(0, 0.3, n), v_sent=v_sent, v_pair=v_pair, n_samples=1000)
        assert test.std_error**2 >= v_sent * (1 - 1e-12)


def test_without_shared_sentence_variance_it_is_the_paired_t_test_over_seeds():
    d = np.array([0.4, -0.1, 0.9, 0.3])
    test = from_variances(d, v_sent=0.01, v_pair=0.04, n_samples=1000)  # (4 * 0.01 - 0.04) / 3 = 0
    assert test.v_shared == 0.0 and test.df == pytest.approx(3)
    assert test.p_value == pytest.approx(stats.compare_seeds(list(d), [0.0] * 4).p_value)
    assert test.p_value == pytest.approx(scipy_stats.ttest_1samp(d, 0.0).pvalue)


def test_on_real_statistics_the_delta_is_the_difference_of_mean_bleu():
    a, b = simulate_statistics(np.random.default_rng(3), Scenario(seeds=3, sentences=300, shift=0.3))
    test = seed_sentence_test(a, b, n_samples=200)
    mean_bleu = [np.mean([stats.bleu_from_statistics(s.sum(axis=0)) for s in runs]) for runs in (a, b)]
    assert test.delta == pytest.approx(mean_bleu[0] - mean_bleu[1])
    assert test.delta > 0 and test.v_sent > 0 and test.v_pair > test.v_sent  # one seed varies more than the mean
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_sentence_test(a[:1], b[:1])


def sentences_only(observed, resampled):
    return stats.paired_bootstrap_from(observed, resampled).p_value


def seeds_only(observed, resampled):
    return stats.compare_seeds(list(observed), [0.0] * len(observed)).p_value


def seeds_and_sentences(observed, resampled):
    return seed_sentence_test_from(observed, resampled).p_value


TESTS = {"sentences": sentences_only, "seeds": seeds_only, "seeds and sentences": seeds_and_sentences}


@pytest.mark.slow
def test_under_seed_noise_only_the_seed_aware_tests_keep_their_level():
    # each run's BLEU moves with its seed by more than the test sentences move it
    rates = rejection_rates(Scenario(seeds=3, sentences=500, seed_sd=0.06), TESTS, replicates=200)
    assert rates["sentences"] > 0.25  # the bootstrap holds the trained models fixed
    assert 0.01 <= rates["seeds and sentences"] <= 0.10
    assert 0.01 <= rates["seeds"] <= 0.10


@pytest.mark.slow
def test_when_systems_differ_sentence_by_sentence_the_t_test_over_seeds_loses_its_level():
    # no seed effect, but each system is better at its own sentences: a new test set changes the winner
    rates = rejection_rates(Scenario(seeds=6, sentences=500, seed_sd=0.0, system_sd=0.3), TESTS, replicates=200)
    assert rates["seeds"] > 0.12  # the t-test holds the test sentences fixed
    assert 0.01 <= rates["seeds and sentences"] <= 0.10


def test_a_real_difference_is_found():
    rates = rejection_rates(Scenario(seeds=6, sentences=500, seed_sd=0.06, shift=0.15), TESTS, replicates=60)
    assert rates["seeds and sentences"] > 0.5


def test_power_analysis_by_hand():
    test = from_variances(np.array([1.0, 2.0, 3.0]), v_sent=0.2, v_pair=0.3, n_samples=1000)
    power = power_analysis(test, target=1.2)
    variance, df = 1 / 3 + 0.15, 2 * ((1 / 3 + 0.15) / (1 / 3)) ** 2  # seed_var = n V_seed = 1
    expected = (scipy_stats.t.ppf(0.975, df) + scipy_stats.t.ppf(0.8, df)) * math.sqrt(variance)
    assert (power.seed_var, power.seeds) == (pytest.approx(1.0), 3)
    assert power.detectable == pytest.approx(expected)
    needed = power.seeds_for_target
    assert detectable_difference(1.0, 0.15, needed) <= 1.2 < detectable_difference(1.0, 0.15, needed - 1)
    # (1.96 + 0.84) * sqrt(0.15) = 1.08 > 1: no number of seeds gets past the test set's own variance
    assert power_analysis(test, target=1.0).seeds_for_target is None


def test_the_detectable_difference_carries_the_uncertainty_of_six_seeds():
    """With no shared sentence variance the detectable difference scales with the seeds' standard
    deviation, so its 95% interval is sqrt(5 / chi2(0.975, 5)) = 0.624 to sqrt(5 / chi2(0.025, 5))
    = 2.453 times the estimate (0.85 BLEU: 0.53 to 2.08)."""
    test = from_variances(np.array([0.1, 0.9, 0.3, 1.2, -0.2, 0.6]), v_sent=0.0, v_pair=0.0, n_samples=1000)
    power = power_analysis(test)
    assert power.v_shared == 0.0
    assert power.detectable_low / power.detectable == pytest.approx(math.sqrt(5 / scipy_stats.chi2.ppf(0.975, 5)))
    assert power.detectable_high / power.detectable == pytest.approx(math.sqrt(5 / scipy_stats.chi2.ppf(0.025, 5)))
    assert power.detectable_low / power.detectable == pytest.approx(0.624, abs=1e-3)
