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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sacrebleu.metrics import BLEU
from scipy.stats import t as student_t

MAX_NGRAM_ORDER = 4


def t_two_sided_mass(t: float, df: float) -> float:
    """P(|T| <= t) for Student's t with ``df`` degrees of freedom (need not be an integer)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    return float(1.0 - 2.0 * student_t.sf(abs(t), df))


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p for Student's t with ``df`` degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    return float(student_t.ppf(p, df))


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


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> np.ndarray:
    """Per-sentence BLEU sufficient statistics, shape (N, 2 + 2 * 4):
    [hypothesis length, reference length, matches of 1..4-grams, hypothesis 1..4-grams]
    (sacreBLEU's ``tokenize``, its default 13a, or "none" for text tokenized already as
    multi-bleu.perl scores it; one reference per sentence)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses for {len(references)} references")
    metric = BLEU(effective_order=True, tokenize=tokenize)  # effective order changes sentence scores, not counts
    rows = []
    for hyp, ref in zip(hypotheses, references, strict=True):
        s = metric.sentence_score(hyp, [ref])
        rows.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 2 + 2 * MAX_NGRAM_ORDER)


def bleu_from_statistics(totals: np.ndarray) -> float:
    """Corpus BLEU from summed sufficient statistics, shape (10,) (see ``bleu_from_statistic_rows``)."""
    return float(bleu_from_statistic_rows(np.asarray(totals, dtype=np.float64)[None, :])[0])


def bleu_from_statistic_rows(totals: np.ndarray) -> np.ndarray:
    """Corpus BLEU of each row of summed sufficient statistics, shape (R, 10) -> (R,), as
    sacreBLEU's ``BLEU()`` computes it (exponential smoothing, mteval-v13a):

        BLEU = BP * exp((1/4) sum_n log p_n),  BP = min(1, exp(1 - ref_len / hyp_len))
        p_n = 100 m_n / t_n, or 100 / (2^k t_n) when m_n = 0, k = #{j <= n : m_j = 0}

    with m_n, t_n the matched and total n-grams; 0 when nothing matches or some t_n is 0."""
    k = MAX_NGRAM_ORDER
    sys_len, ref_len = totals[:, 0], totals[:, 1]
    matches, ngrams = totals[:, 2 : 2 + k], totals[:, 2 + k :]  # (R, 4) each
    scorable = (matches.sum(axis=1) > 0) & (ngrams > 0).all(axis=1)
    safe = np.where(ngrams > 0, ngrams, 1.0)
    halvings = np.cumsum(matches == 0, axis=1)  # k of the exponential smoothing
    precision = np.where(matches > 0, 100.0 * matches / safe, 100.0 / (2.0**halvings * safe))
    short = (sys_len < ref_len) & (sys_len > 0)
    brevity = np.where(short, np.exp(1.0 - ref_len / np.where(sys_len > 0, sys_len, 1.0)), 1.0)
    brevity = np.where(sys_len > 0, brevity, 0.0)
    return np.where(scorable, brevity * np.exp(np.log(precision).mean(axis=1)), 0.0)


def nll_per_token_rows(totals: np.ndarray) -> np.ndarray:
    """Corpus negative log-likelihood per target token of each row of summed sentence statistics
    [nll in nats, target tokens], shape (R, 2) -> (R,): sum_i nll_i / sum_i tokens_i."""
    return totals[:, 0] / totals[:, 1]


def bootstrap_differences(
    stats_a: Sequence[np.ndarray],
    stats_b: Sequence[np.ndarray],
    n_samples: int = 1000,
    seed: int = 12345,
    score_rows: Callable[[np.ndarray], np.ndarray] = bleu_from_statistic_rows,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed differences d_s = M(A_s) - M(B_s) of a corpus metric M on the test set, shape (n,),
    and on ``n_samples`` resamples of its sentences, shape (B, n).

    ``stats_a[s]`` and ``stats_b[s]`` are the (N, k) sentence statistics of A and B trained with the
    s-th common seed, on the same N sentences; M is computed from their column sums by
    ``score_rows``, (R, k) -> (R,): BLEU from ``bleu_statistics`` (k = 10, the default) or the
    likelihood per token from [nll, tokens] (``nll_per_token_rows``). Each resample draws N
    sentence indices with replacement, one draw shared by every seed and both systems (the
    pairing); the draws are fixed by ``seed`` (sacreBLEU's default 12345), so every metric of a
    study is resampled the same way."""
    if len(stats_a) != len(stats_b) or not stats_a:
        raise ValueError(f"need the same number (>= 1) of seeds per system, got {len(stats_a)} and {len(stats_b)}")
    n = stats_a[0].shape[0]
    if any(s.shape[0] != n for s in (*stats_a, *stats_b)):
        raise ValueError("every system and seed must be scored on the same sentences")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_samples).astype(np.float64)  # (B, N) draw counts

    def scores(stats: Sequence[np.ndarray], w: np.ndarray) -> np.ndarray:  # (rows of w, n seeds)
        return np.stack([score_rows(w @ s) for s in stats], axis=1)

    whole = np.ones((1, n))
    observed = (scores(stats_a, whole) - scores(stats_b, whole))[0]  # (n,)
    return observed, scores(stats_a, weights) - scores(stats_b, weights)


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
    """Paired bootstrap test (Koehn 2004) of delta = (1/S) sum_s BLEU(A_s) - (1/S) sum_s BLEU(B_s)
    over the resamples of ``bootstrap_differences``; see ``paired_bootstrap_from``."""
    return paired_bootstrap_from(*bootstrap_differences(stats_a, stats_b, n_samples, seed), confidence)


def paired_bootstrap_from(observed: np.ndarray, resampled: np.ndarray, confidence: float = 0.95) -> PairedBootstrap:
    """delta = mean_s d_s and, on each resample i, delta*_i = mean_s d*_is. Two-sided p-value of
    the shifted bootstrap (delta* - delta stands in for the distribution of delta under "no
    difference"):

        p = (1 + #{i : |delta*_i - delta| >= |delta|}) / (n_samples + 1)

    so identical systems give p = 1. The interval holds the central ``confidence`` mass of
    delta*. The trained models are held fixed: the test asks whether the difference survives
    other test sentences, not other seeds."""
    delta = float(observed.mean())
    deltas = resampled.mean(axis=1)  # (B,)
    extreme = int(np.sum(np.abs(deltas - delta) >= abs(delta)))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(deltas, [tail, 1.0 - tail])
    return PairedBootstrap(
        delta=delta,
        ci_low=float(low),
        ci_high=float(high),
        p_value=(1 + extreme) / (len(deltas) + 1),
        n_samples=len(deltas),
        n_seeds=len(observed),
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
