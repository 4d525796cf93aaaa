"""Translating with noamt's own search (``engine=noamt``): greedy or beam search
(:mod:`noamt.decoding`) over one model or an ensemble of them, under the device group's autocast."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from noamt.data import Tokenizer
from noamt.decoding import DecodingConfig, Ensemble, translate_texts
from noamt.device import DeviceConfig, device_manager
from noamt.inference import LoadedModels, load_models
from noamt.model import Transformer

log = logging.getLogger(__name__)


@dataclass
class NoamtEngine:
    """A model (or an ensemble) and its tokenizer, searched by :func:`noamt.decoding.translate_texts`."""

    model: Transformer | Ensemble
    tokenizer: Tokenizer
    loaded: LoadedModels | None = None  # the checkpoints the model was read from; None for a model in memory
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # device.precision's
    compute_type = None  # device.precision applies
    between_batches: Callable[[], object] = lambda: None  # the device's thread fitting (DeviceManager.adapt_threads)

    def translate(
        self,
        texts: Sequence[str],
        decoding: DecodingConfig,
        *,
        max_tokens: int = 4096,
        on_batch: Callable[[int], object] | None = None,
    ) -> list[str]:
        """One translation per text, in input order (:func:`noamt.decoding.translate_texts`)."""

        def after_batch(n: int) -> None:
            self.between_batches()
            if on_batch is not None:
                on_batch(n)

        with self.autocast():
            return translate_texts(self.model, self.tokenizer, texts, decoding, max_tokens=max_tokens,
                                   on_batch=after_batch)  # fmt: skip


def open_noamt_engine(paths: Sequence[str | os.PathLike], device: DeviceConfig, compute_type: str) -> NoamtEngine:
    """The models of ``paths`` (checkpoints, run directories or release folders; several: an
    ensemble) on the device group's device and precision."""
    dm = device_manager(device)
    loaded = load_models(paths, dm.device)
    for member in loaded.members:
        log.info("model: %s (step %s) on %s", member.path, member.step, dm.describe())
    return NoamtEngine(loaded.model, loaded.tokenizer, loaded, dm.autocast, dm.adapt_threads)
