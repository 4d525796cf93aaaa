"""Schedule-free AdamW (optim=adamw_schedulefree): it trains from the command line's config, validation
and every checkpoint's "model" hold the average x that the package's own eval() gives, training
goes on from y ("train_weights"), and a resumed run is the uninterrupted one bit for bit."""

import dataclasses
import re
import subprocess
import sys

import pytest
import torch
from helpers.runs import train_run
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from noamt import pipeline, schedules
from noamt.checkpoint import CheckpointError, average_checkpoints, load_checkpoint, save_checkpoint
from noamt.cli.config import register_configs, to_train_config
from noamt.data import Tokenizer
from noamt.decoding import GREEDY, translate_texts
from noamt.device import DeviceConfig
from noamt.engines import EngineConfig, open_engine
from noamt.metrics import read_metrics
from noamt.model import ModelConfig, build_model
from noamt.optim import SCHEDULE_FREE, OptimConfig, build_optimizer
from noamt.trainer import Trainer

pytestmark = pytest.mark.slow  # end-to-end: trains on the toy corpus

SOURCES = ["A young man runs in the park .", "The old dog sleeps behind the house .", "One child waits ."]


def schedule_free(cfg: pipeline.TrainConfig) -> pipeline.TrainConfig:
    """``cfg`` trained by schedule-free AdamW at a constant lr after 4 updates of warmup."""
    return dataclasses.replace(
        cfg, optim=OptimConfig(name=SCHEDULE_FREE), schedule=schedules.ConstantConfig(peak_lr=3e-3, warmup_steps=4)
    )


def package_eval_weights(state: dict) -> dict[str, torch.Tensor]:
    """The weights ``schedulefree``'s own ``optimizer.eval()`` gives for a checkpoint: y and the
    optimizer state restored into a fresh model and optimizer, then switched to eval mode."""
    model = checkpoint_model(state, state["train_weights"])
    optimizer = build_optimizer(model, OptimConfig(**state["config"]["optim"]))
    optimizer.load_state_dict(state["optimizer"])
    optimizer.eval()
    return model.state_dict()


def checkpoint_model(state: dict, weights: dict) -> torch.nn.Module:
    """The checkpoint's model with ``weights`` loaded."""
    model = build_model(ModelConfig(**state["config"]["model"]), Tokenizer.from_str(state["tokenizer"]))
    model.load_state_dict(weights)
    return model


def assert_equal_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name


def test_optim_adamw_schedulefree_from_the_command_line_config_lowers_the_loss(toy_data_dir, tmp_path_factory):
    """``optim=adamw_schedulefree schedule=constant``: the loss falls, validation BLEU is scored and
    the checkpoint holds y and the optimizer's z beside the model."""
    cache = tmp_path_factory.getbasetemp() / "tokenizers"  # shared with the small_run fixture
    overrides = [
        "optim=adamw_schedulefree",
        "schedule=constant",
        "schedule.warmup_steps=4",
        "schedule.peak_lr=3e-3",
        f"data.dir={toy_data_dir}",
        "data.max_train_examples=1500",
        "data.max_eval_examples=100",
        "tokenizer.vocab_size=1000",
        f"tokenizer.cache_dir={cache}",
        "model.encoder_layers=2",
        "model.decoder_layers=2",
        "model.d_model=64",
        "model.n_heads=4",
        "model.d_ff=128",
        "trainer.max_steps=20",
        "trainer.max_tokens=1024",
        "trainer.val_interval=10",
        "trainer.save_interval=10",
        "trainer.val_bleu_max_examples=5",
        "trainer.seed=3",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "device=cpu",
    ]
    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        cfg = compose(config_name="train", overrides=overrides)
    run_dir = tmp_path_factory.mktemp("cli_config") / "run"
    result = pipeline.train(to_train_config(cfg), run_dir, OmegaConf.to_container(cfg, resolve=True))
    assert result["step"] == 20 and not result["interrupted"]
    valid = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [0, 10, 20] and "bleu" in valid[-1]
    assert valid[2]["loss"] < valid[1]["loss"] < valid[0]["loss"] - 2.0
    state = load_checkpoint(run_dir / "checkpoints" / "checkpoint_last.pt")
    assert state["config"]["optim"]["name"] == SCHEDULE_FREE and state["config"]["schedule"]["name"] == "constant"
    assert state["train_weights"].keys() == state["model"].keys()
    assert all({"z", "exp_avg_sq"} <= s.keys() for s in state["optimizer"]["state"].values())
    assert state["optimizer"]["param_groups"][0]["k"] == 20


def test_validation_and_every_checkpoint_hold_the_packages_eval_weights(small_run, tmp_path, monkeypatch):
    """What validation scores and what checkpoint_<N>.pt, checkpoint_best.pt and checkpoint_last.pt
    store as "model" is the x of ``optimizer.eval()``, not the y training continues from; the
    translate path (open_engine, as noamt-translate) decodes with that x."""
    validate, validated = Trainer.validate, {}

    def recording_validate(trainer):
        validated[trainer.step] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        return validate(trainer)

    monkeypatch.setattr(Trainer, "validate", recording_validate)
    train_run(schedule_free(small_run(max_steps=8, val_interval=4, save_interval=4, keep_last=0)), tmp_path)
    folder = tmp_path / "checkpoints"
    assert sorted(validated) == [0, 4, 8]
    for name in ("checkpoint_4.pt", "checkpoint_8.pt", "checkpoint_best.pt", "checkpoint_last.pt"):
        state = load_checkpoint(folder / name)
        averaged = package_eval_weights(state)
        assert_equal_tensors(state["model"], averaged)
        assert_equal_tensors(validated[state["step"]], averaged)
        assert any(not torch.equal(x, state["train_weights"][name]) for name, x in state["model"].items())

    state = load_checkpoint(folder / "checkpoint_last.pt")
    engine = open_engine(EngineConfig(folder / "checkpoint_last.pt", device=DeviceConfig(device="cpu")))
    assert_equal_tensors(engine.loaded.model.state_dict(), state["model"])
    averaged = checkpoint_model(state, state["model"]).eval()
    tokenizer = Tokenizer.from_str(state["tokenizer"])
    expected = translate_texts(averaged, tokenizer, SOURCES, GREEDY, max_tokens=1024)
    assert engine.translate(SOURCES, GREEDY, max_tokens=1024) == expected


