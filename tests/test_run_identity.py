"""A checkpoint names the run that wrote it ("identity"): resuming refuses another run's
checkpoint_last.pt, evaluating a run directory refuses another run's model, loading refuses a
model that cannot be right, averaging refuses what cannot be averaged. Each case asserts the
exception or exit status, the one line, and that nothing else changed. In process on tiny
models where the command line adds nothing; the command-line cases are marked slow."""

import copy
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.runs import make_checkpoint

from noamt.checkpoint import (
    RESUME_MAY_CHANGE,
    CheckpointError,
    average_checkpoints,
    check_average_output,
    checkpoint_identity,
    identity_settings,
    load_checkpoint,
    run_differences,
    run_identity,
    save_checkpoint,
)
from noamt.data import Tokenizer
from noamt.inference import load_model
from noamt.model import ModelConfig, build_model


def snapshot(folder: Path) -> dict[str, bytes]:
    """Relative path -> contents of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(toy_data_dir, tmp_path_factory) -> dict:
    """An untrained tiny checkpoint's state (d_model 32, seed 1, a BPE of the toy corpus)."""
    path = make_checkpoint(tmp_path_factory.mktemp("base") / "base.pt", toy_data_dir, seed=0, step=4)
    return dict(load_checkpoint(path))


def write_state(path: Path, base: dict, *, seed: int = 1, identity: bool = True, **model) -> Path:
    """A checkpoint of ``base``'s run with trainer.seed ``seed`` and config.model changed by
    ``model`` (weights of that shape); with ``identity``, the entry noamt-train writes."""
    config = copy.deepcopy(base["config"])
    config["trainer"]["seed"] = seed
    config["model"].update(model)
    torch.manual_seed(seed)
    weights = build_model(ModelConfig(**config["model"]), Tokenizer.from_str(base["tokenizer"])).state_dict()
    state = {"model": weights, "config": config, "tokenizer": base["tokenizer"], "step": 4}
    if identity:
        state["identity"] = run_identity(config, base["tokenizer"])
    return save_checkpoint(state, path)


def with_state(path: Path, change) -> Path:
    """Rewrite the checkpoint at ``path`` with ``change(state)`` applied (a fresh checksum)."""
    state = dict(load_checkpoint(path))
    change(state)
    return save_checkpoint(state, path)


# ----------------------------------------------------------------------------- the identity entry
def test_the_identity_leaves_out_what_a_resume_may_change_and_names_what_differs(base):
    config, tokenizer = base["config"], base["tokenizer"]
    identity = run_identity(config, tokenizer)
    assert identity["run_name"] == config["run_name"] and set(identity) == {
        "run_name",
        "config_sha256",
        "tokenizer_sha256",
    }
    longer = copy.deepcopy(config)
    longer["trainer"].update(max_steps=99, patience=5, resume="auto")
    longer["device"]["device"] = "cuda"
    longer["run_name"] = "renamed"
    assert run_identity(longer, tokenizer)["config_sha256"] == identity["config_sha256"]
    assert not any(key.startswith(RESUME_MAY_CHANGE) for key in identity_settings(longer))
    other_seed = copy.deepcopy(config)
    other_seed["trainer"]["seed"] = 2
    assert run_identity(other_seed, tokenizer)["config_sha256"] != identity["config_sha256"]
    state = {"config": other_seed, "tokenizer": tokenizer, "identity": run_identity(other_seed, tokenizer)}
    run = {"config": config, "tokenizer": tokenizer, "identity": identity}
    assert run_differences(state, run) == ["trainer.seed: 2 -> 1"]
    retokenized = {"config": config, "tokenizer": tokenizer + " "}
    assert run_differences(retokenized, {"tokenizer": tokenizer}) == [
        f"tokenizer: sha256 {run_identity(config, tokenizer + ' ')['tokenizer_sha256'][:12]} -> "
        f"{identity['tokenizer_sha256'][:12]}"
    ]


