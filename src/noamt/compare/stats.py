"""Statistics for comparing training runs: summaries over seeds, a paired bootstrap test over
sentences and a paired t-test over seeds.

Over the n seeds of one setting, with values x_1..x_n:

    mean = (1/n) sum_i x_i
    std  = sqrt(sum_i (x_i - mean)^2 / (n - 1))                 (sample standard deviation)
    95% CI = mean +- t_{0.975, n-1} * std / sqrt(n)              (Student t interval)

Between two systems A and B on one test set (the paired bootstrap of Koehn 2004, as in
sacreBLEU's ``paired-bs``): sentences are resampled with replacement, the same resample for
both systems, and BLEU is recomputed from summed sufficient statistics on each resample.

Between A and B over seeds (``compare_seeds``): the per-seed differences d_s = x_A,s - x_B,s,
how many seeds each side wins, and the paired t-test t = mean(d) / (std(d) / sqrt(n)), n - 1
degrees of freedom. The bootstrap asks whether a difference survives other test sentences; the
t-test whether it survives other seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sacrebleu.metrics import BLEU

MAX_NGRAM_ORDER = 4


def t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` degrees of freedom (Abramowitz & Stegun 26.7.3).

    With theta = atan(t / sqrt(df)), s = sin(theta), c = cos(theta):
        df odd:  (2/pi) * (theta + s * (c + (2/3) c^3 + (2*4)/(3*5) c^5 + ... up to c^(df-2)))
        df even: s * (1 + (1/2) c^2 + (1*3)/(2*4) c^4 + ... up to c^(df-2))
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:
        term, total = math.cos(theta), 0.0
        for j in range(1, (df - 1) // 2 + 1):
            total += term
            term *= c2 * (2 * j) / (2 * j + 1)
        return 2.0 / math.pi * (theta + math.sin(theta) * total)
    term, total = 1.0, 0.0
    for j in range(df // 2):
        total += term
        term *= c2 * (2 * j + 1) / (2 * j + 2)
    return math.sin(theta) * total


def t_quantile(p: float, df: int) -> float:
    """The t with P(T <= t) = p for Student's t with ``df`` degrees of freedom (bisection)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    target = 2.0 * p - 1.0  # P(|T| <= t)
    low, high = 0.0, 1.0
    while t_two_sided_mass(high, df) < target:
        low, high = high, 2.0 * high
    for _ in range(100):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if t_two_sided_mass(mid, df) < target else (low, mid)
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and Student-t interval of values over seeds.

    ``std`` and the interval are None for a single value (no spread can be estimated).
    """

    values: tuple[float, ...]
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float = 0.95

    @property
    def n(self) -> int:
        return len(self.values)


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """mean, std = sqrt(sum (x - mean)^2 / (n - 1)), CI = mean +- t_{(1+c)/2, n-1} std / sqrt(n)."""
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError("no values to summarize")
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Summary(values, mean, None, None, None, confidence)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1.0 + confidence) / 2.0, n - 1) * std / math.sqrt(n)
    return Summary(values, mean, std, mean - half, mean + half, confidence)


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """Per-sentence BLEU sufficient statistics, shape (N, 2 + 2 * 4):
    [hypothesis length, reference length, matches of 1..4-grams, hypothesis 1..4-grams]
    (sacreBLEU's default 13a tokenization, one reference per sentence)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses for {len(references)} references")
    metric = BLEU(effective_order=True)  # effective order changes sentence scores, not the counts
    rows = []
    for hyp, ref in zip(hypotheses, references, strict=True):
        s = metric.sentence_score(hyp, [ref])
        rows.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2 + 2 * MAX_NGRAM_ORDER)


def bleu_from_statistics(totals: np.ndarray) -> float:
    """Corpus BLEU from summed sufficient statistics, exactly as sacreBLEU's ``BLEU()``
    (exponential smoothing): BP * exp(sum_n log(p_n) / 4), p_n = matches_n / total_n."""
    k = MAX_NGRAM_ORDER
    return BLEU.compute_bleu(
        correct=[int(x) for x in totals[2 : 2 + k]],
        total=[int(x) for x in totals[2 + k :]],
        sys_len=int(totals[0]),
        ref_len=int(totals[1]),
        smooth_method="exp",
    ).score


@dataclass(frozen=True)
class PairedBootstrap:
    """delta = mean-over-seeds BLEU of A minus that of B, its bootstrap interval and p-value."""

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_samples: int
    n_seeds: int


