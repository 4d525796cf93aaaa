"""The schedule study behind ``noamt-compare``, beside the MT library ``noamt`` that it trains
and evaluates with.

``plan`` holds the profiles (``profiles/*.yaml``), the jobs and their Hydra options; ``cli``
parses the command and composes each job's noamt-train config; ``orchestrate`` trains the
pending runs as supervised multiruns, evaluates every run and writes the outputs; ``collect``
reads the runs back, checks their configs and summarizes them over seeds; ``significance`` tests
the differences; ``seed_sentence_test`` is the headline test, with seeds and test sentences both
random, and its power analysis; ``stats`` holds the basic statistics (summaries over seeds, BLEU
from sufficient statistics, the paired bootstrap over test sentences, Holm's adjustment);
``simulate`` makes null comparisons with known truth to check the tests' calibration;
``report`` words and writes report.md, results.csv and results.json; ``plots`` draws the
figures. ``peers`` (HF Marian of a noamt model's shape) and ``length_analysis`` (search errors
against model errors) serve the benchmark scripts.
"""
