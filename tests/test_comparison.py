"""Schedule comparison library on synthetic runs with known answers: statistics, run state,
aggregation, significance, conclusions and the report files."""

import csv
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from noamt.checkpoint import LAST, config_differences, save_checkpoint
from noamt.cli.compare import read_run_config
from noamt.compare import report, significance, stats
from noamt.compare import runs as compare_runs
from noamt.compare.runs import Job
from noamt.compare.seed_sentence_test import from_variances

SPLITS = ["valid", "test_a"]


# ----------------------------------------------------------------------------- statistics
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


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(60)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))) for _ in range(n)]


def degrade(texts: list[str], fraction: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join("zz" if rng.random() < fraction else w for w in t.split()) for t in texts]


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


# ----------------------------------------------------------------------------- jobs and configs
def test_jobs_are_seed_major_and_their_configs_set_schedule_seed_and_peak():
    jobs = compare_runs.plan_jobs(["noam", "cosine"], [1, 2])
    assert [j.name for j in jobs] == ["noam-seed1", "cosine-seed1", "noam-seed2", "cosine-seed2"]
    assert "schedule:" not in compare_runs.job_config(jobs[1]).replace("override /schedule:", "")
    sweep = compare_runs.plan_jobs(["noam", "cosine"], [1], [0.5, 2.0])
    assert [j.name for j in sweep] == ["noam-x0.5-seed1", "cosine-x0.5-seed1", "noam-x2-seed1", "cosine-x2-seed1"]
    noam, cosine = compare_runs.job_config(sweep[0]), compare_runs.job_config(sweep[1], default_peak=0.004)
    assert noam.startswith("# @package _global_\n") and "override /schedule: noam" in noam
    assert "factor: 0.5" in noam and "seed: 1" in noam and "run_name: noam-x0.5-seed1" in noam
    assert "peak_lr: 0.002" in cosine
    with pytest.raises(ValueError, match="unknown schedules"):
        compare_runs.plan_jobs(["nom"], [1])
    with pytest.raises(ValueError, match="without repeats"):
        compare_runs.plan_jobs(["noam"], [1, 1])


def test_a_stored_run_config_reads_as_its_resolved_settings():
    """A run saved with the peak and total_steps as interpolations reads as their values."""
    stored = Path(__file__).resolve().parents[1] / "docs/results/compare_cpu/runs/cosine-seed1/.hydra/config.yaml"
    schedule = read_run_config(stored)["schedule"]
    assert schedule["peak_lr"] == (128 * 400) ** -0.5 and schedule["total_steps"] == 1200


def test_config_differences_name_the_changed_keys():
    old = {"trainer": {"max_steps": 6, "resume": "auto"}, "device": {"num_threads": 1}}
    new = {"trainer": {"max_steps": 8, "resume": "none"}, "device": {"num_threads": 2}}
    assert config_differences(old, new, ["trainer.resume", "device"]) == ["trainer.max_steps: 6 -> 8"]


# ----------------------------------------------------------------------------- synthetic runs
def write_records(run_dir, records):
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def run_record(step, time, resumed=False, peak=0.01):
    return {
        "kind": "run",
        "step": step,
        "time": time,
        "resumed": resumed,
        "schedule": "noam",
        "peak_lr": peak,
        "schedule_params": {"d_model": 32, "warmup_steps": 2, "factor": 1.0},
        "device": "cpu",
    }


def valid_record(step, time, loss, bleu=None):
    return {"kind": "valid", "step": step, "time": time, "loss": loss, **({} if bleu is None else {"bleu": bleu})}


def end_record(step, time, interrupted=False):
    return {"kind": "end", "step": step, "time": time, "interrupted": interrupted}


