"""The decoding engines of ``noamt-translate`` and ``noamt-evaluate`` behind one call: ``noamt``
(this package's greedy and beam search, :mod:`noamt.decoding`; ensembles too), ``ctranslate2``
(CTranslate2, :mod:`noamt.decoding.ctranslate2_engine`) and ``transformers`` (HF transformers'
``generate``, :mod:`noamt.decoding.transformers_engine`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from noamt.decoding import DecodingConfig, translate_texts
from noamt.decoding.ctranslate2_engine import convert_to_ctranslate2, ctranslate2_translate_texts, open_ctranslate2
from noamt.decoding.transformers_engine import (
    convert_to_transformers,
    is_transformers_model,
    open_transformers,
    transformers_translate_texts,
)
from noamt.device import DeviceConfig, DeviceManager, device_manager
from noamt.export.ctranslate2_spec import is_ctranslate2_model
from noamt.inference import LoadedModels, checkpoint_list, load_models

log = logging.getLogger(__name__)

ENGINES = ("noamt", "ctranslate2", "transformers")
DEFAULT_COMPUTE_TYPE = "float32"

TranslateTexts = Callable[..., list[str]]  # (texts, decoding, *, max_tokens, on_batch) -> one translation each


@dataclass
class Engine:
    """Text in, text out with the models of ``checkpoint``."""

    name: str  # one of ENGINES
    compute_type: str | None  # ctranslate2's; None for noamt and transformers (device.precision applies)
    loaded: LoadedModels | None  # the noamt checkpoints; None for a CTranslate2 or transformers folder
    translate_texts: TranslateTexts


def check_engine(engine: str, compute_type: str, n_checkpoints: int) -> None:
    """Settings the engine cannot honour are a one-line ValueError naming the key."""
    if engine not in ENGINES:
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
    """The models of ``checkpoint`` ready to translate with ``engine``.

    noamt: a checkpoint, run directory or release folder, or a list of them (an ensemble), on the
    device group's device and precision. ctranslate2: one of those, converted on the fly, or a
    folder that ``noamt-export format=ctranslate2`` wrote, in ``compute_type``. transformers: one
    of those (a post-norm model) converted in memory, or a folder that ``noamt-export
    format=transformers`` wrote, on the device group's device and precision.
    """
    paths = checkpoint_list(checkpoint)
    check_engine(engine, compute_type, len(paths))
    if engine == "ctranslate2":
        return _open_ctranslate2(paths[0], device, compute_type)
    dm = device_manager(device)
    if engine == "transformers":
        return _open_transformers(paths[0], dm)
    loaded = load_models(paths, dm.device)
    for member in loaded.members:
        log.info("model: %s (step %s) on %s", member.path, member.step, dm.describe())

    def translate(texts, decoding: DecodingConfig, *, max_tokens: int, on_batch=None) -> list[str]:
        with dm.autocast():
            return translate_texts(loaded.model, loaded.tokenizer, texts, decoding, max_tokens=max_tokens,
                                   on_batch=on_batch)  # fmt: skip

    return Engine(engine, None, loaded, translate)


def _open_ctranslate2(path: str | os.PathLike, device: DeviceConfig, compute_type: str) -> Engine:
    if is_ctranslate2_model(path):
        ct2, loaded = open_ctranslate2(path, device, compute_type), None
        log.info("model: CTranslate2 folder %s", Path(path))
    else:
        loaded = load_models([path], "cpu")
        ct2 = convert_to_ctranslate2(loaded.model, loaded.tokenizer, device, compute_type)
        log.info("model: %s (step %s) converted to CTranslate2", loaded.paths[0], loaded.members[0].step)
    log.info("engine: ctranslate2 on %s, compute_type=%s", device.device, compute_type)

    def translate(texts, decoding: DecodingConfig, *, max_tokens: int, on_batch=None) -> list[str]:
        return ctranslate2_translate_texts(ct2, texts, decoding, max_tokens=max_tokens, on_batch=on_batch)

    return Engine("ctranslate2", compute_type, loaded, translate)


def _open_transformers(path: str | os.PathLike, dm: DeviceManager) -> Engine:
    if is_transformers_model(path):
        hf, loaded = open_transformers(path, dm.device), None
        log.info("model: transformers folder %s", Path(path))
    else:
        loaded = load_models([path], dm.device)
        hf = convert_to_transformers(loaded.model, loaded.tokenizer, dm.device)
        log.info("model: %s (step %s) converted to transformers' Marian", loaded.paths[0], loaded.members[0].step)
    log.info("engine: transformers generate on %s", dm.describe())

    def translate(texts, decoding: DecodingConfig, *, max_tokens: int, on_batch=None) -> list[str]:
        with dm.autocast():
            return transformers_translate_texts(hf, texts, decoding, max_tokens=max_tokens, on_batch=on_batch)

    return Engine("transformers", None, loaded, translate)