def test_a_checkpoint_without_identity_is_told_by_its_config_with_a_notice(base, caplog):
    """Older checkpoints hold config and tokenizer: their identity is computed from them, and a
    setting added to noamt since (known to one side only) is no difference."""
    run = {"config": base["config"], "tokenizer": base["tokenizer"]}
    older = {k: v for k, v in base.items() if k != "identity"}
    older["config"] = {
        **base["config"],
        "trainer": {k: v for k, v in base["config"]["trainer"].items() if k != "clip_norm"},
    }
    with caplog.at_level(logging.INFO, logger="noamt.checkpoint"):
        assert checkpoint_identity(older, "old.pt") == run_identity(older["config"], older["tokenizer"])
        assert run_differences(older, run) == []
    assert caplog.messages == [
        "old.pt has no 'identity' entry (an older checkpoint): its run is told by its config and tokenizer"
    ]


# ----------------------------------------------------------------------------- run directories
def test_evaluating_a_run_refuses_another_runs_best_checkpoint(base, tmp_path):
    run = tmp_path / "run"
    write_state(run / "checkpoints" / "checkpoint_last.pt", base)
    best = write_state(run / "checkpoints" / "checkpoint_best.pt", base, d_model=48)
    before = snapshot(run)
    with pytest.raises(CheckpointError) as refused:
        load_model(run)
    assert str(refused.value) == (
        f"{best} belongs to run 'run' (seed 1), not to the run in {run}: model.d_model: 48 -> 32 "
        "(checkpoint -> checkpoints/checkpoint_last.pt); name the file itself to use it anyway"
    )
    assert snapshot(run) == before
    assert load_model(best).model.cfg.d_model == 48  # the file named as such is taken as it is