def fake_run(root, job: Job, scores: dict, hypotheses: dict, final_loss: float, peak: float = 0.01):
    """A finished 6-update run with its evaluation: scores = {split: (bleu, chrf)}."""
    run_dir = root / "runs" / job.name
    write_records(
        run_dir,
        [
            run_record(0, 100.0, peak=peak),
            valid_record(0, 101.0, 9.0),
            valid_record(3, 110.0, 6.0, 1.0),
            valid_record(6, 120.0, final_loss, 2.0),
            end_record(6, 121.0),
        ],
    )
    signatures = {"bleu": "nrefs:1|tok:13a", "chrf": "nrefs:1|nc:6", "ter": "tercom"}
    results = {
        "checkpoint": str(run_dir / "checkpoints" / LAST),
        "step": 6,
        "data": "toy",
        "src_lang": "en",
        "tgt_lang": "de",
        "tokenized": False,
        "decoding": {"beam_size": 1},
        "splits": {
            s: {"bleu": b, "chrf": c, "ter": 50.0, "n_sentences": 3, "signatures": signatures}
            for s, (b, c) in scores.items()
        },
    }
    out = run_dir / "eval"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(results))
    for split, hyps in hypotheses.items():
        (out / f"{split}.hyp.de").write_text("".join(h + "\n" for h in hyps))
    return run_dir


def test_a_resumed_run_is_read_as_one_training(tmp_path):
    write_records(tmp_path, [run_record(0, 50.0), valid_record(0, 51.0, 9.0)])  # an abandoned first attempt
    write_records(tmp_path, [run_record(0, 100.0), valid_record(0, 101.0, 8.0), valid_record(3, 110.0, 7.0)])
    write_records(
        tmp_path,
        [
            run_record(3, 200.0, resumed=True),
            valid_record(3, 205.0, 6.5),
            valid_record(6, 230.0, 5.0, 3.0),
            end_record(6, 231.0),
        ],
    )
    log = compare_runs.read_training(tmp_path)
    assert [(r["step"], r["loss"]) for r in log.valid] == [(0, 8.0), (3, 6.5), (6, 5.0)]
    assert log.wall_time_s == pytest.approx((110.0 - 100.0) + (231.0 - 200.0))
    assert log.step == 6 and log.end["step"] == 6 and log.info["time"] == 100.0


def test_run_state_new_partial_finished(tmp_path):
    assert compare_runs.run_state(tmp_path / "absent", 6) == compare_runs.RunState("new", 0)
    interrupted = tmp_path / "interrupted"
    write_records(interrupted, [run_record(0, 1.0), end_record(3, 2.0, interrupted=True)])
    save_checkpoint({"model": {}, "step": 3}, interrupted / "checkpoints" / LAST)
    assert compare_runs.run_state(interrupted, 6) == compare_runs.RunState("partial", 3)
    killed = tmp_path / "killed"  # SIGKILL after the last checkpoint: no "end" record
    write_records(killed, [run_record(0, 1.0), valid_record(6, 2.0, 5.0)])
    save_checkpoint({"model": {}, "step": 6}, killed / "checkpoints" / LAST)
    assert compare_runs.run_state(killed, 6) == compare_runs.RunState("finished", 6)
    done = tmp_path / "done"
    write_records(done, [run_record(0, 1.0), end_record(6, 2.0)])
    assert compare_runs.run_state(done, 6) == compare_runs.RunState("finished", 6)
    assert compare_runs.run_state(done, 8).status == "new"  # a longer budget, no checkpoint to resume


def test_evaluation_is_reused_only_for_the_same_checkpoint_step_and_decoding(tmp_path):
    run_dir = fake_run(tmp_path, Job("noam", 1), {"valid": (1, 2), "test_a": (3, 4)}, {}, 5.0)
    assert compare_runs.current_evaluation(run_dir, 6, {"beam_size": 1}, SPLITS)
    assert compare_runs.current_evaluation(run_dir, 8, {"beam_size": 1}, SPLITS) is None
    assert compare_runs.current_evaluation(run_dir, 6, {"beam_size": 5}, SPLITS) is None
    assert compare_runs.current_evaluation(run_dir, 6, {"beam_size": 1}, [*SPLITS, "test_b"]) is None


def corpus_bleu(hyps, refs):
    return BLEU().corpus_score(hyps, [refs]).score


