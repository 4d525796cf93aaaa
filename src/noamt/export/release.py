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
    noamt-manifest.json  the SHA-256 of each file above, written last (:mod:`noamt.manifest`)

:func:`read_release` verifies what it reads before it builds anything: the manifest (a changed,
missing or unlisted file; a folder without one loads with a warning), the config's keys and
their types, the model's sizes (ModelConfig's checks and those of :mod:`noamt.export.limits`),
the checksums of the weights and the tokenizer, the vocabulary ids against the tokenizer, and
the weights: at least as many as the config's model has, every one finite. Each refusal is a one-line
:class:`~noamt.checkpoint.CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import safetensors.torch
import torch

from noamt import __version__
from noamt.bounds import is_integer
from noamt.checkpoint import CheckpointError, require_finite_weights
from noamt.data import Tokenizer
from noamt.export.limits import least_model_weights
from noamt.io import write_atomic
from noamt.manifest import VerifiedFiles, sha256_bytes, verify_folder, write_manifest
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


def write_release(
    folder: Path, model: torch.nn.Module, model_cfg: ModelConfig, tokenizer: Tokenizer, run_config: dict,
    step: int | None, card: str,
) -> None:  # fmt: skip
    """Write the four files of a release into the existing ``folder``, then its manifest
    (:func:`noamt.manifest.write_manifest`, from the bytes just written)."""
    state = model.state_dict()
    tied = tied_names(state)
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in state.items() if name not in tied}
    files: dict[str, bytes] = {
        WEIGHTS_FILE: safetensors.torch.save(weights, metadata={"format": "pt"}),
        TOKENIZER_FILE: tokenizer.to_str().encode("utf-8"),
        CARD_FILE: card.encode("utf-8"),
    }
    digests = {name: sha256_bytes(data) for name, data in files.items()}
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "noamt_version": __version__,
        "step": step,
        "model": asdict(model_cfg),
        "vocab": {"size": tokenizer.vocab_size, **{key: getattr(tokenizer, key) for key in VOCAB_IDS}},
        "sha256": {name: digests[name] for name in (WEIGHTS_FILE, TOKENIZER_FILE)},
        "run": {key: value for key, value in run_config.items() if key != "model"},
    }
    files[CONFIG_FILE] = (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    digests[CONFIG_FILE] = sha256_bytes(files[CONFIG_FILE])
    for name, data in files.items():
        write_atomic(folder / name, data)
    write_manifest(folder, digests)


def _read_bytes(folder: Path, name: str, verified: VerifiedFiles | None) -> tuple[bytes, str]:
    """The bytes of ``folder / name`` and their SHA-256: as the manifest check read them, or from disk."""
    if verified is not None and name in verified.data:
        return verified.data[name], verified.sha256[name]
    path = folder / name
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from err
    return data, sha256_bytes(data)


def _read_verified(folder: Path, name: str, digests: dict, verified: VerifiedFiles | None) -> bytes:
    """The bytes of ``folder / name``, which must match ``sha256.<name>`` of the config."""
    data, digest = _read_bytes(folder, name, verified)
    if digest != digests.get(name):
        raise CheckpointError(f"{folder / name} does not match sha256.{name} in {folder / CONFIG_FILE}")
    return data


def _refuse(path: Path, key: str, value: object, expected: str) -> CheckpointError:
    text = repr(value)
    shown = text if len(text) <= 40 else text[:37] + "..."
    return CheckpointError(f"{path}: {key}={shown}: must be {expected}")


def _check_config(path: Path, config: object) -> dict:
    """The release config's shape: a JSON object of :data:`CONFIG_KEYS`, this format and version,
    ``noamt_version`` a string, ``step`` null or an integer >= 0, ``model``, ``vocab``, ``run``
    mappings and ``sha256`` a mapping of file names to strings."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format is not {FORMAT!r} (not a noamt release)")
    keys = sorted(config)
    if keys != sorted(CONFIG_KEYS):
        raise CheckpointError(f"{path}: keys {keys} are not the release's {sorted(CONFIG_KEYS)}")
    if config["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version={config['format_version']!r}, this noamt reads {FORMAT_VERSION}")
    if not isinstance(config["noamt_version"], str):
        raise _refuse(path, "noamt_version", config["noamt_version"], "a string")
    step = config["step"]
    if step is not None and not (is_integer(step) and step >= 0):
        raise _refuse(path, "step", step, "null or an integer >= 0")
    for key in ("model", "vocab", "run"):
        if not isinstance(config[key], dict):
            raise _refuse(path, key, config[key], "a mapping")
    digests = config["sha256"]
    if not (isinstance(digests, dict) and all(isinstance(d, str) for d in digests.values())):
        raise _refuse(path, "sha256", digests, f"a mapping of {WEIGHTS_FILE} and {TOKENIZER_FILE} to SHA-256")
    return config


def _model_config(path: Path, model: dict) -> ModelConfig:
    """``model`` as a ModelConfig, which checks its values; an unknown key or a value of the
    wrong type or out of bounds is a one-line CheckpointError naming the key."""
    try:
        model_cfg = ModelConfig(**model)
    except TypeError as err:
        raise CheckpointError(f"{path}: model is not a ModelConfig ({err})") from err
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    return model_cfg


def _check_vocab(path: Path, stated: dict, tokenizer: Tokenizer) -> None:
    """The config's vocab ids and size are the tokenizer's."""
    actual = {"size": tokenizer.vocab_size, **{key: getattr(tokenizer, key) for key in VOCAB_IDS}}
    for key, value in actual.items():
        if stated.get(key) != value:
            raise CheckpointError(f"{path}: vocab.{key}={stated.get(key)!r} but {TOKENIZER_FILE} has {value}")


def _read_weights(folder: Path, data: bytes, model_cfg: ModelConfig, vocab_size: int) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors``: enough of them for ``model_cfg``
    (:func:`~noamt.export.limits.least_model_weights`, so that no larger model is built for them)
    and every one finite."""
    path = folder / WEIGHTS_FILE
    try:
        weights = safetensors.torch.load(data)
    except Exception as err:  # a malformed header
        raise CheckpointError(f"cannot read {path}: {err}") from err
    held, least = sum(tensor.numel() for tensor in weights.values()), least_model_weights(model_cfg, vocab_size)
    if held < least:
        raise CheckpointError(f"{folder / CONFIG_FILE}: weights do not fit config.model (it gives at least "
                              f"{least} weights, {WEIGHTS_FILE} holds {held})")  # fmt: skip
    require_finite_weights(weights, path)
    return weights


def read_release(folder: str | os.PathLike) -> Release:
    """The contents of a release folder, verified; reads JSON and safetensors only. In order: the
    manifest (:func:`noamt.manifest.verify_folder`), the config's keys, types and bounds (before
    anything is built), the checksums of the tokenizer and the weights, the vocabulary against
    the tokenizer, the weights' count against the config and their finiteness."""
    folder = Path(folder)
    verified = verify_folder(folder, keep=(CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE))
    config_path = folder / CONFIG_FILE
    config_bytes = _read_bytes(folder, CONFIG_FILE, verified)[0]
    try:
        config = json.loads(config_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {config_path}: {err}") from err
    config = _check_config(config_path, config)
    model_cfg = _model_config(config_path, config["model"])
    tokenizer_data = _read_verified(folder, TOKENIZER_FILE, config["sha256"], verified)
    try:
        tokenizer = Tokenizer.from_str(tokenizer_data.decode("utf-8"))
    except Exception as err:  # UnicodeDecodeError; tokenizers raises a bare Exception
        raise CheckpointError(f"cannot read {folder / TOKENIZER_FILE}: {err}") from err
    _check_vocab(config_path, config["vocab"], tokenizer)
    weights_bytes = _read_verified(folder, WEIGHTS_FILE, config["sha256"], verified)
    weights = _read_weights(folder, weights_bytes, model_cfg, tokenizer.vocab_size)
    run_config = {**config["run"], "model": config["model"]}
    return Release(model_cfg, tokenizer, weights, run_config, config["step"])
