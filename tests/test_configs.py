"""Every option of every config group composes into a valid TrainConfig and states only what it
changes; every bound of a setting is refused where the setting is declared, in one line."""

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from noamt import pipeline, schedules
from noamt.cli.config import check_command_line, misspelt_key, register_configs, settings_help, to_train_config
from noamt.data import DataConfig, TokenizerConfig
from noamt.decoding import DecodingConfig
from noamt.device import DeviceConfig
from noamt.engines import EngineConfig
from noamt.evaluation import EvaluateConfig
from noamt.exporter import ExportConfig
from noamt.model import ModelConfig, Transformer
from noamt.optim import OptimConfig
from noamt.pipeline import TrainConfig
from noamt.trainer import TrainerConfig
from noamt.translation import TranslateConfig

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


COMMAND_SCHEMAS = {"translate": TranslateConfig, "evaluate": EvaluateConfig, "export": ExportConfig}


def flat(tree: dict, prefix: str = "") -> dict:
    """``{dotted key: value}`` of the leaves of a nested dict."""
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.mark.parametrize("command, schema", COMMAND_SCHEMAS.items(), ids=list(COMMAND_SCHEMAS))
def test_a_commands_yaml_states_only_what_differs_from_its_config(command, schema):
    body = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{command}.yaml"))
    assert "hydra/command" in body.pop("defaults")  # the Hydra settings the commands share, stated once
    defaults = flat(OmegaConf.to_container(OmegaConf.structured(schema)))  # required keys: "???"
    assert [f"{key}: {value!r}" for key, value in flat(body).items() if defaults.get(key) == value] == []
    assert "hydra" not in body


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


NAN = math.nan
BOUNDS = [  # (the key as written on the command line, a value it refuses, what it must be)
    ("trainer.max_steps", -1, "at least 0"),
    ("trainer.max_epochs", -1, "at least 0"),
    ("trainer.max_tokens", 0, "at least 1"),
    ("trainer.max_tokens", NAN, "an integer"),
    ("trainer.max_sentences", 0, "at least 1 or null"),
    ("trainer.pad_to_multiple", 0, "at least 1"),
    ("trainer.update_freq", 0, "at least 1"),
    ("trainer.val_interval", -1, "at least 0"),
    ("trainer.val_bleu_max_examples", 0, "at least 1 or null"),
    ("trainer.best_metric", "ppl", "one of loss, bleu"),
    ("trainer.patience", -1, "at least 0"),
    ("trainer.save_interval", -1, "at least 0"),
    ("trainer.keep_last", -1, "at least 0"),
    ("trainer.keep_last_epochs", -1, "at least 0"),
    ("trainer.clip_norm", -1.0, "a finite number >= 0"),
    ("trainer.clip_norm", NAN, "a finite number >= 0"),
    ("trainer.label_smoothing", 1.0, "in [0, 1)"),
    ("trainer.label_smoothing", NAN, "in [0, 1)"),
    ("trainer.seed", -1, "at least 0"),
    ("trainer.log_interval", 0, "at least 1"),
    ("trainer.max_nonfinite_updates", 0, "at least 1"),
    ("data.source", "web", "one of auto, files, hub"),
    ("data.test_splits", ["test", "test"], "unique names other than train and valid"),
    ("data.test_splits", ["valid"], "unique names other than train and valid"),
    ("data.max_train_examples", 0, "at least 1 or null"),
    ("data.max_eval_examples", 0, "at least 1 or null"),
    ("data.max_src_len", 0, "at least 1"),
    ("data.max_tgt_len", -1, "at least 1"),
    ("data.max_len_ratio", 0.5, "0 (keep all) or a finite number >= 1 (longer side / shorter side)"),
    ("data.max_len_ratio", NAN, "0 (keep all) or a finite number >= 1 (longer side / shorter side)"),
    ("tokenizer.vocab_size", 260, "at least 261 (4 specials, 256 byte tokens, 1 piece)"),
    ("tokenizer.min_frequency", -1, "at least 0"),
    ("model.encoder_layers", 0, "at least 1"),
    ("model.decoder_layers", 0, "at least 1"),
    ("model.d_model", 0, "at least 1"),
    ("model.d_model", 250, "a multiple of model.n_heads=4"),
    ("model.n_heads", 0, "at least 1"),
    ("model.d_ff", 0, "at least 1"),
    ("model.max_positions", 0, "at least 1"),
    ("model.dropout", 1.0, "in [0, 1)"),
    ("model.dropout", NAN, "in [0, 1)"),
    ("model.attention_dropout", -0.1, "in [0, 1)"),
    ("model.activation_dropout", NAN, "in [0, 1)"),
    ("device.device", "tpu", "auto, cpu, cuda, cuda:N or mps"),
    ("device.precision", "fp8", "one of fp32, bf16, fp16"),
    ("device.num_threads", -1, "at least 0 (0: one per free core)"),
    ("device.compile_mode", "fast", "one of default, reduce-overhead, max-autotune"),
    ("decoding.beam_size", 0, "at least 1"),
    ("decoding.length_penalty", NAN, "in [-10, 10]"),
    ("decoding.length_penalty", math.inf, "in [-10, 10]"),
    ("decoding.max_len_a", -1.0, "a finite number >= 0"),
    ("decoding.max_len_a", NAN, "a finite number >= 0"),
    ("decoding.max_len_b", -1, "at least 0"),
    ("decoding.min_len", -1, "at least 0"),
]
SCHEMAS = {**GROUP_SCHEMAS, "engine": EngineConfig}