@pytest.fixture()
def benchmark(tmp_path):
    """noam and cosine over seeds 1-3: known validation scores; noam's test hypotheses are better."""
    refs = sentences(150, 0)
    valid_bleu = {"noam": [30.0, 32.0, 34.0], "cosine": [20.0, 21.0, 25.0]}
    runs = []
    for seed in (1, 2, 3):
        for name, quality in (("noam", 0.1), ("cosine", 0.4)):
            job = Job(name, seed)
            hyps = degrade(refs, quality, seed)
            scores = {"valid": (valid_bleu[name][seed - 1], 50.0 + seed), "test_a": (corpus_bleu(hyps, refs), 60.0)}
            loss = {"noam": 4.0, "cosine": 5.0}[name] + seed / 10
            fake_run(tmp_path, job, scores, {"test_a": hyps}, loss)
            runs.append(compare_runs.collect_run(job, tmp_path / "runs" / job.name))
    return tmp_path, runs, {"test_a": refs}


def test_settings_summarize_runs_over_seeds(benchmark):
    _, runs, _ = benchmark
    noam, cosine = compare_runs.summarize_settings(runs)
    assert (noam.setting, cosine.setting, noam.seeds) == ("noam", "cosine", [1, 2, 3])
    assert noam.scores["valid"]["bleu"].mean == 32.0 and noam.scores["valid"]["bleu"].std == 2.0
    assert noam.scores["valid"]["bleu"].ci_high == pytest.approx(32.0 + 4.968275, abs=1e-5)
    assert noam.scores["valid"]["chrf"].values == (51.0, 52.0, 53.0)
    assert cosine.scores["valid"]["bleu"].mean == pytest.approx(22.0)
    assert cosine.scores["valid"]["bleu"].std == pytest.approx(math.sqrt((4 + 1 + 9) / 2))
    assert noam.best_valid_loss.values == pytest.approx((4.1, 4.2, 4.3))
    assert noam.updates.mean == 6 and noam.wall_time_s.mean == 21.0
    assert noam.runs[0].valid[-1]["bleu"] == 2.0


def test_best_peak_is_chosen_per_schedule_on_validation_bleu(tmp_path):
    valid_bleu = {"noam": {0.5: 10.0, 1.0: 14.0, 2.0: 12.0}, "constant": {0.5: 8.0, 1.0: 9.0, 2.0: 11.0}}
    runs = []
    for seed in (1, 2):
        for name, by_scale in valid_bleu.items():
            for scale, bleu in by_scale.items():
                job = Job(name, seed, scale)
                fake_run(tmp_path, job, {"valid": (bleu + seed, 1.0), "test_a": (0.0, 0.0)}, {}, 5.0)
                runs.append(compare_runs.collect_run(job, tmp_path / "runs" / job.name))
    chosen = compare_runs.select_best_peaks(compare_runs.summarize_settings(runs))
    assert [(s.setting, s.seeds) for s in chosen] == [("noam-x1", [1, 2]), ("constant-x2", [1, 2])]


@pytest.mark.slow
def test_comparison_conclusions_and_report_files(benchmark):
    root, runs, refs = benchmark
    settings = compare_runs.summarize_settings(runs)
    (result,) = significance.compare_to_reference(settings, "noam", ["test_a"], refs, n_samples=300)
    noam, cosine = (s.scores["test_a"]["bleu"] for s in settings)
    assert (result.split, result.reference, result.other) == ("test_a", "noam", "cosine")
    assert result.test.delta == pytest.approx(noam.mean - cosine.mean) and result.test.delta > 10
    assert result.bootstrap.delta == pytest.approx(result.test.delta)
    assert result.test.p_value < 0.05 and result.test.n_seeds == 3
    head = f"test_a: noam {noam.mean:.1f} ± {noam.std:.1f} vs cosine {cosine.mean:.1f} ± {cosine.std:.1f} BLEU"
    assert result.conclusion.startswith(head + " (mean ± std over 3 seeds): noam higher by")
    assert "significant with seeds and test sentences random" in result.conclusion
    assert "noam higher on 3 of 3 seeds, cosine on 0" in result.conclusion
    assert result.bootstrap_conclusion.startswith("test_a, given these trained models (3 per schedule")
    assert result.bootstrap_conclusion.endswith("significant (p = 0.003)")

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
    assert result.conclusion in text and result.bootstrap_conclusion in text
    lines = significance.verdict([result])
    assert saved["verdict"] == lines and all(f"- {line}" in text for line in lines) and "## Verdict" in text
    assert lines[0].startswith("With seeds and test sentences random, 1 of the 1 differences is significant")
    assert "noam − cosine on test_a (+" in lines[0]
    assert lines[2].startswith(f"With 3 seeds the comparisons detect differences of {result.power.detectable:.2f} to")
    assert "[noam-seed1](runs/noam-seed1/eval/results.json)" in text


