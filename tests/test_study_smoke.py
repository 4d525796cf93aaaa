"""noamt-compare end to end with the smoke profile: one Hydra multirun, every
report file, re-runs that train nothing, and an interrupted run that is resumed, not restarted."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from noamt.metrics import read_metrics
from noamt.run_dir import LAST
from noamt_study.stats import holm_adjusted

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses

TEST_SPLITS = ["test_2016_flickr", "test_2017_flickr", "test_2017_mscoco", "test_2018_flickr"]
REPORT_FILES = [
    "report.md",
    "results.csv",
    "results.json",
    "lr_schedules.png",
    "validation_curves.png",
    "test_bleu.png",
]


def compare(out: Path, *args: str, cache: Path, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NOAMT_CACHE_DIR": str(cache), "NOAMT_DATA_DIR": str(data_dir)}
    command = [
        sys.executable,
        "-m",
        "noamt_study.cli",
        "--profile",
        "smoke",
        "--out",
        str(out),
        *args,
        "device.num_threads=1",
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def snapshot(run_dir: Path) -> dict:
    """What a retraining or re-evaluation would change: file mtimes and metrics.jsonl."""
    files = [*sorted((run_dir / "checkpoints").iterdir()), run_dir / "eval" / "results.json"]
    return {"mtimes": {p.name: p.stat().st_mtime_ns for p in files}, "metrics": (run_dir / "metrics.jsonl").read_text()}


@pytest.fixture(scope="module")
def smoke(toy_data_dir, tmp_path_factory):
    """noam and cosine, seeds 1 and 2 (the smoke profile's), 6 updates each, on the toy corpus."""
    root = tmp_path_factory.mktemp("compare")
    cache = root / "cache"
    result = compare(root / "bench", "--schedules", "noam,cosine", cache=cache, data_dir=toy_data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "bench", cache, toy_data_dir, result


def test_smoke_profile_trains_evaluates_and_writes_the_report(smoke):
    out, _, _, result = smoke
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert "4 runs, 0 finished (skipped), 4 to train" in result.stderr
    assert "run 4/4 cosine-seed2: finished at update 6" in result.stderr and "ETA" in result.stderr
    saved = json.loads((out / "results.json").read_text())
    assert saved["meta"]["mode"] == "same_peak" and saved["meta"]["checkpoint"] == LAST
    assert [s["setting"] for s in saved["settings"]] == ["noam", "cosine"]
    noam, cosine = saved["settings"]
    assert noam["peak_lr"] == cosine["peak_lr"]  # every schedule at the Noam peak of the model
    for setting in saved["settings"]:
        assert setting["seeds"] == [1, 2] and setting["updates"]["values"] == [6, 6]
        for run in setting["runs"]:
            own = json.loads((out / run["results_json"]).read_text())
            assert own["step"] == 6 and Path(own["checkpoint"]).name == LAST
            assert own["decoding"]["beam_size"] == 1
            assert set(own["splits"]) == {"valid", *TEST_SPLITS}
            expected = {
                s: {"bleu": v["bleu"], "chrf": v["chrf"], "ter": v["ter"], "nll": v["likelihood"]["nll_per_token"]}
                for s, v in own["splits"].items()
            }
            assert run["scores"] == expected
            assert run["still_falling"] in (True, False) and run["final_valid_loss"] > 0
    assert [(c["metric"], c["split"], c["other"]) for c in saved["comparisons"]] == [
        (m, s, "cosine") for m in ("bleu", "nll") for s in TEST_SPLITS
    ]
    comparisons = [c for c in saved["comparisons"] if c["metric"] == "bleu"]
    report = (out / "report.md").read_text()
    assert "same peak: every schedule at peak lr" in report
    for c in comparisons:
        assert 0 < c["test"]["p_value"] <= 1 and c["conclusion"] in report and c["conclusion"] in result.stdout
    # the 4 comparisons are one family: each p-value is Holm-adjusted over all of them
    assert [c["test_p_holm"] for c in comparisons] == holm_adjusted([c["test"]["p_value"] for c in comparisons])
    boot = [c["bootstrap"]["p_value"] for c in comparisons]
    assert [c["bootstrap_p_holm"] for c in comparisons] == holm_adjusted(boot)
    assert all(c["test"]["n_seeds"] == 2 and c["power"]["seeds"] == 2 for c in comparisons)
    likelihood = [c for c in saved["comparisons"] if c["metric"] == "nll"]  # a family of its own
    assert [c["test_p_holm"] for c in likelihood] == holm_adjusted([c["test"]["p_value"] for c in likelihood])
    assert all(
        c["conclusion"] in report and " NLL/token (mean ± std over 2 seeds)" in c["conclusion"] for c in likelihood
    )
    assert len(saved["verdict"]) == 6 and all(line in report and line in result.stdout for line in saved["verdict"])
    assert saved["verdict"][0].startswith("On BLEU: with seeds and test sentences random")
    assert saved["verdict"][3].startswith("On test-set likelihood (NLL/token): with seeds and test sentences random")
    assert "## Convergence" in report and "Every verdict here is about a budget of 6 updates" in report


def test_each_run_is_evaluated_as_soon_as_its_training_finishes(smoke):
    """Every run was scored beside the trainings that were still going: the pass after the
    trainings (whose labels read "run i/n") found nothing left to evaluate."""
    _, _, _, result = smoke
    for name in ("noam-seed1", "cosine-seed1", "noam-seed2", "cosine-seed2"):
        assert f"[compare] evaluating {name} on valid, {', '.join(TEST_SPLITS)}" in result.stderr
    assert "evaluating run " not in result.stderr and "failed" not in result.stderr


def test_a_run_whose_checkpoints_are_gone_before_its_evaluation_is_trained_again(smoke, tmp_path):
    """noam-seed1 kept as records without its checkpoints or scores is trained again from scratch
    and repeats its first training record for record; noam-seed2, kept with its scores, is not."""
    out, cache, data, _ = smoke
    for name, kept in (("noam-seed1", [".hydra", "tokenizer.json", "metrics.jsonl"]), ("noam-seed2", None)):
        target = tmp_path / "bench" / "runs" / name
        shutil.copytree(out / "runs" / name, target, ignore=shutil.ignore_patterns("checkpoints"))
        if kept is not None:
            shutil.rmtree(target / "eval")
    first_records = (out / "runs" / "noam-seed1" / "metrics.jsonl").read_text()
    args = ("--schedules", "noam", "--seeds", "1,2")
    planned = compare(tmp_path / "bench", *args, "--dry-run", cache=cache, data_dir=data)
    assert planned.returncode == 0, planned.stderr[-3000:]
    assert "noam-seed1: no checkpoint to score valid, test_2016_flickr" in planned.stderr
    assert "it would be trained again" in planned.stderr and "noam-seed2: no checkpoint" not in planned.stderr
    assert not (tmp_path / "bench" / "runs" / "noam-seed1" / "first_training").exists()

    result = compare(tmp_path / "bench", *args, cache=cache, data_dir=data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 runs, 1 finished (skipped), 1 to train (0 resumed)" in result.stderr
    run_dir = tmp_path / "bench" / "runs" / "noam-seed1"
    assert (run_dir / "first_training" / "metrics.jsonl").read_text() == first_records
    retraining = json.loads((run_dir / "retraining.json").read_text())
    assert retraining["identical"] is True and retraining["records_compared"] > 2
    assert f"all {retraining['records_compared']} training and validation records equal" in result.stderr
    scored = json.loads((run_dir / "eval" / "results.json").read_text())
    original = json.loads((out / "runs" / "noam-seed1" / "eval" / "results.json").read_text())
    assert scored["splits"] == original["splits"]  # the same model as the first training's
    assert not (tmp_path / "bench" / "runs" / "noam-seed2" / "first_training").exists()
    report = (tmp_path / "bench" / "report.md").read_text()
    assert "noam-seed1/eval/results.json) (trained again: the same records)" in report
    assert "noam-seed2/eval/results.json) (trained again" not in report
    (run_dir / "retraining.json").unlink()  # as if the call that trained it again had been stopped before comparing
    rerun = compare(tmp_path / "bench", *args, cache=cache, data_dir=data)
    assert rerun.returncode == 0 and "2 finished (skipped), 0 to train" in rerun.stderr
    assert json.loads((run_dir / "retraining.json").read_text()) == retraining


def test_a_finished_run_without_its_scores_is_evaluated_first_beside_the_trainings(smoke, tmp_path):
    out, cache, data, _ = smoke
    target = tmp_path / "bench" / "runs" / "cosine-seed1"
    shutil.copytree(out / "runs" / "cosine-seed1", target, ignore=shutil.ignore_patterns("eval"))
    result = compare(tmp_path / "bench", "--schedules", "cosine", "--seeds", "1,2", cache=cache, data_dir=data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 runs, 1 finished (skipped), 1 to train (0 resumed)" in result.stderr
    for name in ("cosine-seed1", "cosine-seed2"):
        assert f"[compare] evaluating {name} on valid, {', '.join(TEST_SPLITS)}" in result.stderr
    assert "evaluating run " not in result.stderr  # nothing was left for the pass after the trainings
    scored, original = (json.loads((d / "eval/results.json").read_text()) for d in (target, out / "runs" / target.name))
    assert scored["splits"] == original["splits"]


def test_the_runs_are_one_hydra_multirun_in_the_benchmark_folder(smoke):
    out, _, _, _ = smoke
    multirun = (out / "runs" / "multirun.yaml").read_text()
    assert "+compare_run=noam-seed1,cosine-seed1,noam-seed2,cosine-seed2" in multirun
    for name in ("noam-seed1", "cosine-seed1", "noam-seed2", "cosine-seed2"):
        overrides = (out / "runs" / name / ".hydra" / "overrides.yaml").read_text()
        assert f"+compare_run={name}" in overrides and "trainer.resume=auto" in overrides
    first = [r for r in read_metrics(out / "runs" / "cosine-seed2" / "metrics.jsonl") if r["kind"] == "run"]
    assert [r["schedule"] for r in first] == ["cosine"] and first[0]["schedule_params"]["total_steps"] == 6


def test_rerunning_trains_and_evaluates_nothing_again(smoke):
    out, cache, data, _ = smoke
    runs = sorted(p for p in (out / "runs").iterdir() if p.is_dir())
    before = {run.name: snapshot(run) for run in runs}
    result = compare(out, "--schedules", "noam,cosine", cache=cache, data_dir=data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 runs, 4 finished (skipped), 0 to train" in result.stderr
    assert "run 1/" not in result.stderr and "evaluating" not in result.stderr
    assert {run.name: snapshot(run) for run in runs} == before


def test_a_changed_config_is_refused_instead_of_mixed_in(smoke):
    out, cache, data, _ = smoke
    result = compare(out, "--schedules", "noam", "--seeds", "1", "trainer.max_steps=8", cache=cache, data_dir=data)
    assert result.returncode == 1
    assert "noam-seed1 was trained with another config (" in result.stderr
    assert "trainer.max_steps: 6 -> 8" in result.stderr


def test_an_interrupted_run_is_resumed_not_restarted(smoke, tmp_path):
    """Rebuild what Ctrl-C at update 3 leaves (checkpoint_last.pt at 3, records up to 3, an
    interrupted "end"), then re-run: training continues from update 3 to the same model."""
    out, cache, data, _ = smoke
    original = out / "runs" / "noam-seed1"
    run_dir = tmp_path / "bench" / "runs" / "noam-seed1"
    shutil.copytree(original / ".hydra", run_dir / ".hydra")
    shutil.copy(original / "tokenizer.json", run_dir / "tokenizer.json")
    (run_dir / "checkpoints").mkdir()
    shutil.copy(original / "checkpoints" / "checkpoint_3.pt", run_dir / "checkpoints" / LAST)
    records = [r for r in read_metrics(original / "metrics.jsonl") if r["step"] <= 3 and r["kind"] != "end"]
    records.append({"kind": "end", "step": 3, "time": records[-1]["time"], "interrupted": True})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    result = compare(tmp_path / "bench", "--schedules", "noam", "--seeds", "1", cache=cache, data_dir=data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 run, 0 finished (skipped), 1 to train (1 resumed)" in result.stderr
    assert "run 1/1 noam-seed1: resuming at update 3" in result.stderr
    new = read_metrics(run_dir / "metrics.jsonl")[len(records) :]
    assert new[0]["kind"] == "run" and new[0]["step"] == 3 and new[0]["resumed"] is True
    assert min(r["step"] for r in new if r["kind"] == "train") == 4  # updates 1-3 were not redone
    assert new[-1]["kind"] == "end" and new[-1]["step"] == 6 and not new[-1]["interrupted"]
    final = [r for r in new if r["kind"] == "valid"][-1]
    uninterrupted = [r for r in read_metrics(original / "metrics.jsonl") if r["kind"] == "valid"][-1]
    assert (final["step"], final["loss"]) == (6, uninterrupted["loss"])  # the same model as never stopped
    assert (tmp_path / "bench" / "report.md").is_file()


def test_runs_trained_at_once_equal_runs_trained_one_after_another(smoke, tmp_path):
    out, cache, data, _ = smoke
    result = compare(tmp_path / "bench", "--schedules", "noam,cosine", "--jobs", "2", cache=cache, data_dir=data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "run 4/4" in result.stderr
    for name in ("noam-seed1", "noam-seed2", "cosine-seed1", "cosine-seed2"):
        together, alone = (
            [
                (r["step"], r["loss"])
                for r in read_metrics(root / "runs" / name / "metrics.jsonl")
                if r["kind"] == "valid"
            ]
            for root in (tmp_path / "bench", out)
        )
        assert together == alone, name
        scores = [
            json.loads((root / "runs" / name / "eval" / "results.json").read_text())["splits"]
            for root in (tmp_path / "bench", out)
        ]
        assert scores[0] == scores[1], name


def test_a_hydra_launcher_trains_the_runs_and_the_same_report_follows(smoke, tmp_path):
    """--launcher local: the pending runs are one multirun of submitit jobs (local processes, as
    hydra/launcher=slurm would submit them to SLURM); they train to the same records and scores."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'noamt[slurm]'")
    out, cache, data, _ = smoke
    result = compare(
        tmp_path / "bench",
        "--schedules",
        "noam,cosine",
        "--seeds",
        "1",
        "--launcher",
        "local",
        "--jobs",
        "2",
        cache=cache,
        data_dir=data,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tmp_path / "bench" / "runs"
    assert "- hydra/launcher=local" in (runs / "multirun.yaml").read_text()
    assert len(list((runs / ".submitit").glob("*/*_result.pkl"))) == 2  # each run was a submitit job
    assert "run 2/2" in result.stderr and (tmp_path / "bench" / "report.md").is_file()
    for name in ("noam-seed1", "cosine-seed1"):
        launched, basic = (
            (
                [
                    (r["step"], r["loss"])
                    for r in read_metrics(root / "runs" / name / "metrics.jsonl")
                    if r["kind"] == "valid"
                ],
                json.loads((root / "runs" / name / "eval" / "results.json").read_text())["splits"],
            )
            for root in (tmp_path / "bench", out)
        )
        assert launched == basic, name


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--launcher", "nowhere"], "--launcher nowhere: no such option; hydra/launcher options: basic"),
        (["--launcher", "local", "--time-limit", "5"], "--time-limit: not with --launcher"),
    ],
)
def test_a_launcher_that_cannot_run_is_refused_in_one_line(smoke, tmp_path, args, message):
    _, cache, data, _ = smoke
    result = compare(tmp_path / "bench", "--seeds", "1", *args, cache=cache, data_dir=data)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "bench" / "runs").exists()


def test_a_time_limit_stops_training_or_evaluation_and_a_rerun_goes_on(smoke, tmp_path):
    out, cache, data, _ = smoke
    stopped = compare(
        tmp_path / "a", "--schedules", "noam", "--seeds", "1", "--time-limit", "0.001", cache=cache, data_dir=data
    )
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert "time limit reached: stopping the runs" in stopped.stderr
    assert "run the same command again to go on" in stopped.stdout and not (tmp_path / "a" / "report.md").exists()

    trained = tmp_path / "b" / "runs" / "noam-seed1"  # trained, not yet evaluated
    shutil.copytree(out / "runs" / "noam-seed1", trained, ignore=shutil.ignore_patterns("eval"))
    stopped = compare(
        tmp_path / "b", "--schedules", "noam", "--seeds", "1", "--time-limit", "0.001", cache=cache, data_dir=data
    )
    assert stopped.returncode == 75 and "time limit reached before evaluating run 1/1" in stopped.stderr
    assert not (trained / "eval").exists()
    resumed = compare(tmp_path / "b", "--schedules", "noam", "--seeds", "1", cache=cache, data_dir=data)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 finished (skipped)" in resumed.stderr and (tmp_path / "b" / "report.md").is_file()


def test_the_same_comparison_runs_on_another_language_pair(smoke, tmp_path):
    _, cache, data, _ = smoke
    result = compare(
        tmp_path / "bench",
        "--schedules",
        "noam,cosine",
        "--seeds",
        "1",
        "data=multi30k_de_en",
        cache=cache,
        data_dir=data,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    meta = json.loads((tmp_path / "bench" / "results.json").read_text())["meta"]
    assert (meta["data"], meta["src_lang"], meta["tgt_lang"]) == ("multi30k_de_en", "de", "en")
    assert "multi30k_de_en" in meta["description"]["training"]
    for name in ("noam-seed1", "cosine-seed1"):
        eval_dir = tmp_path / "bench" / "runs" / name / "eval"
        assert sorted(p.name for p in eval_dir.glob("*.hyp.*")) == sorted(
            f"{split}.hyp.en" for split in ["valid", *TEST_SPLITS]
        )
        translations = (eval_dir / "test_2016_flickr.hyp.en").read_text().splitlines()
        assert len(translations) == 20
