"""Running noamt as a user would (its scripts, its command-line modules, a library training call)
and a saved untrained checkpoint for the commands that only need one."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import torch

from noamt import pipeline, schedules
from noamt.checkpoint import save_checkpoint
from noamt.data import DataConfig, TokenizerConfig, read_lines, train_tokenizer
from noamt.data.corpus import find_split_file
from noamt.device import DeviceConfig
from noamt.model import ModelConfig, Transformer
from noamt.trainer import TrainerConfig

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
CHECKPOINT_SPLITS = ["test_2016_flickr", "test_2018_flickr"]  # the 2018 set has no official tokenized refs
CHECKPOINT_EVAL_EXAMPLES = 5
CHECKPOINT_MAX_POSITIONS = 64


def run_script(name: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``scripts/<name>`` with this Python; output captured as text."""
    command = [sys.executable, str(SCRIPTS / name), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def run_cli(module: str, *overrides: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``python -m <module> <overrides> device=cpu`` on one thread; output captured as bytes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *overrides, "device=cpu", "device.num_threads=1"],
        input=stdin.encode() if stdin is not None else None,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def small_train_config(data_dir: Path, tokenizer_cache: Path, **trainer_overrides) -> pipeline.TrainConfig:
    """A config that trains a 2+2-layer d_model 64 model on 1,500 pairs of the toy corpus in
    ``data_dir`` on the CPU, 30 updates unless ``trainer_overrides`` say otherwise."""
    trainer = dict(
        max_steps=30,
        max_tokens=1024,
        val_interval=10,
        save_interval=10,
        log_interval=5,
        progress=False,
        tensorboard=False,
        seed=3,
        val_bleu=False,
    )
    trainer.update(trainer_overrides)
    return pipeline.TrainConfig(
        data=DataConfig(dir=str(data_dir), max_train_examples=1500, max_eval_examples=100),
        tokenizer=TokenizerConfig(vocab_size=1000, cache_dir=str(tokenizer_cache)),
        model=ModelConfig(
            name="test", encoder_layers=2, decoder_layers=2, d_model=64, n_heads=4, d_ff=128, dropout=0.1
        ),
        schedule=schedules.NoamConfig(d_model=64, warmup_steps=15, factor=1.0),
        trainer=TrainerConfig(**trainer),
        device=DeviceConfig(device="cpu", num_threads=1),  # a fixed count: runs compared bit for bit
    )


def train_run(cfg: pipeline.TrainConfig, run_dir: Path) -> dict:
    """``pipeline.train`` with the config itself as the resolved config the run records."""
    return pipeline.train(cfg, run_dir, resolved_config=dataclasses.asdict(cfg))


def trained_toy_run(run_dir: Path, data_dir: Path, *, seed: int = 3, pre_norm: bool = False) -> Path:
    """The small toy-corpus model (max_positions 64) trained for 400 updates at Noam factor 1.0:
    enough for its greedy outputs to depend on the source and to end in EOS. Runs of one
    ``data_dir`` whose folders share a parent share their tokenizer (the cached BPE)."""
    cfg = small_train_config(
        data_dir,
        run_dir.parent.parent / "tokenizers",
        max_steps=400,
        val_interval=400,
        save_interval=400,
        log_interval=400,
        seed=seed,
    )
    model = dataclasses.replace(cfg.model, pre_norm=pre_norm, max_positions=CHECKPOINT_MAX_POSITIONS)
    schedule = schedules.NoamConfig(d_model=64, warmup_steps=40, factor=1.0)
    train_run(dataclasses.replace(cfg, model=model, schedule=schedule), run_dir)
    return run_dir


def make_checkpoint(
    path: Path,
    data_dir: Path,
    seed: int = 0,
    step: int = 0,
    data_cfg: DataConfig | None = None,
    pre_norm: bool = False,
) -> Path:
    """An untrained tiny Transformer and a BPE tokenizer of the first 300 training pairs in
    ``data_dir``, saved in the trainer's format: {"model", "config" (the resolved TrainConfig),
    "tokenizer", "step"}."""
    src, tgt = (
        read_lines(find_split_file(data_dir, "{split}.{lang}", "train", lang, "train"))[:300] for lang in ("en", "de")
    )
    tokenizer = train_tokenizer(src + tgt, TokenizerConfig(vocab_size=500))
    model_cfg = ModelConfig(
        name="test",
        encoder_layers=1,
        decoder_layers=1,
        d_model=32,
        n_heads=2,
        d_ff=64,
        dropout=0.0,
        max_positions=CHECKPOINT_MAX_POSITIONS,
        pre_norm=pre_norm,
    )
    data_cfg = data_cfg or DataConfig(
        dir=str(data_dir), test_splits=CHECKPOINT_SPLITS, max_eval_examples=CHECKPOINT_EVAL_EXAMPLES
    )
    torch.manual_seed(seed)
    model = Transformer(model_cfg, tokenizer.vocab_size, tokenizer.vocab_size, tokenizer.pad_id)
    config = dataclasses.asdict(pipeline.TrainConfig(data=data_cfg, model=model_cfg))
    state = {"model": model.state_dict(), "config": config, "tokenizer": tokenizer.to_str(), "step": step}
    return save_checkpoint(state, path)
