"""noamt_study.significance and noamt_study.report on synthetic runs with known answers: the
comparisons, their conclusions and verdict, and the report files."""

import csv
import json

import numpy as np
import pytest
from helpers.study_runs import corpus_bleu, degrade, fake_run

from noamt_study import collect, report, significance, stats
from noamt_study.plan import Job
from noamt_study.report import sentences
from noamt_study.seed_sentence_test import from_variances


@pytest.mark.slow
def test_comparison_conclusions_and_report_files(benchmark):
    root, runs, refs = benchmark
    settings = collect.summarize_settings(runs)
    (result,) = significance.compare_to_reference(settings, "noam", ["test_a"], refs, n_samples=300)
    noam, cosine = (s.scores["test_a"]["bleu"] for s in settings)
    assert (result.split, result.reference, result.other) == ("test_a", "noam", "cosine")
    assert result.test.delta == pytest.approx(noam.mean - cosine.mean) and result.test.delta > 10
    assert result.bootstrap.delta == pytest.approx(result.test.delta)
    assert result.test.p_value < 0.05 and result.test.n_seeds == 3
    head = f"test_a: noam {noam.mean:.1f} ± {noam.std:.1f} vs cosine {cosine.mean:.1f} ± {cosine.std:.1f} BLEU"
    ((headline, bootstrap_line),) = sentences.comparison_conclusions([result], settings)
    assert headline.startswith(head + " (mean ± std over 3 seeds): noam higher by")
    assert "significant with seeds and test sentences random" in headline
    assert "noam higher on 3 of 3 seeds, cosine on 0" in headline
    assert bootstrap_line.startswith("test_a, given these trained models (3 per schedule")
    assert bootstrap_line.endswith("significant (p = 0.003)")

    meta = {
        "profile": "synthetic",
        "reference": "noam",
        "test_splits": ["test_a"],
        "bootstrap_samples": 300,
        "description": {"mode": "same peak"},
    }
    paths = report.write_report(root, meta, settings, settings, [result], [])
    assert [p.name for p in paths] == [
        "report.md",
        "results.csv",
        "results.json",
        report.VALIDATION_PLOT,
        report.TEST_PLOT,
    ]
    for path in paths:
        assert path.stat().st_size > 0
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths[3:])
    saved = json.loads((root / "results.json").read_text())
    first = saved["settings"][0]
    assert first["scores"]["valid"]["bleu"]["mean"] == 32.0
    assert first["scores"]["valid"]["bleu"]["ci95"] == pytest.approx([32.0 - 4.968275, 32.0 + 4.968275], abs=1e-5)
    for run in first["runs"]:  # every number in the report is the run's own results.json
        own = json.loads((root / "runs" / run["name"] / "eval" / "results.json").read_text())
        assert run["scores"]["test_a"]["bleu"] == own["splits"]["test_a"]["bleu"]
    assert saved["comparisons"][0]["test"]["p_value"] == result.test.p_value
    assert saved["comparisons"][0]["test"]["seed_sd"] == pytest.approx(result.test.seed_sd)
    assert first["runs"][0]["results_json"] == "runs/noam-seed1/eval/results.json"  # relative to the report
    rows = list(csv.DictReader((root / "results.csv").open()))
    row = next(r for r in rows if (r["setting"], r["split"], r["metric"]) == ("cosine", "valid", "bleu"))
    assert (row["n"], float(row["mean"]), row["values"]) == ("3", 22.0, "20;21;25")
    text = (root / "report.md").read_text()
    assert headline in text and bootstrap_line in text
    assert (saved["comparisons"][0]["conclusion"], saved["comparisons"][0]["bootstrap_conclusion"]) == (
        headline,
        bootstrap_line,
    )
    lines = sentences.verdict([result])
    assert saved["verdict"] == lines and all(f"- {line}" in text for line in lines) and "## Verdict" in text
    assert lines[0].startswith("On BLEU: with seeds and test sentences random, 1 of the 1 differences is significant")
    assert "noam − cosine on test_a (+" in lines[0]
    assert lines[2].startswith(
        f"On BLEU: with 3 seeds the comparisons detect differences of {result.power.detectable:.2f}"
    )
    assert "[noam-seed1](runs/noam-seed1/eval/results.json)" in text


def test_hypotheses_that_disagree_with_results_json_are_an_error(benchmark):
    root, runs, refs = benchmark
    (root / "runs" / "cosine-seed2" / "eval" / "test_a.hyp.de").write_text("".join(r + "\n" for r in refs["test_a"]))
    with pytest.raises(ValueError, match=r"cosine-seed2/eval: test_a hypotheses score 100.00 BLEU"):
        significance.compare_to_reference(collect.summarize_settings(runs), "noam", ["test_a"], refs)


