"""Assemble a training run from plain config dataclasses:

corpus -> tokenizer -> token ids -> token-budget batches -> model -> optimizer + schedule -> Trainer
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from noamt import schedules
from noamt.checkpoint import check_new_run, remove_stale_temporaries
from noamt.data import (
    Batch,
    DataConfig,
    DataError,
    EncodedSplit,
    TokenBudgetBatches,
    Tokenizer,
    TokenizerConfig,
    filter_pairs,
    load_corpus,
    load_or_train_tokenizer,
)
from noamt.device import DeviceConfig, DeviceManager, device_manager, read_distributed_env
from noamt.io import write_atomic
from noamt.model import ModelConfig, build_model, count_parameters
from noamt.optim import OptimConfig, build_optimizer
from noamt.run_lock import run_lock
from noamt.trainer import Trainer, TrainerConfig
from noamt.validation import validation_bleu

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything one training run needs; each part is its component's own config."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: Any = None
    """One of noamt.schedules.CONFIGS (schedule=<name>); None: noam."""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    run_name: str = "run"
    """Names the run directory."""

    def resolved(self) -> TrainConfig:
        """This run with its derived defaults filled in: the schedule (None: noam) with each
        parameter left at None taken from the run (``Schedule.with_run_defaults``): d_model from
        model.d_model, total_steps from trainer.max_steps, peak_lr the Noam peak of the model."""
        schedule = (self.schedule or schedules.NoamConfig()).with_run_defaults(
            d_model=self.model.d_model, max_steps=self.trainer.max_steps
        )
        return dataclasses.replace(self, schedule=schedule)


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: TokenBudgetBatches
    valid: TokenBudgetBatches
    valid_references: list[str]  # target text of the validation pairs, in split order
    tokenized: bool = False  # the text is lowercased and tokenized already (data.tokenized)


def prepare_data(
    data_cfg: DataConfig,
    tokenizer_cfg: TokenizerConfig,
    trainer_cfg: TrainerConfig,
    dm: DeviceManager,
    tokenizer: Tokenizer | None = None,
) -> PreparedData:
    """Load the corpus, train (or reuse) the BPE model, encode and batch train and valid."""
    corpus = load_corpus(data_cfg)
    if tokenizer is None:
        tokenizer = load_or_train_tokenizer(corpus["train"]["src"], corpus["train"]["tgt"], tokenizer_cfg)
    train = EncodedSplit.encode(tokenizer, corpus["train"]["src"], corpus["train"]["tgt"])
    train, dropped = filter_pairs(train, data_cfg.max_src_len, data_cfg.max_tgt_len, data_cfg.max_len_ratio)
    valid = EncodedSplit.encode(
        tokenizer,
        corpus["valid"]["src"],
        corpus["valid"]["tgt"],
        max_src_len=data_cfg.max_src_len,
        max_tgt_len=data_cfg.max_tgt_len,
        truncate=True,
    )
    log.info(
        "data: %d training pairs (%d dropped by length), %d validation pairs, vocabulary %d",
        len(train),
        dropped,
        len(valid),
        tokenizer.vocab_size,
    )
    ids = (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)
    shard = {"num_shards": dm.world_size, "shard_id": dm.rank}
    return PreparedData(
        tokenizer=tokenizer,
        train=TokenBudgetBatches(
            train,
            trainer_cfg.max_tokens,
            *ids,
            seed=trainer_cfg.seed,
            max_sentences=trainer_cfg.max_sentences,
            pad_to_multiple=trainer_cfg.pad_to_multiple,
            **shard,
        ),
        valid=TokenBudgetBatches(
            valid, trainer_cfg.max_tokens, *ids, shuffle=False, pad_to_multiple=trainer_cfg.pad_to_multiple
        ),
        valid_references=list(corpus["valid"]["tgt"]),
        tokenized=data_cfg.tokenized,
    )


def validation_bleu_fn(data: PreparedData, trainer_cfg: TrainerConfig) -> Callable[..., float]:
    """(model, watch) -> greedy sacreBLEU on the validation set (its first ``val_bleu_max_examples``
    pairs), its batches passed through ``watch`` (the trainer's stop check; default: none)."""
    n = trainer_cfg.val_bleu_max_examples or len(data.valid_references)
    split = EncodedSplit(data.valid.split.src_ids[:n], data.valid.split.tgt_ids[:n])
    tok = data.tokenizer
    batches = TokenBudgetBatches(split, trainer_cfg.max_tokens, tok.pad_id, tok.bos_id, tok.eos_id, shuffle=False)
    references = data.valid_references[:n]
    tokenize = "none" if data.tokenized else "13a"  # tokenized text is scored as it is

    def bleu(model: nn.Module, watch: Callable[[Iterable[Batch]], Iterable[Batch]] = iter) -> float:
        batches.rewind()
        return validation_bleu(model, watch(batches), tok, references, tokenize=tokenize)[0]

    return bleu


def schedule_summary(schedule: schedules.Schedule) -> dict:
    """Name, parameters, peak lr and the update that reaches it."""
    params = {k: v for k, v in dataclasses.asdict(schedule).items() if k != "name"}
    return {
        "schedule": schedule.name,
        "schedule_params": params,
        "peak_lr": schedule.peak_lr,
        "peak_step": schedule.peak_step,
    }


def check_train_config(cfg: TrainConfig) -> None:
    """Settings that cannot train are a ValueError naming the key, before anything runs."""
    t = cfg.trainer
    at_least = {
        "trainer.max_steps": (t.max_steps, 0),
        "trainer.max_epochs": (t.max_epochs, 0),
        "trainer.max_tokens": (t.max_tokens, 1),
        "trainer.update_freq": (t.update_freq, 1),
        "trainer.log_interval": (t.log_interval, 1),
        "trainer.val_interval": (t.val_interval, 0),
        "trainer.save_interval": (t.save_interval, 0),
        "trainer.keep_last": (t.keep_last, 0),
        "trainer.keep_last_epochs": (t.keep_last_epochs, 0),
        "trainer.patience": (t.patience, 0),
        "trainer.clip_norm": (t.clip_norm, 0),
        "trainer.max_nonfinite_updates": (t.max_nonfinite_updates, 1),
    }
    if cfg.data.max_train_examples is not None:
        at_least["data.max_train_examples"] = (cfg.data.max_train_examples, 1)
    if t.max_sentences is not None:
        at_least["trainer.max_sentences"] = (t.max_sentences, 1)
    for key, (value, low) in at_least.items():
        if value < low:
            raise ValueError(f"{key}={value}: must be at least {low}")
    if not 0.0 <= t.label_smoothing < 1.0:
        raise ValueError(f"trainer.label_smoothing={t.label_smoothing}: must be in [0, 1)")


def load_run_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer a run saved; an unreadable file is a one-line DataError naming it."""
    try:
        return Tokenizer.from_file(path)
    except Exception as err:  # the Rust library raises a bare Exception for broken JSON
        raise DataError(f"{path}: cannot read the run's tokenizer ({err})") from err


def write_run_files(run_dir: Path, files: Mapping[str, str]) -> None:
    """Write each ``{relative path: text}`` of ``files`` under ``run_dir``, atomically; a one-line ValueError
    naming the directory when it is not writable."""
    try:
        for name, text in files.items():
            write_atomic(run_dir / name, text)
    except OSError as err:
        raise ValueError(f"cannot write to the run directory {run_dir}: {err}") from err


def train(
    cfg: TrainConfig, run_dir: str | Path, resolved_config: dict, run_files: Mapping[str, str] | None = None
) -> dict:
    """Train one model as configured; checkpoints, logs and metrics go to ``run_dir``.

    The main process holds the run directory's lock (``noamt.run_lock``) throughout, taken
    before anything is written there. ``run_files`` ({relative path: text}, e.g. the Hydra
    config of the launch) are written once the run is known to have work to do: relaunching a
    finished run leaves every file as it was.
    """
    run_dir = Path(run_dir)
    cfg = cfg.resolved()
    check_train_config(cfg)
    check_new_run(run_dir / "checkpoints", cfg.trainer.resume)
    main_process = read_distributed_env(os.environ).rank == 0  # DeviceManager.is_main, before it exists
    with run_lock(run_dir) if main_process else contextlib.nullcontext():
        log.info("run directory: %s", run_dir)
        dm = device_manager(cfg.device)
        if not dm.is_main:  # one log for the whole job
            logging.getLogger("noamt").setLevel(logging.WARNING)
        try:
            return _train_locked(cfg, run_dir, resolved_config, run_files or {}, dm)
        finally:
            dm.close()


def _train_locked(
    cfg: TrainConfig, run_dir: Path, resolved_config: dict, run_files: Mapping[str, str], dm: DeviceManager
) -> dict:
    check_new_run(run_dir / "checkpoints", cfg.trainer.resume)  # again, now that no one else writes
    schedule = cfg.schedule
    dm.seed(cfg.trainer.seed)
    tokenizer_file = run_dir / "tokenizer.json"
    resuming = cfg.trainer.resume != "none" and tokenizer_file.exists()
    tokenizer = load_run_tokenizer(tokenizer_file) if resuming else None
    data = prepare_data(cfg.data, cfg.tokenizer, cfg.trainer, dm, tokenizer)
    if dm.is_main and not resuming:
        data.tokenizer.save(tokenizer_file)
    if dm.is_main:
        remove_stale_temporaries(run_dir / "checkpoints")
    model = build_model(cfg.model, data.tokenizer).to(dm.device)
    optimizer = build_optimizer(model, cfg.optim)
    info = {
        "device": dm.describe(),
        "parameters": count_parameters(model),
        **schedule_summary(schedule),
    }
    log.info("device: %s", info["device"])
    log.info("model: %s, %s parameters", cfg.model.name, f"{info['parameters']:,}")
    log.info(
        "schedule: %s %s, peak lr %.3e at update %d",
        info["schedule"],
        info["schedule_params"],
        info["peak_lr"],
        info["peak_step"],
    )
    trainer = Trainer(
        cfg.trainer,
        model,
        optimizer,
        schedule,
        data.train,
        data.valid,
        dm,
        run_dir,
        extra_state={"config": resolved_config, "tokenizer": data.tokenizer.to_str()},
        run_info=info,
        bleu=validation_bleu_fn(data, cfg.trainer) if cfg.trainer.val_bleu else None,
    )
    resumed = trainer.resume()
    if dm.is_main and not (resumed and trainer.finished()):
        write_run_files(run_dir, run_files)
    result = trainer.train()
    return {
        **result,
        "step": trainer.step,
        "interrupted": trainer.stopped_by,
        "best": trainer.tracker.best,
    }
