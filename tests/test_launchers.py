"""The submitit launchers (hydra/launcher=slurm and local): their keys are the plugin's, and a
multirun through submitit_local trains every run of the sweep."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from noamt.checkpoint import load_checkpoint
from noamt.cli.config import SUBMITIT_PLUGIN, missing_launcher, register_configs

submitit_config = pytest.importorskip(
    "hydra_plugins.hydra_submitit_launcher.config",
    reason="hydra-submitit-launcher is not installed (pip install 'noamt[slurm]')",
)
LAUNCHERS = Path(__file__).resolve().parents[1] / "configs" / "hydra" / "launcher"
SCHEMAS = {"slurm": submitit_config.SlurmQueueConf, "local": submitit_config.LocalQueueConf}


@pytest.mark.parametrize("launcher", sorted(SCHEMAS))
def test_a_launcher_composes_and_sets_only_the_plugins_keys(launcher):
    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        cfg = compose(config_name="train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    schema_keys = {f.name for f in dataclasses.fields(SCHEMAS[launcher])}
    stated = OmegaConf.to_container(OmegaConf.load(LAUNCHERS / f"{launcher}.yaml"))
    stated.pop("defaults")
    assert set(stated) <= schema_keys
    composed = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert composed["_target_"] == SCHEMAS[launcher]._target_
    if launcher == "slurm":
        assert composed["tasks_per_node"] == composed["gpus_per_node"]  # one training process per GPU


@pytest.mark.slow
def test_a_two_run_sweep_trains_through_submitit_local(toy_data_dir, tmp_path):
    env = {
        **os.environ,
        "NOAMT_RUNS_DIR": str(tmp_path),
        "NOAMT_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    overrides = [
        f"data.dir={toy_data_dir}",
        "data.max_train_examples=300",
        "data.max_eval_examples=20",
        "tokenizer.vocab_size=400",
        "model=tiny",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "trainer.max_steps=2",
        "trainer.max_tokens=512",
        "trainer.val_interval=100",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.val_bleu=false",
        "device=cpu",
        "device.num_threads=1",
        "run_name=sweep-seed${trainer.seed}",
        "trainer.seed=1,2",
    ]
    command = [sys.executable, "-m", "noamt.cli.train", "-m", "hydra/launcher=local", *overrides]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for seed in (1, 2):
        last = load_checkpoint(tmp_path / "multirun" / f"sweep-seed{seed}" / "checkpoints" / "checkpoint_last.pt")
        assert last["step"] == 2 and last["config"]["trainer"]["seed"] == seed


@pytest.mark.parametrize("launcher", sorted(SCHEMAS))
def test_a_launcher_without_its_plugin_names_the_extra_in_one_line(launcher, monkeypatch):
    assert missing_launcher([f"hydra/launcher={launcher}"]) is None  # installed here
    monkeypatch.setitem(sys.modules, SUBMITIT_PLUGIN, None)  # what Python does when it is absent
    assert missing_launcher(["model=tiny", f"hydra/launcher={launcher}"]) == (
        f"hydra/launcher={launcher} needs Hydra's submitit launcher: pip install 'noamt[slurm]'"
    )
    assert missing_launcher(["hydra/launcher=basic"]) is None
