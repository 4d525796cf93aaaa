"""The record-by-record comparison of a run trained twice (noamt_study.retrain) and how its first
training is set aside."""

import json

from noamt_study import retrain


def write_records(path, *records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def train(step, loss, time=0.0, speed=1000.0):
    return {"kind": "train", "step": step, "time": time, "loss": loss, "lr": 0.001, "tokens_per_s": speed}


def valid(step, loss, bleu):
    return {"kind": "valid", "step": step, "time": 5.0, "loss": loss, "bleu": bleu}


def test_two_trainings_that_differ_only_in_their_clocks_and_extra_fields_are_identical(tmp_path):
    start = {"kind": "run", "step": 0, "time": 1.0, "resumed": False}
    write_records(tmp_path / "a.jsonl", start, train(50, 4.0, 10.0, 900.0), valid(50, 3.9, 12.0))
    newer = {**train(50, 4.0, 20.0, 1800.0), "nll_loss": 3.2}  # a newer noamt records more
    write_records(tmp_path / "b.jsonl", {**start, "time": 99.0}, newer, valid(50, 3.9, 12.0))
    assert retrain.compare_trainings(tmp_path / "a.jsonl", tmp_path / "b.jsonl") == retrain.Retraining(True, 2, None)


def test_the_first_record_and_field_where_two_trainings_part_is_named(tmp_path):
    write_records(tmp_path / "a.jsonl", train(50, 4.0), valid(50, 3.9, 12.0), train(100, 3.5), valid(100, 3.4, 15.0))
    write_records(tmp_path / "b.jsonl", train(50, 4.0), valid(50, 3.9, 12.5), train(100, 3.6), valid(100, 3.4, 15.0))
    result = retrain.compare_trainings(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert not result.identical and result.first_difference == "valid record at update 50: bleu 12.0 -> 12.5"
    write_records(tmp_path / "c.jsonl", train(50, 4.0), valid(50, 3.9, 12.0))
    result = retrain.compare_trainings(tmp_path / "a.jsonl", tmp_path / "c.jsonl")
    assert result.first_difference == "train record at update 100: missing in the second training"


def test_a_resumed_session_is_compared_by_its_last_record_of_each_update(tmp_path):
    """Ctrl-C at update 120 after the checkpoint at 100: the resumed session logs update 150 again."""
    write_records(
        tmp_path / "a.jsonl",
        train(100, 3.5),
        train(150, 3.31),
        {"kind": "end", "step": 120, "time": 0.0, "interrupted": True},
        {"kind": "run", "step": 100, "time": 0.0, "resumed": True},
        train(150, 3.3),
    )
    write_records(tmp_path / "b.jsonl", train(100, 3.5), train(150, 3.3))
    assert retrain.compare_trainings(tmp_path / "a.jsonl", tmp_path / "b.jsonl").identical


def test_setting_aside_keeps_the_first_training_however_often_a_run_is_trained_again(tmp_path):
    run = tmp_path / "run"
    write_records(run / "metrics.jsonl", train(50, 4.0))
    write_records(run / "eval" / "results.json", {"step": 50})
    (run / "tokenizer.json").write_text("{}")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / retrain.RETRAINING_FILE).write_text("{}")
    folder = retrain.set_aside(run)
    assert sorted(p.name for p in folder.iterdir()) == [".hydra", "eval", "metrics.jsonl"]
    assert sorted(p.name for p in run.iterdir()) == [".hydra", "first_training", "tokenizer.json"]
    assert (folder / ".hydra" / "config.yaml").read_text() == "seed: 1\n"  # a copy: the check runs on the original
    write_records(run / "metrics.jsonl", train(50, 4.5))  # a second training, lost again before its evaluation
    retrain.set_aside(run)
    assert json.loads((folder / "metrics.jsonl").read_text())["loss"] == 4.0
    assert not (run / "metrics.jsonl").exists() and retrain.retrained([run, tmp_path]) == [run]


def test_the_comparison_is_written_beside_the_run(tmp_path):
    run = tmp_path / "run"
    write_records(run / "first_training" / "metrics.jsonl", train(50, 4.0))
    write_records(run / "metrics.jsonl", train(50, 4.25))
    result = retrain.record_retraining(run)
    assert json.loads((run / "retraining.json").read_text()) == {
        "identical": False,
        "records_compared": 1,
        "first_difference": "train record at update 50: loss 4.0 -> 4.25",
    }
    assert retrain.report_note(run) == f" (trained again: differs at the {result.first_difference})"
    assert retrain.report_note(tmp_path) == ""
    line = retrain.describe(run, result)
    assert line.endswith(f"it differs from the first training at the {result.first_difference}")