@pytest.mark.parametrize("key, value, expected", BOUNDS, ids=[f"{k}={v}" for k, v, _ in BOUNDS])
def test_each_bound_is_refused_where_the_setting_is_declared_in_one_line(key, value, expected):
    group, name = key.split(".")
    with pytest.raises(ValueError) as err:
        SCHEMAS[group](**{name: value})
    assert str(err.value) == f"{key}={value!r}: must be {expected}"


def test_settings_that_contradict_each_other_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^trainer.best_metric=bleu needs trainer.val_bleu=true$"):
        TrainerConfig(best_metric="bleu", val_bleu=False)
    with pytest.raises(ValueError, match=r"^decoding.max_len_a=0 and decoding.max_len_b=0 allow no output token"):
        DecodingConfig(max_len_a=0.0, max_len_b=0)
    with pytest.raises(ValueError, match=r"^max_tokens=0: must be at least 1$"):
        EngineConfig("ck.pt", max_tokens=0)
    with pytest.raises(ValueError, match=r"^out_dir=...: required with more than one checkpoint"):
        EvaluateConfig(["a.pt", "b.pt"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.clip_norm=nan", "trainer.clip_norm=nan: must be a finite number >= 0"),
        ("model.dropout=1", "model.dropout=1.0: must be in [0, 1)"),
        ("data.max_len_ratio=-inf", "data.max_len_ratio=-inf: must be 0 (keep all) or a finite number >= 1"),
    ],
)
def test_a_composed_config_is_refused_as_it_becomes_dataclasses(override, message):
    with pytest.raises(ValueError) as err:
        to_train_config(compose_train([override]))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_derived_default_is_checked_once_it_is_resolved():
    """total_steps is None until the run gives it trainer.max_steps: a value below the warmup is
    refused by resolved(), in one line naming the key and where its value came from."""
    cfg = to_train_config(compose_train(["schedule=cosine", "trainer.max_steps=100"]))
    assert cfg.schedule.total_steps is None
    with pytest.raises(ValueError) as err:
        cfg.resolved()
    assert str(err.value) == (
        "schedule.total_steps=100: must be an integer > schedule.warmup_steps=4000 and >= 2, so at least 4001 "
        "(null takes trainer.max_steps)"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, message",
    [
        (["noamt.cli.train", "trainer.max_tokens=0"], "noamt-train: trainer.max_tokens=0: must be at least 1"),
        (["noamt.cli.train", "model.dropout=nan"], "noamt-train: model.dropout=nan: must be in [0, 1)"),
        (["noamt.cli.translate", "checkpoint=ck.pt", "decoding.length_penalty=nan"],
         "noamt-translate: decoding.length_penalty=nan: must be in [-10, 10]"),
        (["noamt.cli.evaluate", "checkpoint=ck.pt", "max_tokens=0"],
         "noamt-evaluate: max_tokens=0: must be at least 1"),
        (["noamt.cli.export", "checkpoint=ck.pt", "format=release", "out=o", "quantization=int8"],
         "noamt-export: quantization=int8: applies to format=ctranslate2 only"),
        (["noamt_study.cli", "--profile", "smoke", "--seeds", "1", "--dry-run", "--out", "s", "trainer.clip_norm=nan"],
         "noamt-compare: trainer.clip_norm=nan: must be a finite number >= 0"),
    ],
    ids=["train", "train-nan", "translate-nan", "evaluate", "export", "compare"],
)  # fmt: skip
def test_a_refused_setting_is_one_line_from_each_command(command, message, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NOAMT_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env, input="", check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == message
    assert not [path for path in (tmp_path / "runs").rglob("*") if path.is_file()]  # no run was written


@pytest.mark.parametrize(
    "override",
    [
        "trainer.max_steps=3",
        "trainer.seed=1,2,3",
        "data.dir=/data",
        "schedule.cooldown_fraction=0.2",
        "schedule.peak_lr=1e-3",
        "optim.r=0.5",
        "model.pre_norm=true",
        "device.num_threads=1",
        "hydra.run.dir=out",
        "+compare_run=noam-seed1",
        "run_name=x",
        "model=tiny",
        "experiment=quickstart",
        "-m",
    ],
)
def test_a_declared_key_passes_the_spelling_check(override):
    assert misspelt_key([override]) is None


def test_a_misspelt_key_names_the_nearest_declared_one():
    assert misspelt_key(["model=tiny", "trainer.max_step=10"]) == (
        "trainer.max_step: no such key; did you mean trainer.max_steps?"
    )
    assert misspelt_key(["schedule.warmup=10"]) == "schedule.warmup: no such key; did you mean schedule.warmup_steps?"
    assert misspelt_key(["device.zzz=1"]).startswith("device.zzz: no such key; device's keys: device, precision")


@pytest.mark.slow
def test_noamt_train_refuses_a_misspelt_key_before_composing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "noamt.cli.train", "trainer.max_step=10"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "noamt-train: trainer.max_step: no such key; did you mean trainer.max_steps?"
    assert not any(tmp_path.iterdir())  # nothing composed, nothing written


@pytest.mark.parametrize(
    ("program", "schema", "argv", "line"),
    [
        ("noamt-translate", TranslateConfig, ["decoding.beam_size=abc"], "decoding.beam_size=abc: must be an integer"),
        (
            "noamt-evaluate",
            EvaluateConfig,
            ["decoding.beam_sise=3"],
            "decoding.beam_sise: no such key; did you mean decoding.beam_size?",
        ),  # fmt: skip
        (
            "noamt-evaluate",
            EvaluateConfig,
            ["device.num_thread=2"],
            "device.num_thread: no such key; did you mean device.num_threads?",
        ),  # fmt: skip
        ("noamt-export", ExportConfig, ["--experimental-rerun", "f.pickle"], "--experimental-rerun is not supported"),
        ("noamt-train", TrainConfig, ["trainer.max_step=3"], "trainer.max_step: no such key; did you mean"),
    ],
)
def test_every_command_refuses_a_bad_key_or_value_in_one_line_before_hydra(program, schema, argv, line, capsys):
    with pytest.raises(SystemExit) as exit_:
        check_command_line(program, schema, argv)
    assert str(exit_.value).startswith(f"{program}: {line}") and "\n" not in str(exit_.value)
    check_command_line(program, schema, ["decoding.beam_size=5"] if schema is not TrainConfig else ["model=tiny"])
