"""The decoding engines of ``noamt-translate`` and ``noamt-evaluate`` behind one call: text in,
text out with the same search settings (:class:`~noamt.decoding.DecodingConfig`).

    engine         module                  opens
    noamt          ``noamt.py``            checkpoints, run directories, release folders; several: an ensemble
    ctranslate2    ``ctranslate2.py``      one of those, converted on the fly, or a ``format=ctranslate2`` folder
    transformers   ``transformers.py``     one of those (post-norm), converted in memory, or a
                                           ``format=transformers`` folder

Each module opens its models into an object that meets :class:`Engine`; :data:`OPENERS` names
the opener of each engine. Adding an engine is one module and its entry in :data:`OPENERS`.
The optional packages (ctranslate2, transformers) are imported when a model is opened, not here.
:class:`EngineConfig` holds what the two commands share: the models, the engine, its device,
compute type and search.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from noamt.bounds import at_least
from noamt.decoding import DecodingConfig
from noamt.device import DeviceConfig
from noamt.engines.ctranslate2 import open_ctranslate2_engine
from noamt.engines.noamt import open_noamt_engine
from noamt.engines.transformers import open_transformers_engine
from noamt.inference import LoadedModels, checkpoint_list

DEFAULT_COMPUTE_TYPE = "float32"


class Engine(Protocol):
    """Models opened by one engine, ready to translate."""

    @property
    def compute_type(self) -> str | None:
        """ctranslate2's; None where the device group's precision applies."""

    @property
    def loaded(self) -> LoadedModels | None:
        """The noamt models read from the checkpoints; None for an exported folder."""

    def translate(
        self,
        texts: Sequence[str],
        decoding: DecodingConfig,
        *,
        max_tokens: int = 4096,
        on_batch: Callable[[int], object] | None = None,
    ) -> list[str]:
        """One translation per text, in input order; blank texts give "". Batches hold at most
        ``max_tokens`` source tokens; ``on_batch(n)`` is called as n more texts are done."""
        ...


Opener = Callable[[Sequence[str | os.PathLike], DeviceConfig, str], Engine]  # (paths, device, compute_type)

OPENERS: dict[str, Opener] = {
    "noamt": open_noamt_engine,
    "ctranslate2": open_ctranslate2_engine,
    "transformers": open_transformers_engine,
}
ENGINES = tuple(OPENERS)


@dataclass
class EngineConfig:
    """The models, the engine that decodes them, where and how: what ``noamt-translate``
    (:class:`noamt.translation.TranslateConfig`) and ``noamt-evaluate``
    (:class:`noamt.evaluation.EvaluateConfig`) share. Whether the device supports
    ``compute_type`` is known once the engine is opened (a check across this config and the
    device found: :func:`noamt.engines.ctranslate2.check_compute_type`)."""

    checkpoint: Any
    """A checkpoint file, run directory or release folder, or a list of them (an ensemble, engine=noamt
    only); ctranslate2 and transformers also read the folder noamt-export wrote for them."""
    engine: str = "noamt"
    """noamt, ctranslate2 or transformers."""
    compute_type: str = DEFAULT_COMPUTE_TYPE
    """engine=ctranslate2 only: float32, int8, int16, float16, ... as the device supports."""
    max_tokens: int = 4096
    """Source tokens per batch, padding included."""
    device: DeviceConfig = field(default_factory=DeviceConfig)
    """The device/ config group."""
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    """The decoding/ config group."""

    def __post_init__(self) -> None:
        """Settings the engine cannot honour are a one-line ValueError naming the key."""
        if self.engine not in OPENERS:
            raise ValueError(f"engine={self.engine}: choose one of {', '.join(ENGINES)}")
        if self.engine != "ctranslate2" and self.compute_type != DEFAULT_COMPUTE_TYPE:
            raise ValueError(f"compute_type={self.compute_type}: applies to engine=ctranslate2 only "
                             f"({self.engine}: device.precision)")  # fmt: skip
        n_checkpoints = len(checkpoint_list(self.checkpoint))
        if self.engine != "noamt" and n_checkpoints > 1:
            raise ValueError(f"engine={self.engine} decodes one model, checkpoint= names {n_checkpoints}: "
                             "ensembles decode with engine=noamt")  # fmt: skip
        at_least("max_tokens", self.max_tokens, 1)


def open_engine(cfg: EngineConfig) -> Engine:
    """The models of ``cfg.checkpoint`` (one path, or a list of them: an ensemble) ready to
    translate with ``cfg.engine``.

    noamt: a checkpoint, run directory or release folder, or a list of them, on the device
    group's device and precision. ctranslate2: one of those, converted on the fly, or a folder
    that ``noamt-export format=ctranslate2`` wrote, in ``compute_type``. transformers: one of
    those (a post-norm model) converted in memory, or a folder that ``noamt-export
    format=transformers`` wrote, on the device group's device and precision.
    """
    return OPENERS[cfg.engine](checkpoint_list(cfg.checkpoint), cfg.device, cfg.compute_type)
