"""``noamt-evaluate``: translate test splits with a checkpoint and score them with sacreBLEU.

    noamt-evaluate checkpoint=runs/my-run                      # checkpoint_best.pt, else _last
    noamt-evaluate checkpoint=runs/my-run/checkpoints/checkpoint_avg.pt beam_size=5
    noamt-evaluate checkpoint=runs/my-run splits=[test_2016_flickr,valid] data_dir=/data/multi30k

The data config is the one stored in the checkpoint (``data_dir`` replaces its folder);
``splits`` defaults to its test splits (``valid`` names the validation split); ``device``
picks an option of the device/ group. Writes ``<split>.hyp.<tgt_lang>`` and ``results.json``
to ``out_dir`` (default: ``<run>/eval``) and prints a table with the metric signatures.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf
from tqdm import tqdm

from noamt.checkpoint import CheckpointError
from noamt.cli.config import require
from noamt.data import DataConfig, DataError, load_corpus, read_lines, resolve_data_dir
from noamt.decoding import DecodingConfig, check_decoding
from noamt.device import DeviceConfig, device_manager
from noamt.evaluation import (
    LoadedModel,
    evaluate_split,
    format_table,
    load_model,
    tokenized_reference_file,
    write_results,
)

log = logging.getLogger("noamt")


@dataclass
class EvaluateConfig(DecodingConfig):
    """Decoding settings plus the checkpoint, the splits and where results go."""

    checkpoint: str = MISSING  # a checkpoint file or a run directory
    splits: list[str] | None = None  # default: the data config's test splits
    data_dir: str | None = None  # replaces the stored data folder
    out_dir: str | None = None  # default: <run>/eval
    max_tokens: int = 4096  # source tokens per batch, padding included
    device: DeviceConfig = field(default_factory=DeviceConfig)  # the device/ config group


ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def stored_data_config(loaded: LoadedModel, data_dir: str | None) -> DataConfig:
    """The run's data config, reading files from ``data_dir`` when given."""
    try:
        data_cfg = DataConfig(**loaded.config["data"])
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{loaded.path}: config.data is not a DataConfig ({err})") from err
    if data_dir is not None:
        data_cfg = dataclasses.replace(data_cfg, dir=data_dir, source="files")
    return data_cfg


def tokenized_references(data_cfg: DataConfig, split: str) -> list[str] | None:
    """The official lowercased, Moses-tokenized references of ``split``, if the folder has them
    (cut to ``max_eval_examples`` like the split itself)."""
    data_dir = resolve_data_dir(data_cfg)
    if data_dir is None or data_cfg.tokenized:  # tokenized text is its own reference
        return None
    stem = data_cfg.valid_split if split == "valid" else split
    path = tokenized_reference_file(data_dir, stem, data_cfg.tgt_lang)
    return read_lines(path)[: data_cfg.max_eval_examples] if path.is_file() else None


def default_out_dir(checkpoint: Path) -> Path:
    """``<run>/eval`` for ``<run>/checkpoints/<file>``, else ``eval`` beside the checkpoint."""
    folder = checkpoint.parent
    return (folder.parent if folder.name == "checkpoints" else folder) / "eval"


def evaluate(cfg: EvaluateConfig) -> None:
    check_decoding(cfg)
    dm = device_manager(cfg.device)
    loaded = load_model(cfg.checkpoint, dm.device)
    data_cfg = stored_data_config(loaded, cfg.data_dir)
    splits = cfg.splits or data_cfg.test_splits
    known = ["valid", *data_cfg.test_splits]
    unknown = [s for s in splits if s not in known]
    if unknown:
        raise DataError(f"splits: {unknown} not in data config {data_cfg.name} (has {known})")
    log.info("model: %s (step %s) on %s", loaded.path, loaded.step, dm.describe())
    log.info("data: %s, splits %s", data_cfg.name, ", ".join(splits))
    if data_cfg.tokenized:
        log.info(
            "data.tokenized=true: hypotheses are lowercased and tokenized already and are scored as they are "
            "against the tokenized references (BLEU on whitespace tokens, no second Moses pass)"
        )
    corpus = load_corpus(data_cfg, splits=splits)  # only the files of the splits scored
    hypotheses, results = {}, {}
    for split in splits:
        bar = tqdm(total=len(corpus[split]), desc=split, unit="sent", file=sys.stderr)
        with bar, dm.autocast():
            hypotheses[split], results[split] = evaluate_split(
                loaded.model,
                loaded.tokenizer,
                corpus[split]["src"],
                corpus[split]["tgt"],
                cfg,
                tgt_lang=data_cfg.tgt_lang,
                max_tokens=cfg.max_tokens,
                tok_references=tokenized_references(data_cfg, split),
                tokenized=data_cfg.tokenized,
                on_batch=bar.update,
            )
    meta = {
        "checkpoint": str(loaded.path),
        "step": loaded.step,
        "data": data_cfg.name,
        "src_lang": data_cfg.src_lang,
        "tgt_lang": data_cfg.tgt_lang,
        "tokenized": data_cfg.tokenized,
        "decoding": {f.name: getattr(cfg, f.name) for f in dataclasses.fields(DecodingConfig)},
    }
    out_dir = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(loaded.path)
    path = write_results(out_dir, hypotheses, results, data_cfg.tgt_lang, meta)
    log.info("wrote %s and the hypotheses", path)
    print(format_table(results))


@hydra.main(version_base=None, config_path="pkg://noamt.configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    require(cfg, "checkpoint", "noamt-evaluate", "a checkpoint file or a run directory")
    try:
        evaluate(OmegaConf.to_object(cfg))
    except (CheckpointError, DataError, OSError, ValueError) as err:
        sys.exit(f"noamt-evaluate: {err}")


if __name__ == "__main__":
    main()