def test_evaluating_a_run_refuses_a_checkpoint_last_of_another_tokenizer(base, tmp_path):
    """Without checkpoint_best.pt, checkpoint_last.pt is compared with the run's tokenizer.json."""
    run = tmp_path / "run"
    last = write_state(run / "checkpoints" / "checkpoint_last.pt", base)
    spec = json.loads(base["tokenizer"])
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[-2:]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (run / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(
        CheckpointError,
        match=f"^{re.escape(str(last))} belongs to run 'run' \\(seed 1\\), not to the run in {re.escape(str(run))}: "
        r"tokenizer: sha256 \w{12} -> \w{12} \(checkpoint -> tokenizer.json\); name the file",
    ):
        load_model(run)
    (run / "tokenizer.json").write_text(base["tokenizer"], encoding="utf-8")
    assert load_model(run).path == last


def test_a_run_of_older_checkpoints_without_identity_still_evaluates(base, tmp_path, caplog):
    run = tmp_path / "run"
    write_state(run / "checkpoints" / "checkpoint_last.pt", base, identity=False)
    best = write_state(run / "checkpoints" / "checkpoint_best.pt", base, identity=False)
    with caplog.at_level(logging.INFO, logger="noamt.checkpoint"):
        assert load_model(run).path == best
    assert caplog.text.count(f"{best} has no 'identity' entry") == 1


# ----------------------------------------------------------------------------- models that cannot be right
def test_weights_holding_nan_are_refused_at_load(base, tmp_path):
    path = write_state(tmp_path / "nan.pt", base)
    name = next(iter(load_checkpoint(path)["model"]))
    with_state(path, lambda state: state["model"][name].view(-1).__setitem__(0, float("nan")))
    with pytest.raises(CheckpointError) as refused:
        load_model(path)
    assert str(refused.value) == f"{path}: 'model' {name} holds NaN or infinite values"


@pytest.mark.parametrize(
    "key, value, reason",
    [
        ("d_model", -32, "model.d_model=-32: must be at least 1"),
        ("n_heads", "2", "model.n_heads='2': must be an integer"),
        ("dropout", 1.5, "model.dropout=1.5: must be in [0, 1)"),
    ],
)
def test_config_model_values_out_of_bounds_are_one_line_naming_the_key(base, tmp_path, key, value, reason):
    path = write_state(tmp_path / "bad.pt", base)
    with_state(path, lambda state: state["config"]["model"].__setitem__(key, value))
    with pytest.raises(CheckpointError) as refused:
        load_model(path)
    assert str(refused.value) == f"{path}: config.model is not a valid ModelConfig ({reason})"


def test_weights_of_another_shape_than_config_model_are_one_line(base, tmp_path):
    path = write_state(tmp_path / "shape.pt", base)
    with_state(path, lambda state: state["config"]["model"].update(d_ff=128))
    with pytest.raises(CheckpointError) as refused:
        load_model(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: weights do not fit config.model (size mismatch for ")
    assert "torch.Size([128, 32])" in message and "torch.Size([64, 32])" in message


# ----------------------------------------------------------------------------- averaging
def test_averaging_refuses_nan_another_model_or_tokenizer(base, tmp_path):
    a = write_state(tmp_path / "a.pt", base)
    seed2 = write_state(tmp_path / "seed2.pt", base, seed=2)  # another run of the same model averages
    assert average_checkpoints([a, seed2])["averaged_from"] == [str(a), str(seed2)]

    nan = write_state(tmp_path / "nan.pt", base)
    name = next(iter(load_checkpoint(nan)["model"]))
    with_state(nan, lambda state: state["model"][name].fill_(float("inf")))
    wide = write_state(tmp_path / "wide.pt", base, d_model=48)
    other_tokenizer = write_state(tmp_path / "tok.pt", base)
    with_state(other_tokenizer, lambda state: state.update(tokenizer=state["tokenizer"] + " "))
    reshaped = write_state(tmp_path / "reshaped.pt", base)  # same config, tensors of another shape
    with_state(reshaped, lambda state: state["model"].update({name: state["model"][name][:, :16].clone()}))
    cases = {
        nan: f"{nan}: 'model' {name} holds NaN or infinite values",
        wide: f"{wide} is another model than {a} (config.model: model.d_model: 32 -> 48)",
        other_tokenizer: f"{other_tokenizer} has another tokenizer than {a} (sha256 ",
        reshaped: f"{reshaped}: 'model' {name} is [",
    }
    for path, message in cases.items():
        with pytest.raises(CheckpointError) as refused:
            average_checkpoints([a, path])
        assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "name", ["checkpoint_last.pt", "checkpoint_best.pt", "checkpoint_12.pt", "checkpoint_epoch3.pt", "a.pt"]
)
def test_an_average_never_replaces_a_training_checkpoint_or_an_input(tmp_path, name):
    inputs = [tmp_path / "sub" / ".." / "a.pt", tmp_path / "b.pt"]
    with pytest.raises(CheckpointError, match=f"^output {re.escape(str(tmp_path / name))}: ") as refused:
        check_average_output(tmp_path / name, inputs)
    assert "\n" not in str(refused.value)
    check_average_output(tmp_path / "checkpoint_avg.pt", inputs)  # the default name is fine


# ----------------------------------------------------------------------------- the commands
TRAIN = [
    "data.max_eval_examples=20",
    "tokenizer.vocab_size=300",
    "model=tiny",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_ff=64",
    "run_name=r",
    "trainer.max_tokens=512",
    "trainer.val_interval=2",
    "trainer.save_interval=2",
    "trainer.log_interval=1",
    "trainer.val_bleu=false",
    "device=cpu",
    "device.num_threads=1",
    "trainer.progress=false",
    "trainer.tensorboard=false",
]


def cli(root: Path, data_dir: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "NOAMT_RUNS_DIR": str(root),
        "NOAMT_CACHE_DIR": str(root.parent / "cache"),
        "NOAMT_DATA_DIR": str(data_dir),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def trained(toy_data_dir, tmp_path_factory) -> Path:
    """A finished 4-update run 'r' of seed 1 trained by noamt-train."""
    root = tmp_path_factory.mktemp("trained")
    result = cli(root, toy_data_dir, "noamt.cli.train", *TRAIN, "trainer.max_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "r"


def another_seed(path: Path) -> Path:
    """Make the checkpoint at ``path`` that of run 'r' with trainer.seed=2: the same shapes and
    tokenizer, and the identity noamt-train writes for that run."""

    def reseed(state: dict) -> None:
        state["config"]["trainer"]["seed"] = 2
        state["identity"] = run_identity(state["config"], state["tokenizer"])

    return with_state(path, reseed)


@pytest.mark.slow
def test_resume_auto_refuses_another_seeds_checkpoint_last_and_a_named_one_warm_starts(trained, toy_data_dir, tmp_path):
    state = load_checkpoint(trained / "checkpoints" / "checkpoint_last.pt")
    assert state["identity"] == run_identity(state["config"], state["tokenizer"])
    assert state["identity"]["run_name"] == "r"

    run = Path(shutil.copytree(trained, tmp_path / "r"))
    last = another_seed(run / "checkpoints" / "checkpoint_last.pt")
    before = snapshot(run)
    refused = cli(tmp_path, toy_data_dir, "noamt.cli.train", *TRAIN, "trainer.max_steps=6", "trainer.resume=auto")
    assert refused.returncode == 1
    assert last_line(refused) == (
        f"noamt-train: {last} belongs to run 'r' (seed 2), not this run 'r' (seed 1): trainer.seed: 2 -> 1 "
        f"(checkpoint -> now); move it away, or pass trainer.resume={last} to train on from its state"
    )
    after = snapshot(run)
    assert {k: v for k, v in after.items() if k not in ("train.log", "train.lock")} == {
        k: v for k, v in before.items() if k not in ("train.log", "train.lock")
    }

    named = cli(
        tmp_path, toy_data_dir, "noamt.cli.train", *TRAIN, "run_name=w", "trainer.max_steps=6", f"trainer.resume={last}"
    )
    assert named.returncode == 0, named.stderr[-3000:]
    said = [line for line in (named.stdout + named.stderr).splitlines() if "the state of another run" in line]
    assert len(said) == 1 and said[0].endswith(
        f"trainer.resume={last}: the state of another run 'r' (seed 2), trained on as this run (trainer.seed: 2 -> 1)"
    )
    warm = load_checkpoint(tmp_path / "w" / "checkpoints" / "checkpoint_last.pt")
    assert warm["step"] == 6 and warm["identity"]["run_name"] == "w" and warm["config"]["trainer"]["seed"] == 1


@pytest.mark.slow
def test_evaluate_refuses_a_run_directory_whose_best_is_another_runs(trained, toy_data_dir, tmp_path):
    run = Path(shutil.copytree(trained, tmp_path / "r"))
    state = load_checkpoint(run / "checkpoints" / "checkpoint_best.pt")
    best = write_state(run / "checkpoints" / "checkpoint_best.pt", state, d_model=16)
    before = snapshot(run)
    result = cli(tmp_path, toy_data_dir, "noamt.cli.evaluate", f"checkpoint={run}", "device=cpu")
    assert result.returncode == 1
    assert last_line(result) == (
        f"noamt-evaluate: {best} belongs to run 'r' (seed 1), not to the run in {run}: model.d_model: 16 -> 32 "
        "(checkpoint -> checkpoints/checkpoint_last.pt); name the file itself to use it anyway"
    )
    assert snapshot(run) == before and not (run / "eval").exists()

    best.unlink()  # then checkpoint_last.pt stands for the run, told by the run's .hydra/config.yaml
    last = another_seed(run / "checkpoints" / "checkpoint_last.pt")
    with pytest.raises(CheckpointError) as refused:
        load_model(run)
    assert str(refused.value) == (
        f"{last} belongs to run 'r' (seed 2), not to the run in {run}: trainer.seed: 2 -> 1 "
        "(checkpoint -> .hydra/config.yaml); name the file itself to use it anyway"
    )
