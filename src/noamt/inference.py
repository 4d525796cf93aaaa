"""A trained model read back for translation: :func:`load_model` rebuilds it
(:func:`noamt.model.build_model`) from a checkpoint, a run directory or a release folder
(:mod:`noamt.export.release`), :func:`load_models` several of them over one tokenizer as one
ensemble."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from noamt.checkpoint import CheckpointError, load_checkpoint
from noamt.data import Tokenizer
from noamt.decoding import Ensemble
from noamt.export.release import is_release, read_release, tied_names
from noamt.model import ModelConfig, Transformer, build_model
from noamt.run_dir import BEST, CHECKPOINTS, LAST, RunDir


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


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """The Transformer and tokenizer stored in a checkpoint (file or run directory) or a release
    folder, in eval mode."""
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
        try:
            model_cfg = ModelConfig(**state["config"]["model"])
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: config.model is not a ModelConfig ({err})") from err
        tokenizer = Tokenizer.from_str(state["tokenizer"])
        weights, config, step = state["model"], state["config"], state.get("step")
    model = build_model(model_cfg, tokenizer)
    tied = {name: weights[first] for name, first in tied_names(model.state_dict()).items() if first in weights}
    try:
        model.load_state_dict({**weights, **tied})
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit config.model ({first})") from err
    model.to(device).eval()
    return LoadedModel(model, tokenizer, config, step, path)


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
