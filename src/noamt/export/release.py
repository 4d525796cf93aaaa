"""The release folder: a trained model as data only, so that loading it never runs code.

    model.safetensors  every weight once, float32 as trained (a tied embedding under its first
                       name in the state dict, ``tgt_embed.weight``)
    config.json        {"format": "noamt-release", "format_version": 1, "noamt_version", "step",
                        "model": the ModelConfig fields,
                        "vocab": {"size", "pad_id", "bos_id", "eos_id", "unk_id"},
                        "sha256": {"model.safetensors": ..., "tokenizer.json": ...},
                        "run": the rest of the run's resolved config (data, tokenizer, optim, ...)}
    tokenizer.json     the run's BPE (:class:`noamt.data.Tokenizer` JSON)
    README.md          the model card (:mod:`noamt.export.card`)

:func:`read_release` verifies what it reads: the checksums of the weights and the tokenizer, the
config's keys, and the vocabulary ids against the tokenizer; anything else is a one-line
:class:`~noamt.checkpoint.CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import safetensors.torch
import torch

from noamt import __version__
from noamt.checkpoint import CheckpointError
from noamt.data import Tokenizer
from noamt.io import write_atomic
from noamt.model import ModelConfig
from noamt.run_dir import TOKENIZER_FILE

FORMAT, FORMAT_VERSION = "noamt-release", 1
CONFIG_FILE, WEIGHTS_FILE, CARD_FILE = "config.json", "model.safetensors", "README.md"
CONFIG_KEYS = ("format", "format_version", "noamt_version", "step", "model", "vocab", "sha256", "run")
VOCAB_IDS = ("pad_id", "bos_id", "eos_id", "unk_id")


@dataclass
class Release:
    """What a release folder holds, read and verified."""

    model_cfg: ModelConfig
    tokenizer: Tokenizer
    weights: dict[str, torch.Tensor]  # each tensor once: tied names are absent
    run_config: dict  # the run's resolved config, its model section included
    step: int | None


def is_release(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with a release's ``config.json``."""
    return (Path(path) / CONFIG_FILE).is_file()


def tied_names(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """{later name: first name} for the entries of ``state`` that share a tensor with an earlier one."""
    first_name: dict[tuple[int, tuple[int, ...]], str] = {}
    tied = {}
    for name, tensor in state.items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key in first_name:
            tied[name] = first_name[key]
        else:
            first_name[key] = name
    return tied


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_release(
    folder: Path, model: torch.nn.Module, model_cfg: ModelConfig, tokenizer: Tokenizer, run_config: dict,
    step: int | None, card: str,
) -> None:  # fmt: skip
    """Write the four files of a release into the existing ``folder``."""
    state = model.state_dict()
    tied = tied_names(state)
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items() if name not in tied}
    weights_bytes = safetensors.torch.save(weights, metadata={"format": "pt"})
    tokenizer_json = tokenizer.to_str()
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "noamt_version": __version__,
        "step": step,
        "model": asdict(model_cfg),
        "vocab": {"size": tokenizer.vocab_size, **{key: getattr(tokenizer, key) for key in VOCAB_IDS}},
        "sha256": {WEIGHTS_FILE: _sha256(weights_bytes), TOKENIZER_FILE: _sha256(tokenizer_json.encode("utf-8"))},
        "run": {key: value for key, value in run_config.items() if key != "model"},
    }
    write_atomic(folder / WEIGHTS_FILE, weights_bytes)
    write_atomic(folder / TOKENIZER_FILE, tokenizer_json)
    write_atomic(folder / CARD_FILE, card)
    write_atomic(folder / CONFIG_FILE, json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _read_verified(folder: Path, name: str, digests: dict) -> bytes:
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from err
    if _sha256(data) != digests.get(name):
        raise CheckpointError(f"{path} does not match sha256.{name} in {folder / CONFIG_FILE}")
    return data


def read_release(folder: str | os.PathLike) -> Release:
    """The contents of a release folder, verified; reads JSON and safetensors only."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {config_path}: {err}") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: format is not {FORMAT!r} (not a noamt release)")
    keys = sorted(config)
    if keys != sorted(CONFIG_KEYS):
        raise CheckpointError(f"{config_path}: keys {keys} are not the release's {sorted(CONFIG_KEYS)}")
    if config["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: format_version={config['format_version']!r}, this noamt reads {FORMAT_VERSION}"
        )
    try:
        model_cfg = ModelConfig(**config["model"])
    except TypeError as err:
        raise CheckpointError(f"{config_path}: model is not a ModelConfig ({err})") from err
    tokenizer_json = _read_verified(folder, TOKENIZER_FILE, config["sha256"]).decode("utf-8")
    tokenizer = Tokenizer.from_str(tokenizer_json)
    stated = config["vocab"]
    actual = {"size": tokenizer.vocab_size, **{key: getattr(tokenizer, key) for key in VOCAB_IDS}}
    for key, value in actual.items():
        if stated.get(key) != value:
            raise CheckpointError(f"{config_path}: vocab.{key}={stated.get(key)!r} but {TOKENIZER_FILE} has {value}")
    weights_bytes = _read_verified(folder, WEIGHTS_FILE, config["sha256"])
    try:
        weights = safetensors.torch.load(weights_bytes)
    except Exception as err:  # a malformed header
        raise CheckpointError(f"cannot read {folder / WEIGHTS_FILE}: {err}") from err
    run_config = {**config["run"], "model": config["model"]}
    return Release(model_cfg, tokenizer, weights, run_config, config["step"])
