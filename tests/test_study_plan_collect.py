"""noamt_study.plan and noamt_study.collect on synthetic runs: the jobs and their Hydra options,
the profiles, run state, reading a resumed run, summaries over seeds, best peaks, divergence."""

import math
from pathlib import Path

import pytest
from helpers.study_runs import end_record, fake_run, run_record, valid_record, write_records

from noamt.checkpoint import config_differences, save_checkpoint
from noamt.run_dir import LAST
from noamt_study import collect, plan
from noamt_study.plan import Job

SPLITS = ["valid", "test_a"]


def test_jobs_are_seed_major_and_their_configs_set_schedule_seed_and_peak():
    jobs = plan.plan_jobs(["noam", "cosine"], [1, 2])
    assert [j.name for j in jobs] == ["noam-seed1", "cosine-seed1", "noam-seed2", "cosine-seed2"]
    assert "schedule:" not in plan.job_config(jobs[1]).replace("override /schedule:", "")
    sweep = plan.plan_jobs(["noam", "cosine"], [1], [0.5, 2.0])
    assert [j.name for j in sweep] == ["noam-x0.5-seed1", "cosine-x0.5-seed1", "noam-x2-seed1", "cosine-x2-seed1"]
    noam, cosine = plan.job_config(sweep[0]), plan.job_config(sweep[1], default_peak=0.004)
    assert noam.startswith("# @package _global_\n") and "override /schedule: noam" in noam
    assert "factor: 0.5" in noam and "seed: 1" in noam and "run_name: noam-x0.5-seed1" in noam
    assert "peak_lr: 0.002" in cosine
    with pytest.raises(ValueError, match="unknown schedules"):
        plan.plan_jobs(["nom"], [1])
    with pytest.raises(ValueError, match="without repeats"):
        plan.plan_jobs(["noam"], [1, 1])


def test_a_stored_run_config_reads_as_its_resolved_settings():
    """A run saved with the peak and total_steps as interpolations reads as their values."""
    stored = Path(__file__).resolve().parents[1] / "docs/results/compare_cpu/runs/cosine-seed1/.hydra/config.yaml"
    schedule = collect.read_run_config(stored)["schedule"]
    assert schedule["peak_lr"] == (128 * 400) ** -0.5 and schedule["total_steps"] == 1200


def test_each_profile_names_its_training_config_seeds_and_beam():
    configs = Path(__file__).resolve().parents[1] / "configs" / "experiment"
    assert plan.profile_names() == ["cpu", "full", "smoke"]
    profiles = {name: plan.load_profile(name) for name in plan.profile_names()}
    assert {name: (p.seeds, p.beam_size) for name, p in profiles.items()} == {
        "cpu": ([1, 2, 3], 1),
        "full": ([1, 2, 3], 5),
        "smoke": ([1, 2], 1),
    }
    assert all((configs / f"{p.experiment}.yaml").is_file() for p in profiles.values())
    assert all(p.experiment == f"compare_{name}" for name, p in profiles.items())


def test_config_differences_name_the_changed_keys():
    old = {"trainer": {"max_steps": 6, "resume": "auto"}, "device": {"num_threads": 1}}
    new = {"trainer": {"max_steps": 8, "resume": "none"}, "device": {"num_threads": 2}}
    assert config_differences(old, new, ["trainer.resume", "device"]) == ["trainer.max_steps: 6 -> 8"]


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
    log = collect.read_training(tmp_path)
    assert [(r["step"], r["loss"]) for r in log.valid] == [(0, 8.0), (3, 6.5), (6, 5.0)]
    assert log.wall_time_s == pytest.approx((110.0 - 100.0) + (231.0 - 200.0))
    assert log.step == 6 and log.end["step"] == 6 and log.info["time"] == 100.0


def test_run_state_new_partial_finished(tmp_path):
    assert collect.run_state(tmp_path / "absent", 6) == collect.RunState("new", 0)
    interrupted = tmp_path / "interrupted"
    write_records(interrupted, [run_record(0, 1.0), end_record(3, 2.0, interrupted=True)])
    save_checkpoint({"model": {}, "step": 3}, interrupted / "checkpoints" / LAST)
    assert collect.run_state(interrupted, 6) == collect.RunState("partial", 3)
    killed = tmp_path / "killed"  # SIGKILL after the last checkpoint: no "end" record
    write_records(killed, [run_record(0, 1.0), valid_record(6, 2.0, 5.0)])
    save_checkpoint({"model": {}, "step": 6}, killed / "checkpoints" / LAST)
    assert collect.run_state(killed, 6) == collect.RunState("finished", 6)
    done = tmp_path / "done"
    write_records(done, [run_record(0, 1.0), end_record(6, 2.0)])
    assert collect.run_state(done, 6) == collect.RunState("finished", 6)
    assert collect.run_state(done, 8).status == "new"  # a longer budget, no checkpoint to resume


def test_evaluation_is_reused_only_for_the_same_checkpoint_step_and_decoding(tmp_path):
    run_dir = fake_run(tmp_path, Job("noam", 1), {"valid": (1, 2), "test_a": (3, 4)}, {}, 5.0)
    assert collect.current_evaluation(run_dir, 6, {"beam_size": 1}, SPLITS)
    assert collect.current_evaluation(run_dir, 8, {"beam_size": 1}, SPLITS) is None
    assert collect.current_evaluation(run_dir, 6, {"beam_size": 5}, SPLITS) is None
    assert collect.current_evaluation(run_dir, 6, {"beam_size": 1}, [*SPLITS, "test_b"]) is None


def test_settings_summarize_runs_over_seeds(benchmark):
    _, runs, _ = benchmark
    noam, cosine = collect.summarize_settings(runs)
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
                runs.append(collect.collect_run(job, tmp_path / "runs" / job.name))
    chosen = collect.select_best_peaks(collect.summarize_settings(runs))
    assert [(s.setting, s.seeds) for s in chosen] == [("noam-x1", [1, 2]), ("constant-x2", [1, 2])]


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
    assert collect.diverged(records) is flagged


def test_a_run_names_each_host_it_trained_on_in_order(tmp_path):
    """An older trainer's session records no host; a session resumed elsewhere records its own."""
    run_dir = tmp_path / "noam-seed1"
    xeon = "Intel(R) Xeon(R) Processor (x86_64), torch 2.13.0+cpu"
    write_records(run_dir, [run_record(0, 100.0), valid_record(0, 101.0, 9.0), end_record(3, 110.0, interrupted=True)])
    assert collect.read_training(run_dir).hosts == ["not recorded"]
    resumed = {**run_record(3, 120.0, resumed=True), "host": xeon}
    write_records(run_dir, [resumed, valid_record(6, 130.0, 6.0), end_record(6, 131.0)])
    assert collect.read_training(run_dir).hosts == ["not recorded", xeon]
    again = {**run_record(6, 140.0, resumed=True), "host": xeon}
    write_records(run_dir, [again, end_record(6, 141.0)])
    assert collect.read_training(run_dir).hosts == ["not recorded", xeon]  # once each
