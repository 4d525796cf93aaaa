"""A test of "schedule A scores higher than B" whose null includes the seeds and the test sentences,
and the power of such a comparison.

Runs are paired by seed s = 1..n (same seed: same initialisation and batch order). On a test set
T of N sentences, d_s = BLEU(A_s) - BLEU(B_s) and the statistic is Delta = (1/n) sum_s d_s. The
model behind the test is the crossed random-effects model of seeds and sentences:

    d_s(T) = delta + e_s + f(T) + g_s(T)

e_s: what seed s does to the difference (variance sigma_e^2), the same on every test set;
f(T): what the sampled sentences do to it, shared by every seed (variance V_f, ~1/N);
g_s(T): the pair's own sentence-level luck (variance V_g, ~1/N), new for each seed and sentence.
delta is the difference in expected BLEU over new seeds and new sentences of the same kind, the
quantity a claim "A beats B" is about; H0: delta = 0. Then

    Var(Delta) = sigma_e^2 / n + V_f + V_g / n.

Neither classic test estimates it. The paired t-test over seeds sees the seeds' spread on this
test set, E[V_seed] = (sigma_e^2 + V_g) / n, and misses V_f; the paired bootstrap over sentences
(Koehn 2004) holds the trained models fixed, E[V_sent] = V_f + V_g / n, and misses sigma_e^2 / n.
The bootstrap also gives each seed's own difference, E[V_pair] = V_f + V_g, so with the same
resamples for every run:

    V_seed = sum_s (d_s - Delta)^2 / (n (n - 1))          (the t-test's squared standard error)
    V_sent = Var*(Delta*)                                   (bootstrap variance of Delta)
    V_pair = (1/n) sum_s Var*(d_s*)                         (bootstrap variance of one seed's d_s)
    V_f    = max(0, (n V_sent - V_pair) / (n - 1))          (the part shared by the seeds)
    V_own  = max(0, V_pair - V_f) / n                       (estimates V_g / n)
    V_s    = max(V_seed, V_own)                             (estimates (sigma_e^2 + V_g) / n)
    Var^(Delta) = V_s + V_f
    t = Delta / sqrt(Var^),  df = (n - 1) (Var^ / V_seed)^2   (Welch-Satterthwaite, V_f from N >> n)
    p = P(|T_df| >= |t|)

V_seed + V_f is unbiased for Var(Delta), but with few seeds V_seed is a noisy estimate (n - 1
degrees of freedom), and when the seeds agree by chance it can fall below V_own, the part of it
that the sentences alone guarantee (E[V_seed] = sigma_e^2 / n + V_g / n >= V_g / n). V_s is the
usual truncation of a variance component at zero: sigma_e^2 / n is estimated as
max(0, V_seed - V_own). So Var^ >= V_own + V_f = V_sent (when V_f > 0): the test never claims
more than the paired bootstrap over sentences, which holds the seeds fixed, does. The degrees of
freedom stay those of V_seed + V_f: as the seeds agree, the test becomes a normal test on the
sentence variance. (Taking them from V_s instead keeps n - 1 degrees of freedom on a variance
the bootstrap already pins down, and rejected 0% of simulated nulls with 3 seeds.)

With V_f = 0 (two groups of runs of one system) and V_seed >= V_own this is the paired t-test.
Summing V_seed and V_sent
instead would count V_g / n twice, the conservative bias of resampling both seeds and sentences
(Owen 2007, "the pigeonhole bootstrap"). Clark et al. 2011 make the same point for optimizer
instability in MT; this test is the variance-components form of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from noamt_study.stats import bootstrap_differences, t_quantile, t_two_sided_mass

LARGE_DF = 10_000  # degrees of freedom taken as a normal distribution


@dataclass(frozen=True)
class SeedSentenceTest:
    """Delta = mean over seeds of BLEU(A_s) - BLEU(B_s), tested with seeds and sentences random.

    ``v_seed``, ``v_sent``, ``v_pair``, ``v_shared`` (V_f) and ``v_own`` are the variance estimates
    of the module docstring; ``v_seeds_used`` = max(v_seed, v_own) (V_s);
    ``std_error`` = sqrt(v_seeds_used + v_shared); the interval is
    Delta +- t_{0.975, df} * std_error. ``seed_sd`` is the standard deviation of d_s over seeds.
    """

    delta: float
    differences: tuple[float, ...]  # d_s, in seed order
    v_seed: float
    v_sent: float
    v_pair: float
    v_shared: float
    v_own: float
    std_error: float
    df: float
    t: float | None
    p_value: float
    ci_low: float
    ci_high: float
    n_samples: int

    @property
    def n_seeds(self) -> int:
        return len(self.differences)

    @property
    def seed_sd(self) -> float:
        return math.sqrt(self.n_seeds * self.v_seed)

    @property
    def v_seeds_used(self) -> float:
        return max(self.v_seed, self.v_own)


def seed_sentence_test(
    stats_a: Sequence[np.ndarray],
    stats_b: Sequence[np.ndarray],
    n_samples: int = 1000,
    seed: int = 12345,
    confidence: float = 0.95,
) -> SeedSentenceTest:
    """The test of the module docstring. ``stats_a[s]`` and ``stats_b[s]`` are the (N, 10) sentence
    statistics (``stats.bleu_statistics``) of A and B trained with the s-th common seed; n >= 2."""
    return seed_sentence_test_from(*bootstrap_differences(stats_a, stats_b, n_samples, seed), confidence)


def seed_sentence_test_from(observed: np.ndarray, resampled: np.ndarray, confidence: float = 0.95) -> SeedSentenceTest:
    """The test from ``stats.bootstrap_differences``: d_s, shape (n,), and d*_is, shape (B, n)."""
    if len(observed) < 2:
        raise ValueError(f"the seed-and-sentence test needs at least 2 seeds per system, got {len(observed)}")
    v_sent = float(resampled.mean(axis=1).var(ddof=1))
    v_pair = float(resampled.var(axis=0, ddof=1).mean())
    return from_variances(observed, v_sent, v_pair, resampled.shape[0], confidence)


def from_variances(
    differences: np.ndarray, v_sent: float, v_pair: float, n_samples: int, confidence: float = 0.95
) -> SeedSentenceTest:
    """The test from the per-seed differences d_s and the two bootstrap variances."""
    n = len(differences)
    delta = float(np.mean(differences))
    v_seed = float(np.var(differences, ddof=1)) / n
    v_shared = max(0.0, (n * v_sent - v_pair) / (n - 1))
    v_own = max(0.0, v_pair - v_shared) / n
    v_seeds = max(v_seed, v_own)
    variance = v_seeds + v_shared
    df = satterthwaite_df(variance, v_seed, n)
    se = math.sqrt(variance)
    if se == 0.0:
        t, p = None, 1.0 if delta == 0.0 else 0.0
    else:
        t = delta / se
        p = 1.0 - t_two_sided_mass(t, df)
    half = t_quantile(0.5 + confidence / 2.0, df) * se
    return SeedSentenceTest(
        delta=delta,
        differences=tuple(float(d) for d in differences),
        v_seed=v_seed,
        v_sent=float(v_sent),
        v_pair=float(v_pair),
        v_shared=v_shared,
        v_own=v_own,
        std_error=se,
        df=df,
        t=t,
        p_value=p,
        ci_low=delta - half,
        ci_high=delta + half,
        n_samples=n_samples,
    )


def satterthwaite_df(variance: float, v_seed: float, n: int) -> float:
    """(n - 1) (Var / V_seed)^2, the Welch-Satterthwaite degrees of freedom when V_seed is the only
    part estimated from few values, capped at LARGE_DF (a normal distribution)."""
    if v_seed <= 0.0:
        return float(LARGE_DF)
    return min(float(LARGE_DF), (n - 1) * (variance / v_seed) ** 2)


@dataclass(frozen=True)
class Power:
    """What a comparison with the measured variances can detect (two-sided test at ``alpha``).

    For m seeds, Var(m) = seed_var / m + v_shared, with seed_var = n V_s the variance of one
    seed's difference (it holds sigma_e^2 and V_g) and v_shared = V_f. The smallest difference
    detected with probability ``power``: (t_{1 - alpha/2, df} + t_{power, df}) sqrt(Var(m)),
    df = (m - 1) (Var(m) / (seed_var / m))^2.
    """

    seed_var: float
    v_shared: float
    seeds: int
    detectable: float  # with ``seeds`` seeds
    target: float
    seeds_for_target: int | None  # None: more than max_seeds (the test set alone may forbid it)
    detectable_low: float  # ``detectable`` at the ends of seed_var's 95% interval
    detectable_high: float
    alpha: float = 0.05
    power: float = 0.8


def detectable_difference(seed_var: float, v_shared: float, seeds: int, alpha: float = 0.05, power: float = 0.8):
    """(t_{1-alpha/2, df} + t_{power, df}) sqrt(seed_var / m + v_shared) for m = ``seeds``."""
    variance = seed_var / seeds + v_shared
    df = satterthwaite_df(variance, seed_var / seeds, seeds)
    return (t_quantile(1.0 - alpha / 2.0, df) + t_quantile(power, df)) * math.sqrt(variance)


def power_analysis(
    test: SeedSentenceTest, target: float = 0.5, alpha: float = 0.05, power: float = 0.8, max_seeds: int = 100
) -> Power:
    """The detectable difference with the test's own seeds, and the fewest seeds (2..max_seeds) that
    detect ``target`` BLEU, from the variances the test measured.

    seed_var is estimated from n seeds, so it carries n - 1 degrees of freedom; the detectable
    difference is also given at the ends of its 95% chi-square interval,
    seed_var * (n - 1) / chi2_{0.975, n-1} and seed_var * (n - 1) / chi2_{0.025, n-1} (V_f held fixed)."""
    seed_var = test.n_seeds * test.v_seeds_used
    df = test.n_seeds - 1
    low_var, high_var = (seed_var * df / chi2.ppf(q, df) for q in (0.975, 0.025))
    needed = next(
        (
            m
            for m in range(2, max_seeds + 1)
            if detectable_difference(seed_var, test.v_shared, m, alpha, power) <= target
        ),
        None,
    )
    return Power(
        seed_var=seed_var,
        v_shared=test.v_shared,
        seeds=test.n_seeds,
        detectable=detectable_difference(seed_var, test.v_shared, test.n_seeds, alpha, power),
        target=target,
        seeds_for_target=needed,
        alpha=alpha,
        power=power,
        detectable_low=detectable_difference(low_var, test.v_shared, test.n_seeds, alpha, power),
        detectable_high=detectable_difference(high_var, test.v_shared, test.n_seeds, alpha, power),
    )