def test_conclusion_does_not_claim_an_insignificant_or_one_seed_difference(benchmark):
    _, runs, _ = benchmark
    noam, cosine = collect.summarize_settings(runs)
    flat = from_variances(np.array([-0.2, 0.4, 1.0]), v_sent=0.01, v_pair=0.03, n_samples=1000)
    record = stats.compare_seeds([-0.2, 0.4, 1.0], [0.0] * 3)
    line = sentences.conclusion("test_a", noam, cosine, flat, record)
    assert "difference +0.40 (95% CI [" in line
    verdict = "not significant with seeds and test sentences random (p = 0.37)"
    assert line.endswith(f"{verdict}; noam higher on 2 of 3 seeds, cosine on 1")
    single = collect.summarize_settings([runs[0], runs[1]])
    line = sentences.conclusion("test_a", *single, None, stats.compare_seeds([8.0], [0.0]))
    assert "(1 seed)" in line and line.endswith("1 common seed, so no test can count the variation between seeds")


def test_a_difference_among_several_is_significant_only_after_holms_adjustment(benchmark):
    _, runs, _ = benchmark
    noam, cosine = collect.summarize_settings(runs)
    test = from_variances(np.array([0.5, 0.6, 0.7]), v_sent=0.001, v_pair=0.003, n_samples=1000)  # p = 0.009
    record = stats.compare_seeds([0.5, 0.6, 0.7], [0.0] * 3)
    alone = sentences.conclusion("test_a", noam, cosine, test, record)
    assert "noam higher by 0.60 (95% CI [" in alone
    assert "significant with seeds and test sentences random (p = 0.009)" in alone
    among_8 = sentences.conclusion("test_a", noam, cosine, test, record, p_holm=0.24, family=8)
    assert "not significant once adjusted for the 8 comparisons (p = 0.009; p = 0.24 after Holm's adjustment" in among_8
    kept = sentences.conclusion("test_a", noam, cosine, test, record, p_holm=0.04, family=2)
    assert "significant with seeds and test sentences random (p = 0.009; p = 0.04 after Holm's adjustment" in kept
    boot = stats.PairedBootstrap(delta=0.6, ci_low=0.1, ci_high=1.1, p_value=0.03, n_samples=1000, n_seeds=3)
    line = sentences.bootstrap_conclusion("test_a", noam, cosine, boot, p_holm=0.24, family=8)
    assert line.endswith("not significant (p = 0.03; p = 0.24 after Holm's adjustment for 8 comparisons)")


def test_comparison_counts_the_seeds_each_schedule_wins(benchmark):
    _, runs, refs = benchmark
    settings = collect.summarize_settings(runs)
    (result,) = significance.compare_to_reference(settings, "noam", ["test_a"], refs, 100)
    assert (result.seeds.wins, result.seeds.losses) == (3, 0) and result.seeds.p_value < 0.05
    assert result.seeds.differences == pytest.approx(result.test.differences)


@pytest.mark.slow
def test_report_flags_a_diverged_run_and_keeps_it_in_the_means(benchmark):
    root, runs, refs = benchmark
    job = Job("cosine", 4)
    hyps = degrade(refs["test_a"], 0.4, 4)
    fake_run(
        root, job, {"valid": (10.0, 40.0), "test_a": (corpus_bleu(hyps, refs["test_a"]), 50.0)}, {"test_a": hyps}, 7.0
    )
    runs = [*runs, collect.collect_run(job, root / "runs" / job.name)]  # loss 9.0, 6.0, then 7.0
    settings = collect.summarize_settings(runs)
    cosine = settings[1]
    assert cosine.diverged_seeds == [4] and cosine.scores["valid"]["bleu"].n == 4
    (warning,) = sentences.divergence_warnings(settings)
    assert warning.startswith("cosine-seed4 diverged: validation loss rose over the last half of training")
    meta = {"profile": "synthetic", "reference": "noam", "test_splits": ["test_a"], "bootstrap_samples": 50}
    result = significance.compare_to_reference(settings, "noam", ["test_a"], refs, 50)
    report.write_report(root, {**meta, "description": {}}, settings, settings, result, [])
    text = (root / "report.md").read_text()
    assert warning in text and "cosine-seed4](runs/cosine-seed4/eval/results.json) (diverged)" in text
    saved = json.loads((root / "results.json").read_text())
    assert saved["diverged"] == [warning] and saved["settings"][1]["diverged_seeds"] == [4]


def test_the_verdict_names_no_difference_that_its_test_does_not_carry():
    d = np.array([-0.2, 0.4, 1.0])
    flat = from_variances(d, v_sent=0.01, v_pair=0.03, n_samples=1000)  # p = 0.37
    boot = stats.PairedBootstrap(delta=0.4, ci_low=0.1, ci_high=0.7, p_value=0.004, n_samples=1000, n_seeds=3)
    record = stats.compare_seeds(list(d), [0.0] * 3)
    comparison = significance.Comparison(
        split="test_a",
        reference="noam",
        other="cosine",
        test=flat,
        test_p_holm=flat.p_value,
        power=significance.power_analysis(flat),
        bootstrap=boot,
        bootstrap_p_holm=boot.p_value,
        seeds=record,
    )
    lines = sentences.verdict([comparison])
    assert lines[0] == (
        "On BLEU: with seeds and test sentences random, 0 of the 1 differences are significant after Holm's "
        "adjustment: no ranking of the schedules is established here."
    )
    assert lines[1].endswith("1 of the 1 is significant after Holm's adjustment; 1 of them not once the seeds count.")
    assert sentences.verdict([]) == [
        "On BLEU: one seed per schedule: no difference can be tested against the variation between seeds."
    ]


