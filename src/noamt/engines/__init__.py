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
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol

from noamt.decoding import DecodingConfig
from noamt.device import DeviceConfig
from noamt.engines.ctranslate2 import open_ctranslate2_engine
from noamt.engines.noamt import open_noamt_engine
from noamt.engines.transformers import open_transformers_engine
from noamt.inference import LoadedModels, checkpoint_list

DEFAULT_COMPUTE_TYPE = "float32"


class Engine(Protocol):
    """Models opened by one engine, ready to translate."""

    compute_type: str | None  # ctranslate2's; None where the device group's precision applies
    loaded: LoadedModels | None  # the noamt models read from the checkpoints; None for an exported folder

    def translate(
        self,
        texts: Sequence[str],
        decoding: DecodingConfig,
        *,
        max_tokens: int = 4096,
        on_batch: Callable[[int], None] | None = None,
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


def check_engine(engine: str, compute_type: str, n_checkpoints: int) -> None:
    """Settings the engine cannot honour are a one-line ValueError naming the key."""
    if engine not in OPENERS:
        raise ValueError(f"engine={engine}: choose one of {', '.join(ENGINES)}")
    if engine != "ctranslate2" and compute_type != DEFAULT_COMPUTE_TYPE:
        raise ValueError(f"compute_type={compute_type}: applies to engine=ctranslate2 only "
                         f"({engine}: device.precision)")  # fmt: skip
    if engine != "noamt" and n_checkpoints > 1:
        raise ValueError(f"engine={engine} decodes one model, checkpoint= names {n_checkpoints}: "
                         "ensembles decode with engine=noamt")  # fmt: skip


def open_engine(
    checkpoint: str | os.PathLike | Sequence[str | os.PathLike],
    engine: str,
    device: DeviceConfig,
    compute_type: str = DEFAULT_COMPUTE_TYPE,
) -> Engine:
    """The models of ``checkpoint`` (one path, or a list of them: an ensemble) ready to translate
    with ``engine``, once :func:`check_engine` accepts the settings.

    noamt: a checkpoint, run directory or release folder, or a list of them, on the device
    group's device and precision. ctranslate2: one of those, converted on the fly, or a folder
    that ``noamt-export format=ctranslate2`` wrote, in ``compute_type``. transformers: one of
    those (a post-norm model) converted in memory, or a folder that ``noamt-export
    format=transformers`` wrote, on the device group's device and precision.
    """
    paths = checkpoint_list(checkpoint)
    check_engine(engine, compute_type, len(paths))
    return OPENERS[engine](paths, device, compute_type)
