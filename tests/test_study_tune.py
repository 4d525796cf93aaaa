"""The tuned protocol (--tune) and the study's likelihood and convergence figures: the grid that
grows past an edge, the peak chosen on validation only, the likelihood test, the convergence
statement, and the whole protocol end to end on the smoke profile."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers.study_runs import fake_run, sentence_nll

from noamt.device import host_description
from noamt.run_dir import LAST
from noamt_study import collect, significance, stats
from noamt_study.cli import parse_args
from noamt_study.plan import Job, grid_extension
from noamt_study.report import sentences


@pytest.mark.parametrize(
    ("grid", "best", "done", "expected"),
    [
        ([0.5, 1, 2, 4], 4, 0, 8.0),  # best at the top edge: one step further up
        ([0.5, 1, 2, 4, 8], 8, 1, 16.0),
        ([0.5, 1, 2, 4, 8, 16], 16, 2, None),  # two extensions spent
        ([0.5, 1, 2, 4], 0.5, 0, 0.25),  # best at the bottom edge: one step further down
        ([0.5, 1, 2, 4], 2, 0, None),  # an interior optimum
        ([1], 1, 0, None),  # one point has no edge to move past
    ],
)
def test_the_grid_grows_past_the_edge_that_holds_the_best_peak(grid, best, done, expected):
    assert grid_extension(grid, best, done, 2) == expected


def test_validation_loss_still_falling_over_the_last_fifth_of_the_budget():
    def records(*losses):
        return [{"step": 300 * (i + 1), "loss": loss} for i, loss in enumerate(losses)]

    assert collect.tail_drop(records(6.0, 5.0, 4.0, 3.0), 1200) == pytest.approx(0.25)  # 4.0 at 900 -> 3.0 at 1200
    assert collect.tail_drop(records(6.0, 5.0, 4.0, 4.004), 1200) == pytest.approx(-0.001)
    assert collect.tail_drop(records(6.0), 300) is None  # no validation before update 240
    assert collect.tail_drop(records(6.0, 5.0, 4.0), 1200) is None  # none after update 960


def test_a_run_is_still_falling_when_its_last_fifth_drops_more_than_the_tolerance(tmp_path):
    falling, flat = Job("noam", 1), Job("noam", 2)
    fake_run(tmp_path, falling, {"valid": (1, 2)}, {}, 5.0)  # 6.0 at update 3, 5.0 at update 6
    fake_run(tmp_path, flat, {"valid": (1, 2)}, {}, 5.995)
    runs = [collect.collect_run(job, tmp_path / "runs" / job.name) for job in (falling, flat)]
    assert [r.still_falling for r in runs] == [True, False]
    (setting,) = collect.summarize_settings(runs)
    assert setting.still_falling_seeds == [1] and setting.final_valid_loss.values == (5.0, 5.995)
    line = sentences.convergence_line(setting, 6)
    assert line.startswith("noam: validation loss from the last validation at or before update 5 to update 6")
    assert "still falling on 1 of 2 seeds" in line
    assert sentences.budget_scope([setting], 6).startswith("Every verdict here is about a budget of 6 updates")


def test_the_peak_is_chosen_on_validation_loss_when_asked(tmp_path):
    losses = {0.5: 5.0, 1.0: 4.0, 2.0: 4.5}
    bleu = {0.5: 30.0, 1.0: 10.0, 2.0: 20.0}  # BLEU would choose otherwise
    runs = []
    for scale in losses:
        job = Job("cosine", 1, scale)
        fake_run(tmp_path, job, {"valid": (bleu[scale], 1.0)}, {}, losses[scale])
        runs.append(collect.collect_run(job, tmp_path / "runs" / job.name))
    settings = collect.summarize_settings(runs)
    assert [s.lr_scale for s in collect.select_best_peaks(settings, "loss")] == [1.0]
    assert [s.lr_scale for s in collect.select_best_peaks(settings, "bleu")] == [0.5]
    with pytest.raises(ValueError, match="tuning criterion 'ppl'"):
        collect.select_best_peaks(settings, "ppl")


def test_likelihood_differences_are_the_corpus_nll_per_token_of_each_seed():
    rng = np.random.default_rng(0)
    a = [np.column_stack([rng.uniform(1, 9, 40), rng.integers(1, 9, 40)]) for _ in range(3)]
    b = [np.column_stack([rng.uniform(1, 9, 40), rng.integers(1, 9, 40)]) for _ in range(3)]
    observed, resampled = stats.bootstrap_differences(a, b, 200, score_rows=stats.nll_per_token_rows)
    by_hand = [x[:, 0].sum() / x[:, 1].sum() - y[:, 0].sum() / y[:, 1].sum() for x, y in zip(a, b, strict=True)]
    assert observed == pytest.approx(by_hand) and resampled.shape == (200, 3)


def test_the_likelihood_is_tested_beside_bleu_in_a_family_of_its_own(benchmark):
    _, runs, refs = benchmark  # noam's references are likelier: about 1.1 nats per token against 1.4
    settings = collect.summarize_settings(runs)
    result = significance.compare_to_reference(settings, "noam", ["test_a"], refs, 300, ("bleu", "nll"))
    assert [c.metric for c in result] == ["bleu", "nll"]
    nll = result[1]
    noam, cosine = (s.scores["test_a"]["nll"] for s in settings)
    assert nll.test.delta == pytest.approx(noam.mean - cosine.mean) and nll.test.delta < -0.2
    assert nll.test.p_value < 0.05 and nll.test_p_holm == nll.test.p_value  # one comparison in its family
    ((_, _), (headline, bootstrap_line)) = sentences.comparison_conclusions(result, settings)
    assert headline.startswith("test_a: noam 1.1")
    assert " NLL/token (mean ± std over 3 seeds): noam lower by 0.29" in headline
    assert headline.endswith("noam lower on 3 of 3 seeds, cosine on 0")
    assert "noam − cosine NLL/token = -0.29" in bootstrap_line
    lines = sentences.verdict(result)
    assert len(lines) == 6 and lines[3].startswith("On test-set likelihood (NLL/token): with seeds and test")
    assert "nats/token (80% power, 5%; estimated from these seeds: their 95% intervals span" in lines[5]


def test_a_likelihood_file_that_disagrees_with_results_json_is_an_error(tmp_path):
    job = Job("noam", 1)
    run_dir = fake_run(tmp_path, job, {"test_a": (1, 2)}, {}, 5.0, nll={"test_a": sentence_nll([3, 4, 5], 1.0, 0)})
    run = collect.collect_run(job, run_dir)
    assert run.sentence_nll("test_a").shape == (3, 2)
    (run_dir / "eval" / "test_a.nll.tsv").write_text("nll\ttokens\n3.0\t3\n4.0\t4\n5.0\t5\n")
    with pytest.raises(ValueError, match=r"test_a.nll.tsv: 1.000000 nats per token but results.json says"):
        run.sentence_nll("test_a")


def test_an_evaluation_without_the_likelihood_is_done_again_where_the_checkpoint_is_kept(tmp_path):
    run_dir = fake_run(tmp_path, Job("noam", 1), {"valid": (1, 2)}, {}, 5.0)
    assert collect.current_evaluation(run_dir, 6, {"beam_size": 1}, ["valid"])
    path = run_dir / "eval" / "results.json"
    results = json.loads(path.read_text())
    del results["splits"]["valid"]["likelihood"]
    path.write_text(json.dumps(results))
    assert collect.current_evaluation(run_dir, 6, {"beam_size": 1}, ["valid"])  # no checkpoint to score it with
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / LAST).write_bytes(b"")
    assert collect.current_evaluation(run_dir, 6, {"beam_size": 1}, ["valid"]) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tune", "--lr-sweep"], "--tune and --lr-sweep: choose one"),
        (["--tune-seeds", "1"], "--tune-seeds and --tune-metric go with --tune"),
        (["--lr-scales", "1,2"], "--lr-scales goes with --lr-sweep or --tune"),
        (["--tune", "schedule.peak_lr=0.1"], "set by the benchmark"),
    ],
)
def test_tuning_options_that_cannot_go_together_are_refused(args, message, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--profile", "smoke", *args])
    assert message in capsys.readouterr().err


def test_tuning_defaults_to_a_grid_of_four_peaks_and_the_first_seed(tmp_path):
    args = parse_args(["--profile", "smoke", "--tune", "--seeds", "3,4", "--out", str(tmp_path)])
    assert args.lr_scales == [0.5, 1.0, 2.0, 4.0] and args.tune_metric == "bleu"
    from noamt_study.cli import study_of

    study = study_of(args)
    assert study.mode == "tuned" and study.tuning.seeds == [3] and study.seeds == [3, 4]


@pytest.mark.slow
def test_the_tuned_protocol_end_to_end(toy_data_dir, tmp_path):
    """Two peaks per schedule to start, so the best sits at an edge and the grid grows; then the
    seeds at the chosen peaks, the report and its peak plot."""
    out = tmp_path / "bench"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "NOAMT_CACHE_DIR": str(tmp_path / "cache"),
        "NOAMT_DATA_DIR": str(toy_data_dir),
    }
    command = [sys.executable, "-m", "noamt_study.cli", "--profile", "smoke", "--out", str(out), "--tune"]
    command += ["--schedules", "noam,constant", "--seeds", "1,2", "--lr-scales", "1,2", "--tune-metric", "loss"]
    result = subprocess.run([*command, "device.num_threads=1"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((out / "results.json").read_text())
    meta = saved["meta"]
    assert meta["mode"] == "tuned" and meta["tune_seeds"] == [1] and meta["tune_criterion"] == "loss"
    chosen = meta["chosen_lr_scales"]
    for name in ("noam", "constant"):
        grid = sorted(s["lr_scale"] for s in saved["settings"] if s["schedule"] == name)
        assert len(grid) >= 3 and chosen[name] in grid  # grew past the edge at least once
        losses = {s["lr_scale"]: s["final_valid_loss"]["values"][0] for s in saved["settings"] if s["schedule"] == name}
        assert chosen[name] == min(losses, key=losses.get)  # the lowest validation loss of seed 1
        assert f"{name}: best peak at the edge" in result.stderr
    selected = [s for s in saved["settings"] if s["selected"]]
    assert sorted((s["schedule"], s["lr_scale"], s["seeds"]) for s in selected) == sorted(
        (name, chosen[name], [1, 2]) for name in ("noam", "constant")
    )
    assert {c["metric"] for c in saved["comparisons"]} == {"bleu", "nll"}
    leader = min(selected, key=lambda s: s["final_valid_loss"]["mean"])  # picked as the peaks were: on loss
    assert (saved["leader"]["setting"], saved["leader"]["criterion"]) == (leader["setting"], "loss")
    assert saved["leader"]["comparisons"] == []  # two schedules: their one pair is already compared
    report = (out / "report.md").read_text()
    assert "tuned peaks: per schedule a grid of × 1, 2 its default peak" in report
    assert "## Peak learning-rate sweep (validation set, last checkpoints, tuning seed 1)" in report
    trained = sum(len(s["runs"]) for s in saved["settings"])
    assert f"(hosts: {host_description()}: {trained} runs)" in report
    assert (out / "peak_sensitivity.png").read_bytes().startswith(b"\x89PNG")
    kept = json.loads((out / "tuning.json").read_text())
    assert kept["chosen"] == chosen and kept["criterion"] == "loss" and kept["lr_scales"] == [1.0, 2.0]
    assert kept["validation"] == meta["chosen_on"]
    rerun = subprocess.run([*command, "device.num_threads=1"], env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and "to train" in rerun.stderr and "evaluating" not in rerun.stderr
    assert "peaks kept from tuning.json: noam, constant" in rerun.stderr

    # The choice stays what tuning.json says, whatever the grid's scores say now: give constant
    # another peak of its grid there, as if the grid had chosen it, and its seeds train at that peak.
    other = next(scale for scale in kept["grids"]["constant"] if scale != chosen["constant"])
    kept["chosen"]["constant"] = other
    moved = f"constant-x{chosen['constant']:g}"
    kept["validation"][moved] += 0.5  # and a score that has moved since the choice
    (out / "tuning.json").write_text(json.dumps(kept))
    again = subprocess.run([*command, "device.num_threads=1"], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"chosen peaks: noam x{chosen['noam']:g}, constant x{other:g}" in again.stderr
    saved = json.loads((out / "results.json").read_text())
    assert saved["meta"]["chosen_lr_scales"]["constant"] == other
    report = (out / "report.md").read_text()
    assert f"the validation loss at the budget of 1 setting moved (trained or evaluated again): {moved} (" in report


def test_schedulefree_is_a_study_entry_with_its_own_optimizer(tmp_path):
    """The entry trains schedule-free AdamW after the constant schedule's warmup, its peak scaled
    like a schedule's, and its runs resolve to exactly that."""
    from noamt_study import cli, plan

    job = plan.Job("schedulefree", 1, 2.0)
    option = plan.job_config(job, default_peak=0.004)
    assert "override /schedule: constant" in option and "override /optim: adamw_schedulefree" in option
    assert "peak_lr: 0.008" in option and "run_name: schedulefree-x2-seed1" in option
    args = parse_args(["--profile", "smoke", "--tune", "--schedules", "noam,schedulefree", "--out", str(tmp_path)])
    (tmp_path / "configs").mkdir()
    overrides = plan.base_overrides(cli.study_of(args), tmp_path / "configs")
    peaks = cli.default_peaks(["schedulefree"], overrides)
    plan.write_job_configs([job], tmp_path / "configs", peaks)
    (settings,) = cli.compose_jobs([job], overrides).values()
    assert settings["optim"]["name"] == "adamw_schedulefree" and settings["schedule"]["name"] == "constant"
    assert settings["schedule"]["peak_lr"] == pytest.approx(2.0 * peaks["schedulefree"])
    with pytest.raises(SystemExit):
        parse_args(["--profile", "smoke", "optim=adamw"])