def add_schedule(root, refs, name, valid_bleu, quality, noise_seed):
    """Seeds 1-3 of one more schedule in the synthetic benchmark: these validation BLEUs, and test
    hypotheses degraded by ``quality`` with noise of their own."""
    runs = []
    for seed in (1, 2, 3):
        job = Job(name, seed)
        hyps = degrade(refs, quality, noise_seed + seed)
        scores = {"valid": (valid_bleu[seed - 1], 50.0), "test_a": (corpus_bleu(hyps, refs), 60.0)}
        fake_run(root, job, scores, {"test_a": hyps}, 4.0 + seed / 10)
        runs.append(collect.collect_run(job, root / "runs" / job.name))
    return runs


def test_the_validation_leader_is_tested_against_every_other_schedule(benchmark):
    """wsd leads on validation and its test hypotheses are as good as noam's: it is ahead of cosine
    and not separated from noam, each comparison in the leader's own Holm family."""
    root, runs, refs = benchmark
    runs = [*runs, *add_schedule(root, refs["test_a"], "wsd", [40.0, 41.0, 42.0], 0.1, 100)]
    settings = collect.summarize_settings(runs)
    leader = significance.compare_to_leader(settings, "noam", "bleu", ["test_a"], refs, 300)
    assert leader.setting == "wsd" and [(c.reference, c.other) for c in leader.comparisons] == [
        ("wsd", "noam"),
        ("wsd", "cosine"),
    ]
    to_noam, to_cosine = leader.comparisons
    assert to_cosine.test.delta > 10 and to_cosine.test_p_holm < 0.05
    assert to_noam.test_p_holm > 0.05
    assert to_noam.test_p_holm == stats.holm_adjusted([to_noam.test.p_value, to_cosine.test.p_value])[0]
    lines = sentences.leader_verdict(leader)
    assert lines == [
        "The validation leader is wsd (the highest mean validation BLEU; the test sets play no part in picking "
        "it), tested against every other schedule:",
        "On BLEU, with seeds and test sentences random (2 comparisons, Holm-adjusted together): wsd is ahead of "
        "cosine on 1 of 1 test sets; behind none; not separated on any test set from noam.",
    ]
    meta = {
        "profile": "synthetic",
        "reference": "noam",
        "test_splits": ["test_a"],
        "bootstrap_samples": 300,
        "description": {},
    }
    comparisons = significance.compare_to_reference(settings, "noam", ["test_a"], refs, 300)
    report.write_report(root, meta, settings, settings, comparisons, [], None, leader)
    text = (root / "report.md").read_text()
    assert all(f"- {line}" in text for line in lines)
    assert "## Against the validation leader, wsd" in text
    row = next(line for line in text.splitlines() if line.startswith("| cosine | +"))
    assert f"{to_cosine.test.delta:+.2f} [{to_cosine.test.ci_low:+.2f}, {to_cosine.test.ci_high:+.2f}]" in row
    saved = json.loads((root / "results.json").read_text())["leader"]
    assert (saved["setting"], saved["criterion"], saved["verdict"]) == ("wsd", "bleu", lines)
    assert [c["other"] for c in saved["comparisons"]] == ["noam", "cosine"]
    assert saved["comparisons"][1]["test_p_holm"] == to_cosine.test_p_holm


def test_a_leader_that_is_the_reference_repeats_no_comparison(benchmark):
    root, runs, refs = benchmark
    two = collect.summarize_settings(runs)  # noam leads on validation; with two schedules, one pair
    leader = significance.compare_to_leader(two, "cosine", "bleu", ["test_a"], refs, 50)
    assert (leader.setting, leader.comparisons) == ("noam", [])
    runs = [*runs, *add_schedule(root, refs["test_a"], "wsd", [1.0, 2.0, 3.0], 0.2, 100)]
    three = collect.summarize_settings(runs)
    leader = significance.compare_to_leader(three, "noam", "bleu", ["test_a"], refs, 50)
    assert (leader.setting, leader.comparisons) == ("noam", [])
    assert sentences.leader_verdict(leader) == [
        "The validation leader is noam (the highest mean validation BLEU; the test sets play no part in picking "
        "it): the comparisons above are all those it takes part in."
    ]
    by_loss = significance.compare_to_leader(three, "noam", "loss", ["test_a"], refs, 50)
    assert by_loss.setting == "noam" and by_loss.criterion == "loss"  # noam's losses 4.1-4.3, cosine's 5.1-5.3
