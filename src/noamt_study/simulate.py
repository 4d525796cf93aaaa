"""Simulated comparisons with known truth: BLEU sentence statistics of two systems trained with
several seeds, for measuring how often a test rejects when nothing differs (its calibration).

Sentence i has reference length L_i and a difficulty b_i; system X adds its own per-sentence
effect c_Xi ~ N(0, system_sd^2) (what makes two systems good at different sentences), run r a
seed effect e_r ~ N(0, seed_sd^2) and per-sentence noise u_ri ~ N(0, noise_sd^2). The quality
of the run's translation of sentence i is

    q_ri = sigmoid(b_i + c_Xi + e_r + u_ri + shift_X),

its hypothesis has the reference's length, and its n-gram matches are Binomial(L_i - n + 1, q_ri^n).
Under the null (shift 0 for both) the two systems are draws from one population of systems, so
any test of "A beats B" over new seeds and new sentences should reject at its nominal rate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from noamt_study.stats import MAX_NGRAM_ORDER, bootstrap_differences


@dataclass(frozen=True)
class Scenario:
    """One simulated setting (see the module docstring for the model)."""

    seeds: int = 3
    sentences: int = 500
    seed_sd: float = 0.06  # logit scale: the run-to-run spread of BLEU
    system_sd: float = 0.0
    noise_sd: float = 0.5
    shift: float = 0.0  # system A's advantage on the logit scale (0: the null)


def simulate_statistics(rng: np.random.Generator, scenario: Scenario) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The (N, 10) sentence statistics of A's and B's runs, one per seed (``stats.bleu_statistics``)."""
    n = scenario.sentences
    lengths = rng.integers(6, 20, n).astype(np.float64)
    difficulty = rng.normal(0.8, 1.0, n)

    def run(system: np.ndarray, shift: float) -> np.ndarray:
        z = difficulty + system + shift + rng.normal(0.0, scenario.seed_sd) + rng.normal(0.0, scenario.noise_sd, n)
        quality = 1.0 / (1.0 + np.exp(-z))
        rows = np.zeros((n, 2 + 2 * MAX_NGRAM_ORDER))
        rows[:, 0] = rows[:, 1] = lengths
        for k in range(MAX_NGRAM_ORDER):
            ngrams = np.maximum(lengths - k, 0.0)
            rows[:, 2 + MAX_NGRAM_ORDER + k] = ngrams
            rows[:, 2 + k] = rng.binomial(ngrams.astype(np.int64), quality ** (k + 1))
        return rows

    system_a, system_b = (rng.normal(0.0, scenario.system_sd, n) for _ in range(2))
    a = [run(system_a, scenario.shift) for _ in range(scenario.seeds)]
    b = [run(system_b, 0.0) for _ in range(scenario.seeds)]
    return a, b


Test = Callable[[np.ndarray, np.ndarray], float]  # (d_s, resampled d*_is) -> p-value


def rejection_rates(
    scenario: Scenario,
    tests: dict[str, Test],
    replicates: int,
    resamples: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """How often each test's p-value is below ``alpha`` over ``replicates`` simulated comparisons,
    every test given the same runs and the same sentence resamples."""
    rng = np.random.default_rng(seed)
    rejected = dict.fromkeys(tests, 0)
    for i in range(replicates):
        observed, resampled = bootstrap_differences(*simulate_statistics(rng, scenario), resamples, seed=i)
        for name, test in tests.items():
            rejected[name] += test(observed, resampled) < alpha
    return {name: count / replicates for name, count in rejected.items()}
