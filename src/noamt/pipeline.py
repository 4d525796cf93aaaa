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

from noamt import schedules
from noamt.checkpoint import RunIdentity, check_new_run, remove_stale_temporaries, run_identity
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
from noamt.device import DeviceConfig, DeviceManager, device_manager, host_description, read_distributed_env
from noamt.io import write_atomic
from noamt.model import ModelConfig, Transformer, build_model, count_parameters
from noamt.optim import OptimConfig, build_optimizer
from noamt.run_dir import RunDir
from noamt.run_lock import run_lock
from noamt.trainer import Trainer, TrainerConfig
from noamt.validation import validation_bleu

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything one training run needs; each part is its component's own config and checks its
    own values when it is made. What needs two components is checked by :meth:`resolved`."""

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
        model.d_model, total_steps from trainer.max_steps, peak_lr the Noam peak of the model.
        The schedule checks the values it is given as it checks its own, so a bound across
        components (total_steps = trainer.max_steps beyond warmup_steps) is refused here, in one
        line naming the schedule and the key."""
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
    return PreparedData(
        tokenizer=tokenizer,
        train=TokenBudgetBatches(
            train,
            trainer_cfg.max_tokens,
            *ids,
            seed=trainer_cfg.seed,
            max_sentences=trainer_cfg.max_sentences,
            pad_to_multiple=trainer_cfg.pad_to_multiple,
            pad_to_buckets=trainer_cfg.pad_to_buckets,
            num_shards=dm.world_size,
            shard_id=dm.rank,
        ),
        valid=TokenBudgetBatches(
            valid,
            trainer_cfg.max_tokens,
            *ids,
            shuffle=False,
            pad_to_multiple=trainer_cfg.pad_to_multiple,
            pad_to_buckets=trainer_cfg.pad_to_buckets,
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

    def bleu(model: Transformer, watch: Callable[[Iterable[Batch]], Iterable[Batch]] = iter) -> float:
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


def load_run_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer a run saved; an unreadable file is a one-line DataError naming it."""
    try:
        return Tokenizer.from_file(path)
    except Exception as err:  # the Rust library raises a bare Exception for broken JSON
        raise DataError(f"{path}: cannot read the run's tokenizer ({err})") from err


def run_entries(resolved_config: dict, tokenizer: Tokenizer) -> RunIdentity:
    """What each checkpoint of the run records about it: the resolved config, the tokenizer's
    JSON and their ``identity`` (:func:`noamt.checkpoint.run_identity`)."""
    text = tokenizer.to_str()
    return {"config": resolved_config, "tokenizer": text, "identity": run_identity(resolved_config, text)}


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
    before anything is written there; once it holds it, a new run (``trainer.resume=none``) over
    a run's checkpoints is refused (:func:`~noamt.checkpoint.check_new_run`), and every other
    process refuses it too, before they meet. ``run_files`` ({relative path: text}, e.g. the
    Hydra config of the launch) are written once the run is known to have work to do:
    relaunching a finished run leaves every file as it was.
    """
    run = RunDir.at(run_dir)
    cfg = cfg.resolved()

    def refuse_a_new_run_over_checkpoints() -> None:
        check_new_run(run.checkpoints, cfg.trainer.resume)

    owner: contextlib.AbstractContextManager
    if read_distributed_env(os.environ).rank == 0:  # DeviceManager.is_main, before it exists
        owner = run_lock(run.path, check=refuse_a_new_run_over_checkpoints)
    else:
        refuse_a_new_run_over_checkpoints()  # as the main process does: all stop before they meet
        owner = contextlib.nullcontext()
    with owner:
        log.info("run directory: %s", run.path)
        dm = device_manager(cfg.device)
        if not dm.is_main:  # one log for the whole job
            logging.getLogger("noamt").setLevel(logging.WARNING)
        try:
            return _train_locked(cfg, run, resolved_config, run_files or {}, dm)
        finally:
            dm.close()


def _train_locked(
    cfg: TrainConfig, run: RunDir, resolved_config: dict, run_files: Mapping[str, str], dm: DeviceManager
) -> dict:
    schedule = cfg.schedule
    dm.seed(cfg.trainer.seed)
    resuming = cfg.trainer.resume != "none" and run.tokenizer.exists()
    tokenizer = load_run_tokenizer(run.tokenizer) if resuming else None
    data = prepare_data(cfg.data, cfg.tokenizer, cfg.trainer, dm, tokenizer)
    if dm.is_main and not resuming:
        data.tokenizer.save(run.tokenizer)
    if dm.is_main:
        remove_stale_temporaries(run.checkpoints)
    model = build_model(cfg.model, data.tokenizer).to(dm.device)
    optimizer = build_optimizer(model, cfg.optim)
    info = {
        "device": dm.describe(),
        "host": host_description(),
        "parameters": count_parameters(model),
        **schedule_summary(schedule),
    }
    log.info("device: %s on %s", info["device"], info["host"])
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
        run.path,
        extra_state=run_entries(resolved_config, data.tokenizer),
        run_info=info,
        bleu=validation_bleu_fn(data, cfg.trainer) if cfg.trainer.val_bleu else None,
    )
    resumed = trainer.resume()
    if dm.is_main and not (resumed and trainer.finished()):
        write_run_files(run.path, run_files)
    result = trainer.train()
    return {
        **result,
        "step": trainer.step,
        "interrupted": trainer.stopped_by,
        "best": trainer.tracker.best,
    }
