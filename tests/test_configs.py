"""Every option of every config group composes into a valid TrainConfig."""

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from noamt import pipeline, schedules
from noamt.cli.config import register_configs, to_train_config
from noamt.model import Transformer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ["data", "tokenizer", "model", "optim", "schedule", "trainer", "device", "experiment"]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONFIGS / g).glob("*.yaml"))]


def compose_train(overrides):
    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.slow
@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_its_schedule_peaks_where_it_says(group, option):
    cfg = to_train_config(compose_train([f"{group}={option}"]))
    assert cfg.model.d_model % cfg.model.n_heads == 0
    lr = schedules.schedule_from_config(cfg.schedule)
    params = {k: v for k, v in dataclasses.asdict(cfg.schedule).items() if k != "name"}
    peak, warmup = schedules.peak_lr(cfg.schedule.name, **params), cfg.schedule.warmup_steps
    assert lr(warmup) == pytest.approx(peak, rel=1e-9)  # the end of warmup is the declared peak
    assert lr(max(1, warmup // 2)) <= peak and lr(2 * warmup + 1) <= peak
    if group == "model":
        Transformer(cfg.model, 100, 100, pad_id=0)


def differences(composed, default, prefix: str) -> list[str]:
    """Fields of two dataclasses that differ (lists and tuples compare by value)."""
    out = []
    for f in dataclasses.fields(default):
        a, b = getattr(composed, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(b):
            out += differences(a, b, f"{prefix}{f.name}.")
        elif (list(a) if isinstance(a, tuple | list) else a) != (list(b) if isinstance(b, tuple | list) else b):
            out.append(f"{prefix}{f.name}: YAML {a!r}, dataclass {b!r}")
    return out


def test_the_default_options_state_the_dataclass_defaults(monkeypatch):
    # one source of truth: what noamt-train uses with no override is what the library uses
    monkeypatch.delenv("NOAMT_DATA_DIR", raising=False)
    cfg = to_train_config(compose_train([]))
    expected = pipeline.TrainConfig(schedule=schedules.NoamConfig(d_model=cfg.model.d_model), run_name=cfg.run_name)
    assert differences(cfg, expected, "") == []


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


def test_paper_recipe_states_the_papers_setup():
    cfg = to_train_config(compose_train(["experiment=multi30k_tiny_paper"]))
    assert cfg.data.tokenized and cfg.data.file_pattern == "tok/{split}.lc.norm.tok.{lang}"
    assert (cfg.model.encoder_layers, cfg.model.d_model, cfg.model.d_ff, cfg.model.n_heads) == (4, 128, 256, 4)
    assert not cfg.model.pre_norm and cfg.model.share_embeddings and cfg.model.dropout == 0.3
    assert cfg.tokenizer.vocab_size == 10000 and cfg.optim.eps == 1e-8
    assert (cfg.schedule.name, cfg.schedule.peak_lr, cfg.schedule.warmup_steps) == ("inverse_sqrt", 5e-3, 2000)
    assert cfg.schedule.warmup_init_lr == 1e-7
    t = cfg.trainer
    assert (t.max_steps, t.max_tokens * t.update_freq, t.clip_norm, t.label_smoothing) == (8000, 8192, 25.0, 0.1)
    assert t.val_every_epoch and t.save_every_epoch and t.val_interval == 0 and t.patience == 10


@pytest.mark.slow
def test_a_few_updates_of_the_paper_recipe_run(toy_data_dir, tmp_path):
    """The composed recipe trains: three one-batch epochs, an epoch checkpoint after each."""
    overrides = ["experiment=multi30k_tiny_paper", f"data.dir={toy_data_dir}", "data.max_train_examples=40",
                 "data.max_eval_examples=20", "tokenizer.vocab_size=600", f"tokenizer.cache_dir={tmp_path}",
                 "trainer.max_steps=3", "trainer.progress=false", "trainer.tensorboard=false",
                 "device=cpu"]  # fmt: skip
    cfg = compose_train(overrides)
    result = pipeline.train(to_train_config(cfg), tmp_path / "run", OmegaConf.to_container(cfg, resolve=True))
    assert result["step"] == 3
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint_epoch*.pt"))
    assert names == ["checkpoint_epoch1.pt", "checkpoint_epoch2.pt", "checkpoint_epoch3.pt"]


def test_every_config_group_is_packaged():
    """A group folder missing from pyproject's packages would be left out of a wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with (CONFIGS.parent / "pyproject.toml").open("rb") as f:
        packages = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    groups = {f"noamt.configs.{d.name}" for d in CONFIGS.iterdir() if d.is_dir() and any(d.glob("*.yaml"))}
    assert groups and groups <= packages, sorted(groups - packages)
