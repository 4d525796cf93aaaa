"""The schedule comparison behind ``noamt-compare``.

``runs`` plans the jobs, reads each run's training log and evaluation, summarizes the runs of a
setting over seeds and tests the differences; ``stats`` holds the statistics (summaries over
seeds, the paired bootstrap over test sentences, the paired t-test over seeds); ``report``
writes report.md, results.csv, results.json and the plots; ``plots`` draws learning-rate
curves. The command itself (Hydra composition, the multiruns, evaluation) is
``noamt.cli.compare``.
"""
