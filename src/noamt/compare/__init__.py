"""The schedule comparison behind ``noamt-compare``.

``runs`` plans the jobs, reads each run's training log and evaluation and summarizes the runs of
a setting over seeds; ``significance`` tests the differences and words the conclusions;
``seed_sentence_test`` is the headline test, with seeds and test sentences both random, and its
power analysis; ``stats`` holds the basic statistics (summaries over seeds, BLEU from sufficient
statistics, the paired bootstrap over test sentences, Holm's adjustment); ``simulate`` makes
null comparisons with known truth to check the tests' calibration; ``report`` writes report.md,
results.csv, results.json and the plots; ``plots`` draws learning-rate curves. The command
itself (Hydra composition, the multiruns, evaluation) is ``noamt.cli.compare``.
"""
