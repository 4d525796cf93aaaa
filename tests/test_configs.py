"""Every option of every config group composes into a valid TrainConfig."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from noamt import schedules
from noamt.cli.config import register_configs, to_train_config
from noamt.model import Transformer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ["data", "tokenizer", "model", "optim", "schedule", "trainer", "device", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]


def compose_train(overrides):
    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(group, option):
    cfg = to_train_config(compose_train([f"{group}={option}"]))
    assert cfg.model.d_model % cfg.model.n_heads == 0
    lr = schedules.schedule_from_config(cfg.schedule)
    assert lr(1) > 0
    if group == "model":
        Transformer(cfg.model, 100, 100, pad_id=0)


def test_noam_takes_d_model_from_the_model():
    cfg = to_train_config(compose_train(["model=tiny", "schedule=noam"]))
    assert cfg.schedule.d_model == 128


def test_baselines_default_to_the_noam_peak_and_max_steps():
    cfg = to_train_config(compose_train(["model=small", "schedule=cosine", "trainer.max_steps=1234"]))
    assert cfg.schedule.peak_lr == pytest.approx((256 * 4000) ** -0.5, rel=1e-12)
    assert cfg.schedule.total_steps == 1234


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_stepz=3", "Key 'max_stepz' not in 'TrainerConfig'"),
        ("model.d_model=big", "could not be converted to Integer"),
        ("schedule.peak=1", "Key 'peak' not in 'NoamConfig'"),
    ],
)
def test_misspelt_keys_and_wrong_types_are_errors(override, message):
    with pytest.raises(ConfigCompositionException) as err:
        compose_train([override])
    assert message in str(err.value.__cause__ or err.value)


def test_run_name_names_the_run():
    cfg = compose_train(["model=tiny", "schedule=cosine", "trainer.seed=3"])
    assert OmegaConf.select(cfg, "run_name") == "multi30k_en_de-tiny-cosine-seed3"