def paired_bootstrap(
    stats_a: Sequence[np.ndarray],
    stats_b: Sequence[np.ndarray],
    n_samples: int = 1000,
    seed: int = 12345,
    confidence: float = 0.95,
) -> PairedBootstrap:
    """Paired bootstrap test of delta = (1/S) sum_s BLEU(A_s) - (1/S) sum_s BLEU(B_s).

    ``stats_a[s]`` and ``stats_b[s]`` are the (N, 10) sentence statistics (``bleu_statistics``)
    of systems A and B trained with seed s, on the same N test sentences. Each of the
    ``n_samples`` resamples draws N sentence indices with replacement, one draw shared by every
    seed and both systems (the pairing), and recomputes delta*_i. Two-sided p-value of the
    shifted bootstrap (delta* - delta stands in for the distribution of delta under "no
    difference"):

        p = (1 + #{i : |delta*_i - delta| >= |delta|}) / (n_samples + 1)

    so identical systems give p = 1. The interval holds the central ``confidence`` mass of
    delta*. The draw is fixed by ``seed`` (sacreBLEU's default 12345).
    """
    if len(stats_a) != len(stats_b) or not stats_a:
        raise ValueError(f"need the same number (>= 1) of seeds per system, got {len(stats_a)} and {len(stats_b)}")
    n = stats_a[0].shape[0]
    if any(s.shape[0] != n for s in (*stats_a, *stats_b)):
        raise ValueError("every system and seed must be scored on the same sentences")

    def mean_bleu(stats: Sequence[np.ndarray], weights: np.ndarray | None) -> np.ndarray:
        sums = [s.sum(axis=0, keepdims=True) if weights is None else weights @ s for s in stats]  # (R, 10) each
        return np.mean([[bleu_from_statistics(row) for row in rows] for rows in sums], axis=0)  # (R,)

    delta = float(mean_bleu(stats_a, None)[0] - mean_bleu(stats_b, None)[0])
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_samples).astype(np.float64)  # (B, N) draw counts
    deltas = mean_bleu(stats_a, weights) - mean_bleu(stats_b, weights)  # (B,)
    extreme = int(np.sum(np.abs(deltas - delta) >= abs(delta)))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return PairedBootstrap(
        delta=delta,
        ci_low=float(low),
        ci_high=float(high),
        p_value=(1 + extreme) / (n_samples + 1),
        n_samples=n_samples,
        n_seeds=len(stats_a),
    )


@dataclass(frozen=True)
class SeedComparison:
    """A against B seed by seed: d_s = x_A,s - x_B,s over the n seeds both ran.

    ``wins``/``losses``/``ties`` count the seeds with d_s > 0, < 0 and = 0. The paired t-test
    over seeds: t = mean(d) / (std(d) / sqrt(n)) with n - 1 degrees of freedom, two-sided
    p = 1 - P(|T| <= |t|); p is None below 2 seeds, 1 when every d_s is 0 and 0 when the d_s
    are equal and not 0.
    """

    differences: tuple[float, ...]
    mean_difference: float
    wins: int
    losses: int
    ties: int
    t: float | None
    p_value: float | None


def compare_seeds(a: Sequence[float], b: Sequence[float]) -> SeedComparison:
    """Paired comparison of per-seed values ``a[s]`` and ``b[s]`` (same seed, same position)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same number (>= 1) of seeds per system, got {len(a)} and {len(b)}")
    d = tuple(float(x) - float(y) for x, y in zip(a, b, strict=True))
    n, mean = len(d), sum(d) / len(d)
    counts = {"wins": sum(x > 0 for x in d), "losses": sum(x < 0 for x in d), "ties": sum(x == 0 for x in d)}
    if n < 2:
        return SeedComparison(d, mean, **counts, t=None, p_value=None)
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    if std == 0.0:
        return SeedComparison(d, mean, **counts, t=None, p_value=1.0 if mean == 0.0 else 0.0)
    t = mean / (std / math.sqrt(n))
    return SeedComparison(d, mean, **counts, t=t, p_value=1.0 - t_two_sided_mass(t, n - 1))


def holm_adjusted(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of the m p-values of a family of tests (None: no test, skipped).

    With the p-values sorted, p_(1) <= ... <= p_(m), the adjusted p_(i) is
    max over j <= i of min(1, (m - j + 1) * p_(j)), returned in the input's order. Calling a test
    significant when its adjusted p is below alpha keeps the chance of one or more false
    positives among the m below alpha, whatever the dependence between the tests.
    """
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m, adjusted, running = len(tested), list(p_values), 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted
