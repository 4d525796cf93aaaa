"""A trained model read back for translation: :func:`load_model` rebuilds it
(:func:`noamt.model.build_model`) from a checkpoint, a run directory or a release folder
(:mod:`noamt.export.release`), :func:`load_models` several of them over one tokenizer as one
ensemble."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from noamt.checkpoint import (
    CheckpointError,
    CheckpointState,
    RunIdentity,
    checkpoint_identity,
    flatten_config,
    load_checkpoint,
    peek_run_entries,
    require_finite_weights,
    run_differences,
    run_label,
)
from noamt.data import Tokenizer
from noamt.decoding import Ensemble
from noamt.export.release import is_release, read_release, tied_names
from noamt.model import ModelConfig, Transformer, build_model
from noamt.run_dir import BEST, CHECKPOINTS, LAST, RunDir
from noamt.yaml_files import YamlRefused, load_yaml

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A model ready for translation, with what its checkpoint or release says about it."""

    model: Transformer
    tokenizer: Tokenizer
    config: dict  # the run's resolved config (data, model, ... sections)
    step: int | None
    path: Path  # the checkpoint file or the release folder


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file or a release folder as given; for a run directory (or its
    ``checkpoints/`` folder), the run's model: ``checkpoint_best.pt``, else ``checkpoint_last.pt``
    (:meth:`RunDir.model_checkpoint`)."""
    path = Path(path)
    if not path.is_dir() or is_release(path):
        return path
    run = RunDir.at(path)
    found = run.model_checkpoint()
    if found is None and path.name == CHECKPOINTS:
        found = RunDir.at(path.parent).model_checkpoint()
    if found is None:
        raise CheckpointError(f"no {BEST} or {LAST} in {run.checkpoints} or {path}")
    return found


def model_run(path: str | os.PathLike) -> RunDir | None:
    """The run whose model ``path`` names when it is a run directory (or its ``checkpoints/``
    folder), whose checkpoint :func:`resolve_checkpoint` chooses; None for a file or a release."""
    path = Path(path)
    if not path.is_dir() or is_release(path):
        return None
    return RunDir.of_checkpoint(resolve_checkpoint(path))


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """The Transformer and tokenizer stored in a checkpoint (file or run directory) or a release
    folder, in eval mode.

    A checkpoint is refused in one line naming it (:class:`CheckpointError`) when its
    ``config.model`` is no valid ModelConfig (the key out of bounds or of the wrong type), its
    tokenizer cannot be read, its weights hold NaN or infinite values, or they do not fit its
    config.model. A checkpoint chosen from a run directory must also be a state of that run
    (:func:`check_run_model`); a checkpoint file named as such is taken as it is."""
    run = model_run(path)
    path = resolve_checkpoint(path)
    if is_release(path):
        release = read_release(path)
        model_cfg, tokenizer, weights = release.model_cfg, release.tokenizer, release.weights
        config, step = release.run_config, release.step
    else:
        state = load_checkpoint(path)
        for key in ("config", "tokenizer"):
            if key not in state:
                raise CheckpointError(f"{path} has no {key!r} entry (expected a checkpoint of noamt-train)")
        model_cfg, tokenizer = stored_model_config(path, state), stored_tokenizer(path, state)
        require_finite_weights(state["model"], path, "'model'")
        if run is not None:
            check_run_model(run, path, state)
        weights, config, step = state["model"], state["config"], state.get("step")
    model = build_model(model_cfg, tokenizer)
    tied = {name: weights[first] for name, first in tied_names(model.state_dict()).items() if first in weights}
    try:
        model.load_state_dict({**weights, **tied})
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit config.model ({_load_error(err)})") from err
    model.to(device).eval()
    return LoadedModel(model, tokenizer, config, step, path)


def stored_model_config(path: Path, state: CheckpointState) -> ModelConfig:
    """The checkpoint's ``config.model`` as a ModelConfig, whose own checks refuse a key out of
    bounds or of the wrong type; a one-line CheckpointError naming the file and the key."""
    try:
        return ModelConfig(**state["config"]["model"])
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: config.model is not a ModelConfig ({err})") from err
    except ValueError as err:
        raise CheckpointError(f"{path}: config.model is not a valid ModelConfig ({err})") from err


def stored_tokenizer(path: Path, state: CheckpointState) -> Tokenizer:
    """The checkpoint's tokenizer; JSON the tokenizers library cannot read is a one-line
    CheckpointError naming the file."""
    try:
        return Tokenizer.from_str(state["tokenizer"])
    except Exception as err:  # the Rust library raises a bare Exception for broken JSON
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: its 'tokenizer' entry is not a tokenizer ({reason})") from err


def _load_error(err: RuntimeError) -> str:
    """The first line of ``load_state_dict``'s error that says what does not fit (torch puts a
    header line first and one line per problem after it)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        return lines[1].rstrip(".")
    return lines[0] if lines else type(err).__name__