def test_a_target_beyond_100_seeds_says_whether_seeds_or_the_test_set_stand_in_the_way():
    from noamt_study.seed_sentence_test import Power

    def power(v_shared):
        return Power(
            40.0,
            v_shared,
            3,
            detectable=9.0,
            target=0.5,
            seeds_for_target=None,
            detectable_low=5.0,
            detectable_high=40.0,
        )

    shared = sentences.power_line("t", "noam", "cosine", power(0.09))  # (1.96 + 0.84) * 0.3 = 0.84 > 0.5
    assert "more than any number of seeds: the test set's shared sentence variance alone" in shared
    assert "detectable difference at 0.84 BLEU" in shared
    seeds = sentences.power_line("t", "noam", "cosine", power(0.01))  # the floor 0.28 is below 0.5
    assert "would need more than 100 seeds (at the seeds' measured spread; V_f alone allows 0.28)" in seeds


def test_the_verdict_names_one_seed_count_when_every_comparison_needs_the_same():
    from noamt_study.seed_sentence_test import from_variances, power_analysis

    test = from_variances(np.array([0.5, 0.6, 0.7]), v_sent=0.001, v_pair=0.003, n_samples=1000)
    boot = stats.PairedBootstrap(delta=0.6, ci_low=0.1, ci_high=1.1, p_value=0.03, n_samples=1000, n_seeds=3)
    record = stats.compare_seeds([0.5, 0.6, 0.7], [0.0] * 3)
    power = power_analysis(test)
    assert power.seeds_for_target is not None
    same = [
        significance.Comparison(split, "noam", "cosine", test, test.p_value, power, boot, boot.p_value, record)
        for split in ("test_a", "test_b")
    ]
    assert sentences.verdict(same)[2].endswith(f"0.5 BLEU would need {power.seeds_for_target} seeds.")