def test_hypotheses_that_disagree_with_results_json_are_an_error(benchmark):
    root, runs, refs = benchmark
    (root / "runs" / "cosine-seed2" / "eval" / "test_a.hyp.de").write_text("".join(r + "\n" for r in refs["test_a"]))
    with pytest.raises(ValueError, match=r"cosine-seed2/eval: test_a hypotheses score 100.00 BLEU"):
        significance.compare_to_reference(compare_runs.summarize_settings(runs), "noam", ["test_a"], refs)


def test_conclusion_does_not_claim_an_insignificant_or_one_seed_difference(benchmark):
    _, runs, _ = benchmark
    noam, cosine = compare_runs.summarize_settings(runs)
    flat = from_variances(np.array([-0.2, 0.4, 1.0]), v_sent=0.01, v_pair=0.03, n_samples=1000)
    record = stats.compare_seeds([-0.2, 0.4, 1.0], [0.0] * 3)
    line = significance.conclusion("test_a", noam, cosine, flat, record)
    assert "difference +0.40 (95% CI [" in line
    verdict = "not significant with seeds and test sentences random (p = 0.37)"
    assert line.endswith(f"{verdict}; noam higher on 2 of 3 seeds, cosine on 1")
    single = compare_runs.summarize_settings([runs[0], runs[1]])
    line = significance.conclusion("test_a", *single, None, stats.compare_seeds([8.0], [0.0]))
    assert "(1 seed)" in line and line.endswith("1 common seed, so no test can count the variation between seeds")