def test_a_resumed_run_matches_an_uninterrupted_one_bit_for_bit(small_run, tmp_path):
    """Stopped at update 6 (its checkpoint and a validation there computed x and put y back) and
    resumed to 12: the weights, y, the optimizer state and every loss equal those of a run never
    stopped."""
    straight = schedule_free(small_run(max_steps=12, val_interval=4, save_interval=0, log_interval=1))
    train_run(straight, tmp_path / "straight")
    train_run(
        dataclasses.replace(straight, trainer=dataclasses.replace(straight.trainer, max_steps=6)), tmp_path / "resumed"
    )
    train_run(
        dataclasses.replace(straight, trainer=dataclasses.replace(straight.trainer, resume="auto")),
        tmp_path / "resumed",
    )
    a, b = (load_checkpoint(tmp_path / run / "checkpoints" / "checkpoint_last.pt") for run in ("straight", "resumed"))
    assert a["step"] == b["step"] == 12
    assert_equal_tensors(a["model"], b["model"])
    assert_equal_tensors(a["train_weights"], b["train_weights"])
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    for key, moments in a["optimizer"]["state"].items():
        assert_equal_tensors(moments, b["optimizer"]["state"][key])
    assert a["data"] == b["data"]

    def losses(run: str) -> dict:
        records = read_metrics(tmp_path / run / "metrics.jsonl")
        return {(r["kind"], r["step"]): r["loss"] for r in records if r["kind"] in ("train", "valid")}

    straight_losses, resumed_losses = losses("straight"), losses("resumed")
    assert len(straight_losses) == 12 + 4  # every update logged; validations at 0, 4, 8, 12
    assert {key: resumed_losses[key] for key in straight_losses} == straight_losses


def test_resuming_with_the_other_kind_of_optimizer_is_one_line(small_run, tmp_path):
    train_run(schedule_free(small_run(max_steps=1, val_interval=100)), tmp_path)
    adam = small_run(max_steps=2, val_interval=100, resume="auto")
    with pytest.raises(CheckpointError, match=r"does not fit this run: it was trained with optim.name=adamw_sched"):
        train_run(adam, tmp_path)


def test_a_nan_setting_stops_noamt_train_in_one_line_naming_the_key(tmp_path):
    command = [
        sys.executable,
        "-m",
        "noamt.cli.train",
        "optim=adamw_schedulefree",
        "optim.r=nan",
        f"hydra.run.dir={tmp_path / 'run'}",
        "device=cpu",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["noamt-train: optim.r=nan: must be in [0, 10]"]


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(r=-1.0), "optim.r=-1.0: must be in [0, 10]"),
        (dict(weight_lr_power=float("inf")), "optim.weight_lr_power=inf: must be in [0, 10]"),
        (dict(betas=(0.0, 0.98)), "optim.betas=[0.0, 0.98]: adamw_schedulefree needs beta1 > 0"),
        (dict(betas=(0.9, 1.0)), "optim.betas=[0.9, 1.0]: must be two numbers in [0, 1)"),
        (dict(name="adamw_schedule_free"), "optim.name='adamw_schedule_free': expected one of adam, adamw, "),
    ],
)
def test_settings_that_cannot_train_are_refused_naming_the_key(settings, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        OptimConfig(**{"name": SCHEDULE_FREE, **settings})


def test_checkpoint_train_weights_are_checked_and_averaging_drops_them(tmp_path):
    weights = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
    good = {"model": weights, "train_weights": {k: v + 1 for k, v in weights.items()}, "step": 1}
    save_checkpoint(good, tmp_path / "good.pt")
    assert_equal_tensors(load_checkpoint(tmp_path / "good.pt")["train_weights"], good["train_weights"])
    averaged = average_checkpoints([tmp_path / "good.pt", tmp_path / "good.pt"])
    assert "train_weights" not in averaged and "optimizer" not in averaged
    damaged = {
        "nan": ({"w": torch.full((2, 3), float("nan")), "b": torch.zeros(3)}, "w holds NaN or infinite values"),
        "shape": ({"w": torch.ones(3, 2), "b": torch.zeros(3)}, "w does not match its shape and dtype"),
        "keys": ({"w": torch.ones(2, 3)}, "does not name the tensors of 'model'"),
    }
    for name, (train_weights, message) in damaged.items():
        save_checkpoint({**good, "train_weights": train_weights}, tmp_path / f"{name}.pt")
        with pytest.raises(CheckpointError, match=re.escape(f"{name}.pt: 'train_weights' {message}")):
            load_checkpoint(tmp_path / f"{name}.pt")