def check_run_model(run: RunDir, path: Path, state: CheckpointState) -> None:
    """A checkpoint chosen from the run directory ``run`` (checkpoint_best.pt, else
    checkpoint_last.pt) must be a state of that run: its identifying settings and tokenizer
    (:func:`~noamt.checkpoint.run_differences`) must be those of each reference of the run that
    can be read (:func:`run_references`). A checkpoint of another run copied in (another seed,
    another d_model) is a one-line CheckpointError naming the file, the reference and what
    differs."""
    checkpoint_identity(state, path)  # the notice, for a checkpoint of older noamt
    for reference, entries in run_references(run, path):
        differences = run_differences(state, entries)
        if differences:
            raise CheckpointError(
                f"{path} belongs to {run_label(state)}, not to the run in {run.path}: {'; '.join(differences)} "
                f"(checkpoint -> {reference.relative_to(run.path)}); name the file itself to use it anyway"
            )


def run_references(run: RunDir, chosen: Path) -> Iterator[tuple[Path, RunIdentity]]:
    """What tells a run's identity, each where it can be read: its checkpoint_last.pt (when the
    checkpoint ``chosen`` is another file; its config, tokenizer and identity, read without
    its tensors), the settings its ``.hydra/config.yaml`` states (:func:`saved_run_settings`)
    and its tokenizer.json."""
    if run.last.is_file() and run.last.resolve() != chosen.resolve():
        entries = peek_run_entries(run.last)
        if entries is not None:
            yield run.last, entries
    if run.hydra_config.is_file():
        config = saved_run_settings(run.hydra_config)
        if config is not None:
            yield run.hydra_config, {"config": config}
    if run.tokenizer.is_file():
        try:
            tokenizer = run.tokenizer.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            log.debug("%s: not read (%s)", run.tokenizer, err)
            return
        yield run.tokenizer, {"tokenizer": tokenizer}


def saved_run_settings(path: Path) -> dict | None:
    """The settings a run's ``.hydra/config.yaml`` states, as flat ``{dotted key: value}``
    (read with bounds and a safe loader): every plain value, leaving out nulls (defaults the launch
    derived, such as the schedule's d_model) and ``${...}`` interpolations, which the checkpoints
    hold resolved. None (no reference) when the file cannot be read as a mapping within the bounds
    of :func:`noamt.yaml_files.load_yaml`."""
    try:
        saved = load_yaml(path)
    except (OSError, YamlRefused) as err:
        log.debug("%s: not read as the run's settings (%s)", path, err)
        return None
    if not isinstance(saved, dict):
        return None
    return {
        key: value
        for key, value in flatten_config(saved).items()
        if value is not None and not (isinstance(value, str) and "${" in value)
    }


@dataclass
class LoadedModels:
    """The models of one or more checkpoints over one tokenizer, searched as ``model``: the
    single model itself, or an :class:`~noamt.decoding.Ensemble` of them all."""

    model: Transformer | Ensemble
    tokenizer: Tokenizer
    members: list[LoadedModel]  # in the order given

    @property
    def paths(self) -> list[Path]:
        return [member.path for member in self.members]


def checkpoint_list(checkpoint: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    """``checkpoint`` as a list: one path (a string) or several (an ensemble)."""
    return [checkpoint] if isinstance(checkpoint, str | os.PathLike) else list(checkpoint)


def load_models(
    checkpoint: str | os.PathLike | Sequence[str | os.PathLike], device: torch.device | str = "cpu"
) -> LoadedModels:
    """:func:`load_model` of each checkpoint; several make an ensemble, which needs one tokenizer
    (the same JSON): checkpoints whose tokenizers differ are a one-line CheckpointError."""
    paths = checkpoint_list(checkpoint)
    if not paths:
        raise CheckpointError("checkpoint=[]: name at least one checkpoint")
    members = [load_model(path, device) for path in paths]
    first = members[0]
    for other in members[1:]:
        if other.tokenizer.to_str() != first.tokenizer.to_str():
            raise CheckpointError(f"{first.path} and {other.path} have different tokenizers: an ensemble needs one")
    model = first.model if len(members) == 1 else Ensemble([member.model for member in members])
    return LoadedModels(model, first.tokenizer, members)
