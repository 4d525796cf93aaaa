"""RunDir: the one place a run's paths are named."""

from noamt.evaluation import default_out_dir
from noamt.inference import resolve_checkpoint
from noamt.run_dir import RunDir


def test_a_run_directory_names_its_files(tmp_path):
    run = RunDir.at(tmp_path / "runs" / "r")
    assert run.last == tmp_path / "runs/r/checkpoints/checkpoint_last.pt"
    assert run.best == tmp_path / "runs/r/checkpoints/checkpoint_best.pt"
    assert (run.tokenizer.name, run.metrics.name, run.lock.name) == ("tokenizer.json", "metrics.jsonl", "train.lock")
    assert run.tensorboard == tmp_path / "runs/r/tensorboard"
    assert run.eval_dir == tmp_path / "runs/r/eval" and run.hydra_config == tmp_path / "runs/r/.hydra/config.yaml"
    assert not (tmp_path / "runs").exists()  # naming creates nothing


def test_the_model_of_a_run_is_its_best_checkpoint_else_its_last(tmp_path):
    run = RunDir.at(tmp_path)
    assert run.model_checkpoint() is None
    run.checkpoints.mkdir()
    run.last.write_bytes(b"")
    assert run.model_checkpoint() == run.last
    run.best.write_bytes(b"")
    assert run.model_checkpoint() == run.best


def test_a_checkpoint_belongs_to_the_run_above_its_folder(tmp_path):
    assert RunDir.of_checkpoint(tmp_path / "r" / "checkpoints" / "checkpoint_9.pt") == RunDir.at(tmp_path / "r")
    assert RunDir.of_checkpoint(tmp_path / "averaged.pt") is None


def test_a_run_or_its_checkpoints_folder_names_the_runs_model_and_evaluation_folder(tmp_path):
    run = RunDir.at(tmp_path / "r")
    run.checkpoints.mkdir(parents=True)
    run.last.write_bytes(b"")
    assert resolve_checkpoint(run.path) == resolve_checkpoint(run.checkpoints) == run.last
    assert default_out_dir(run.last) == run.eval_dir
    assert default_out_dir(tmp_path / "averaged.pt") == tmp_path / "eval"  # a file kept outside a run