def test_holm_adjustment_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4 * 0.005, 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04)
    assert stats.holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm_adjusted([None, 0.2, 0.01]) == [None, pytest.approx(0.2), pytest.approx(0.02)]
    assert stats.holm_adjusted([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, and never below a smaller p's
    assert stats.holm_adjusted([0.03]) == [0.03]


def test_a_difference_among_several_is_significant_only_after_holms_adjustment(benchmark):
    _, runs, _ = benchmark
    noam, cosine = compare_runs.summarize_settings(runs)
    test = from_variances(np.array([0.5, 0.6, 0.7]), v_sent=0.001, v_pair=0.003, n_samples=1000)  # p = 0.009
    record = stats.compare_seeds([0.5, 0.6, 0.7], [0.0] * 3)
    alone = significance.conclusion("test_a", noam, cosine, test, record)
    assert "noam higher by 0.60 (95% CI [" in alone
    assert "significant with seeds and test sentences random (p = 0.009)" in alone
    among_8 = significance.conclusion("test_a", noam, cosine, test, record, p_holm=0.24, family=8)
    assert "not significant once adjusted for the 8 comparisons (p = 0.009; p = 0.24 after Holm's adjustment" in among_8
    kept = significance.conclusion("test_a", noam, cosine, test, record, p_holm=0.04, family=2)
    assert "significant with seeds and test sentences random (p = 0.009; p = 0.04 after Holm's adjustment" in kept
    boot = stats.PairedBootstrap(delta=0.6, ci_low=0.1, ci_high=1.1, p_value=0.03, n_samples=1000, n_seeds=3)
    line = significance.bootstrap_conclusion("test_a", noam, cosine, boot, p_holm=0.24, family=8)
    assert line.endswith("not significant (p = 0.03; p = 0.24 after Holm's adjustment for 8 comparisons)")


# ----------------------------------------------------------------------------- seeds and divergence
def test_seed_level_comparison_has_the_known_winner_and_t_test():
    seeds = stats.compare_seeds([31.0, 32.0, 33.0], [30.0, 30.0, 30.0])  # d = 1, 2, 3
    assert (seeds.wins, seeds.losses, seeds.ties, seeds.mean_difference) == (3, 0, 0, 2.0)
    assert seeds.t == pytest.approx(2.0 / (1.0 / math.sqrt(3)))  # mean(d) / (std(d) / sqrt(n))
    assert seeds.p_value == pytest.approx(0.07418, abs=1e-4)  # Student t, 2 degrees of freedom
    split = stats.compare_seeds([30.0, 29.0], [29.0, 30.0])
    assert (split.wins, split.losses, split.mean_difference, split.p_value) == (1, 1, 0.0, pytest.approx(1.0))
    assert stats.compare_seeds([3.0], [1.0]).p_value is None


def test_comparison_counts_the_seeds_each_schedule_wins(benchmark):
    _, runs, refs = benchmark
    settings = compare_runs.summarize_settings(runs)
    (result,) = significance.compare_to_reference(settings, "noam", ["test_a"], refs, 100)
    assert (result.seeds.wins, result.seeds.losses) == (3, 0) and result.seeds.p_value < 0.05
    assert result.seeds.differences == pytest.approx(result.test.differences)


@pytest.mark.parametrize(
    ("losses", "flagged"),
    [
        ([9.0, 6.0, 5.0, 4.5, 4.2], False),  # falling
        ([9.0, 6.0, 5.0, 5.02, 5.01], False),  # flat within 1% at the end
        ([9.0, 5.0, 5.5, 6.5, 8.0], True),  # rising over the last half
        ([9.0, 6.0, float("nan"), 5.0, 4.0], True),  # non-finite
    ],
)
def test_a_run_whose_validation_loss_rises_over_its_last_half_is_diverged(losses, flagged):
    records = [valid_record(step, 0.0, loss) for step, loss in zip(range(0, 1000, 200), losses, strict=True)]
    assert compare_runs.diverged(records) is flagged


@pytest.mark.slow
def test_report_flags_a_diverged_run_and_keeps_it_in_the_means(benchmark):
    root, runs, refs = benchmark
    job = Job("cosine", 4)
    hyps = degrade(refs["test_a"], 0.4, 4)
    fake_run(
        root, job, {"valid": (10.0, 40.0), "test_a": (corpus_bleu(hyps, refs["test_a"]), 50.0)}, {"test_a": hyps}, 7.0
    )
    runs = [*runs, compare_runs.collect_run(job, root / "runs" / job.name)]  # loss 9.0, 6.0, then 7.0
    settings = compare_runs.summarize_settings(runs)
    cosine = settings[1]
    assert cosine.diverged_seeds == [4] and cosine.scores["valid"]["bleu"].n == 4
    (warning,) = compare_runs.divergence_warnings(settings)
    assert warning.startswith("cosine-seed4 diverged: validation loss rose over the last half of training")
    meta = {"profile": "synthetic", "reference": "noam", "test_splits": ["test_a"], "bootstrap_samples": 50}
    result = significance.compare_to_reference(settings, "noam", ["test_a"], refs, 50)
    report.write_report(root, {**meta, "description": {}}, settings, settings, result, [])
    text = (root / "report.md").read_text()
    assert warning in text and "cosine-seed4](runs/cosine-seed4/eval/results.json) (diverged)" in text
    saved = json.loads((root / "results.json").read_text())
    assert saved["diverged"] == [warning] and saved["settings"][1]["diverged_seeds"] == [4]


def test_the_verdict_names_no_difference_that_its_test_does_not_carry(benchmark):
    _, runs, _ = benchmark
    noam, cosine = compare_runs.summarize_settings(runs)
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
        conclusion=significance.conclusion("test_a", noam, cosine, flat, record),
        bootstrap=boot,
        bootstrap_p_holm=boot.p_value,
        bootstrap_conclusion="",
        seeds=record,
    )
    lines = significance.verdict([comparison])
    assert lines[0] == (
        "With seeds and test sentences random, 0 of the 1 differences are significant after Holm's adjustment: "
        "no ranking of the schedules is established here."
    )
    assert lines[1].endswith("1 of the 1 is significant after Holm's adjustment; 1 of them not once the seeds count.")
    assert significance.verdict([]) == [
        "One seed per schedule: no difference can be tested against the variation between seeds."
    ]
