"""Every option of every config group composes into a valid TrainConfig and states only what it changes."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from noamt import pipeline, schedules
from noamt.cli.config import register_configs, settings_help, to_train_config
from noamt.data import DataConfig, TokenizerConfig
from noamt.decoding import DecodingConfig
from noamt.device import DeviceConfig
from noamt.model import ModelConfig, Transformer
from noamt.optim import OptimConfig
from noamt.trainer import TrainerConfig

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
    cfg = to_train_config(compose_train([f"{group}={option}"])).resolved()
    assert cfg.model.d_model % cfg.model.n_heads == 0
    lr, peak, warmup = cfg.schedule, cfg.schedule.peak_lr, cfg.schedule.peak_step
    assert lr(warmup) == pytest.approx(peak, rel=1e-9)  # the end of warmup is the declared peak
    assert lr(max(1, warmup // 2)) <= peak and lr(2 * warmup + 1) <= peak
    if group == "model":
        Transformer(cfg.model, 100, 100, pad_id=0)


def plain(value):
    return list(value) if isinstance(value, tuple) else value


def restated(stated: dict, defaults, prefix: str = "") -> list[str]:
    """Keys of ``stated`` (a YAML body) whose value is already the value in ``defaults``."""
    out = []
    for key, value in stated.items():
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default):
            out += restated(value, default, f"{prefix}{key}.")
        elif plain(value) == plain(default):
            out.append(f"{prefix}{key}: {value!r}")
    return out


GROUP_SCHEMAS = {
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "trainer": TrainerConfig,
    "device": DeviceConfig,
    "decoding": DecodingConfig,
}
STATED_ONCE = OPTIONS + [("decoding", p.stem) for p in sorted((CONFIGS / "decoding").glob("*.yaml"))]


@pytest.mark.parametrize("group, option", STATED_ONCE, ids=[f"{g}={o}" for g, o in STATED_ONCE])
def test_an_option_states_only_what_differs_from_its_defaults(group, option):
    body = OmegaConf.to_container(OmegaConf.load(CONFIGS / group / f"{option}.yaml")) or {}
    chosen = body.pop("defaults", [])
    if group == "schedule":
        defaults = schedules.CONFIGS[option]()
    elif group == "experiment":  # against the options it picks, composed without its own keys
        picks = [f"{next(iter(d)).removeprefix('override /')}={next(iter(d.values()))}" for d in chosen]
        defaults = to_train_config(compose_train(picks))
    else:
        defaults = GROUP_SCHEMAS[group]()
    assert restated(body, defaults) == []


def test_the_default_options_are_the_library_defaults(monkeypatch):
    # what noamt-train uses with no override is what the library uses
    monkeypatch.delenv("NOAMT_DATA_DIR", raising=False)
    cfg = to_train_config(compose_train([])).resolved()
    assert cfg == pipeline.TrainConfig(optim=OptimConfig(betas=cfg.optim.betas), run_name=cfg.run_name).resolved()


def test_a_cosine_run_from_python_is_the_cosine_run_of_the_cli():
    library = pipeline.TrainConfig(schedule=schedules.CosineConfig(), trainer=TrainerConfig(max_steps=8000))
    cli = to_train_config(compose_train(["schedule=cosine", "trainer.max_steps=8000"]))
    lr, cli_lr = library.resolved().schedule, cli.resolved().schedule
    assert lr == cli_lr and lr.total_steps == 8000 and lr.peak_lr == pytest.approx((256 * 4000) ** -0.5, rel=1e-12)
    assert [lr(k) for k in range(1, 8101)] == [cli_lr(k) for k in range(1, 8101)]


def test_noam_takes_d_model_from_the_model():
    cfg = to_train_config(compose_train(["model=tiny", "schedule=noam"]))
    assert cfg.schedule.d_model is None and cfg.resolved().schedule.d_model == 128


def test_baselines_default_to_the_noam_peak_and_max_steps():
    cfg = to_train_config(compose_train(["model=small", "schedule=cosine", "trainer.max_steps=12345"])).resolved()
    assert cfg.schedule.peak_lr == pytest.approx((256 * 4000) ** -0.5, rel=1e-12)
    assert cfg.schedule.total_steps == 12345


def test_help_lists_every_key_with_its_default_and_meaning():
    text = settings_help()
    assert "  max_steps = 100000\n      Optimizer updates to train for" in text
    assert "schedule (schedule=cosine)\n" in text and "  total_steps = null\n" in text
    for group, schema in GROUP_SCHEMAS.items():
        if group != "decoding":  # noamt-train's groups
            assert all(f"  {f.name} = " in text for f in dataclasses.fields(schema)), group


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
    overrides = [
        "experiment=multi30k_tiny_paper",
        f"data.dir={toy_data_dir}",
        "data.max_train_examples=40",
        "data.max_eval_examples=20",
        "tokenizer.vocab_size=600",
        f"tokenizer.cache_dir={tmp_path}",
        "trainer.max_steps=3",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "device=cpu",
    ]
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
    folders = {f.parent for f in CONFIGS.rglob("*.yaml")} - {CONFIGS}
    groups = {"noamt.configs." + ".".join(d.relative_to(CONFIGS).parts) for d in folders}
    assert groups and groups <= packages, sorted(groups - packages)


@pytest.mark.parametrize(
    "command, setting",
    [("translate", "input: '-'"), ("evaluate", "engine: noamt"), ("export", "quantization: null")],
)
def test_each_commands_help_is_its_docstring_and_its_own_settings(command, setting):
    """``noamt-<command> --help``: the module docstring (its examples), then the command's config;
    not the training groups, which do not apply to it."""
    proc = subprocess.run(
        [sys.executable, "-m", f"noamt.cli.{command}", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"``noamt-{command}``: ")
    assert f"noamt-{command} checkpoint=runs/my-run" in proc.stdout
    assert "== Settings: override any with key=value ==" in proc.stdout and setting in proc.stdout
    assert "experiment:" not in proc.stdout and "schedule:" not in proc.stdout
