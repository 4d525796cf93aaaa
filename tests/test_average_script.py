"""scripts/average_checkpoints.py: the mean of the weights, usable by noamt-evaluate."""

import json
import re
from pathlib import Path

import pytest
import torch
from helpers.runs import make_checkpoint, run_cli, run_script

from noamt.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses


def average(*args: str) -> str:
    """Run scripts/average_checkpoints.py; its stdout (it must succeed)."""
    proc = run_script("average_checkpoints.py", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def average_error(*args: str) -> str:
    """Run scripts/average_checkpoints.py where it must fail; its one-line error."""
    proc = run_script("average_checkpoints.py", *args)
    assert proc.returncode != 0
    return proc.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, toy_data_dir) -> Path:
    """A run with checkpoints at steps 10, 20 and 30 from different random initialisations."""
    run = tmp_path_factory.mktemp("run")
    for seed, step in enumerate((10, 20, 30)):
        make_checkpoint(run / "checkpoints" / f"checkpoint_{step}.pt", toy_data_dir, seed, step)
    return run


def test_average_of_the_last_two_is_the_mean_and_evaluates(run_dir, tmp_path):
    printed = average("--run-dir", str(run_dir), "--last", "2")
    output = run_dir / "checkpoints" / "checkpoint_avg.pt"
    assert f"-> {output}" in printed
    a, b = (load_checkpoint(run_dir / "checkpoints" / f"checkpoint_{s}.pt") for s in (20, 30))
    averaged = load_checkpoint(output)
    assert averaged["step"] == 30 and averaged["tokenizer"] == b["tokenizer"]
    for name, value in averaged["model"].items():
        torch.testing.assert_close(value, (a["model"][name] + b["model"][name]) / 2)

    result = run_cli(
        "noamt.cli.evaluate", f"checkpoint={output}", "splits=[test_2016_flickr]", "decoding.beam_size=1", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr.decode()
    saved = json.loads((run_dir / "eval" / "results.json").read_text())
    assert saved["checkpoint"] == "../checkpoints/checkpoint_avg.pt" and saved["step"] == 30  # relative to eval/


def test_explicit_inputs_and_output(run_dir, tmp_path):
    inputs = [run_dir / "checkpoints" / f"checkpoint_{s}.pt" for s in (10, 30)]
    average("--inputs", *map(str, inputs), "--output", str(tmp_path / "avg.pt"))
    assert load_checkpoint(tmp_path / "avg.pt")["averaged_from"] == [str(p) for p in inputs]


def test_too_few_checkpoints_is_a_one_line_error(run_dir):
    error = average_error("--run-dir", str(run_dir), "--last", "5")
    assert re.search(r"--last 5: .*checkpoints has only 3 checkpoint_<step>.pt", error), error


def test_epochs_flag_averages_the_last_epoch_checkpoints(tmp_path, toy_data_dir):
    folder = tmp_path / "checkpoints"
    for seed, name in enumerate(
        ["checkpoint_epoch1.pt", "checkpoint_epoch2.pt", "checkpoint_epoch10.pt", "checkpoint_99.pt"]
    ):
        make_checkpoint(folder / name, toy_data_dir, seed, step=seed)
    average("--run-dir", str(tmp_path), "--last", "2", "--epochs")
    averaged = load_checkpoint(folder / "checkpoint_avg.pt")
    assert averaged["averaged_from"] == [str(folder / "checkpoint_epoch2.pt"), str(folder / "checkpoint_epoch10.pt")]
    error = average_error("--run-dir", str(tmp_path), "--last", "4", "--epochs")
    assert re.search(r"--last 4: .* has only 3 checkpoint_epoch<E>.pt files", error), error


def test_refusals_are_one_line_and_write_nothing(run_dir, tmp_path):
    """An output over a training checkpoint, and inputs of another shape (once a traceback)."""
    folder = run_dir / "checkpoints"
    before = sorted(folder.iterdir())
    error = average_error("--run-dir", str(run_dir), "--last", "2", "--output", str(folder / "checkpoint_last.pt"))
    assert error.startswith(
        f"average_checkpoints: output {folder / 'checkpoint_last.pt'}: checkpoint_last.pt is the name of a "
        "training checkpoint"
    )
    state = dict(load_checkpoint(folder / "checkpoint_10.pt"))
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name][:, :8].clone()
    reshaped = save_checkpoint(state, tmp_path / "reshaped.pt")
    error = average_error(
        "--inputs", str(folder / "checkpoint_20.pt"), str(reshaped), "--output", str(tmp_path / "a.pt")
    )
    assert re.fullmatch(
        rf"average_checkpoints: {reshaped}: 'model' {name} is \[\d+, 8\] float32, in .* float32: .*", error
    )
    assert sorted(folder.iterdir()) == before and not (tmp_path / "a.pt").exists()
