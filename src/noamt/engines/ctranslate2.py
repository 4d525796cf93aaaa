"""Translating through CTranslate2 (``engine=ctranslate2``): noamt's search settings mapped onto
``ctranslate2.Translator.translate_batch`` with the same meaning.

    noamt (DecodingConfig)       translate_batch
    beam_size K                  beam_size=K (1: greedy search), patience 1
    length_penalty alpha         length_penalty=alpha, return_end_token=True: finished hypotheses
                                 rank by sum log p / |y|^alpha with |y| counting the EOS, as in
                                 noamt (without the returned EOS CTranslate2 would not count it)
    L = min(floor(a |x| + b),    max_decoding_length=L, one translate_batch call per group of
        max_positions - 1)       sentences with the same L (|x| counts the source's EOS)
    min_len                      min_decoding_length=min_len
    truncation to                sources truncated before the call, as noamt truncates them;
        max_positions - 1        max_input_length=0 (CTranslate2 truncates nothing more)
    max_tokens                   max_batch_size=max_tokens, batch_type="tokens"

What differs. A hypothesis that reaches L tokens without EOS: noamt forces EOS at step L and
scores sum log p including log p(EOS) over L + 1 tokens; CTranslate2 ends it after its L-th
token, without that term, over L tokens. Greedy output is the same either way (the first L
tokens); beam search may rank such a hypothesis differently. CTranslate2 computes in its own
kernels and in ``compute_type`` (float32 by default; int8, int16, float16 ... where the device
supports them), so a near-tie may break the other way.

The model is a folder that ``noamt-export format=ctranslate2`` wrote (model.bin with the
tokenizer.json and noamt.json it writes beside it), verified against its manifest
(:mod:`noamt.manifest`) before CTranslate2 reads it, or a noamt model converted on the fly by the
same writer (:mod:`noamt.export.ctranslate2_spec`) into a temporary folder.

The module bears the name of the package it drives; imports being absolute, ``import
ctranslate2`` (:func:`noamt.export.ctranslate2_spec.import_ctranslate2`) finds that package, and
only when a translator is made.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from noamt.checkpoint import CheckpointError
from noamt.data import EOS, Tokenizer
from noamt.decoding import DecodingConfig
from noamt.decoding.search import output_limits
from noamt.decoding.text import translate_nonblank
from noamt.device import DeviceConfig, resolve_device
from noamt.export.ctranslate2_spec import (
    MODEL_FILE,
    import_ctranslate2,
    is_ctranslate2_model,
    read_ctranslate2_folder,
    write_ctranslate2,
)
from noamt.inference import LoadedModels, load_models
from noamt.model import Transformer

log = logging.getLogger(__name__)

ENGINE = "engine=ctranslate2"


@dataclass
class CTranslate2Engine:
    """A loaded CTranslate2 translator and what translating text with it needs."""

    translator: Any  # ctranslate2.Translator
    tokenizer: Tokenizer
    max_positions: int
    compute_type: str
    loaded: LoadedModels | None = None  # the noamt checkpoint it was converted from; None for a folder

    def translate(
        self,
        texts: Sequence[str],
        decoding: DecodingConfig,
        *,
        max_tokens: int = 4096,
        on_batch: Callable[[int], object] | None = None,
    ) -> list[str]:
        """One translation per text, in input order, as :func:`noamt.decoding.translate_texts`
        gives them but searched by CTranslate2 (the mapping is in the module's docstring)."""
        vocabulary = self.tokenizer.vocabulary()
        token_id = {token: i for i, token in enumerate(vocabulary)}

        def translate(src_ids: list[list[int]]) -> list[str]:
            lengths = torch.tensor([len(ids) + 1 for ids in src_ids])  # + the EOS CTranslate2 appends
            limits = output_limits(lengths, self.max_positions, decoding).tolist()
            outputs: list[list[int]] = [[] for _ in src_ids]
            for limit in sorted(set(limits)):
                group = [i for i, sentence_limit in enumerate(limits) if sentence_limit == limit]
                if limit > 0:  # L = 0 allows EOS only: an empty translation
                    results = self.translator.translate_batch(
                        [[vocabulary[t] for t in src_ids[i]] for i in group],
                        beam_size=decoding.beam_size, length_penalty=decoding.length_penalty,
                        max_decoding_length=limit, min_decoding_length=decoding.min_len, max_input_length=0,
                        max_batch_size=max_tokens, batch_type="tokens", return_end_token=True, return_scores=False,
                    )  # fmt: skip
                    for i, result in zip(group, results, strict=True):
                        tokens = result.hypotheses[0]
                        outputs[i] = [token_id[t] for t in (tokens[:-1] if tokens[-1:] == [EOS] else tokens)]
                if on_batch is not None:
                    on_batch(len(group))
            return self.tokenizer.decode_batch(outputs)

        return translate_nonblank(self.tokenizer, texts, self.max_positions, translate, on_batch=on_batch)


def ctranslate2_device(device: DeviceConfig) -> tuple[str, int]:
    """CTranslate2's device ("cpu" or "cuda") and device index for the device group's choice."""
    resolved = resolve_device(device.device)
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device.device={device.device}: {ENGINE} runs on cpu or cuda")
    return resolved.type, resolved.index or 0


def check_compute_type(compute_type: str, device_type: str) -> None:
    """A compute type the device cannot run (``ctranslate2.get_supported_compute_types``) is a
    one-line ValueError listing those it can: a check across two settings, compute_type and the
    device that device.device opens, made once both are known."""
    ctranslate2 = import_ctranslate2(ENGINE)
    try:
        supported = ctranslate2.get_supported_compute_types(device_type)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{ENGINE}: CTranslate2 cannot use device {device_type} ({err})") from err
    if compute_type not in supported:
        raise ValueError(f"compute_type={compute_type}: {device_type} supports {', '.join(sorted(supported))}")


def open_ctranslate2(folder: str | os.PathLike, device: DeviceConfig, compute_type: str) -> CTranslate2Engine:
    """The CTranslate2 model in ``folder`` (written by ``noamt-export format=ctranslate2``) on the
    device group's device, in ``compute_type``, with ``device.num_threads`` threads (0: CTranslate2's
    default); the folder is verified first (:func:`~noamt.export.ctranslate2_spec.read_ctranslate2_folder`:
    its manifest, its config, the vocabulary against the tokenizer)."""
    folder = Path(folder)
    tokenizer, max_positions = read_ctranslate2_folder(folder)
    return _translator(folder, tokenizer, max_positions, device, compute_type)


def _translator(
    folder: Path, tokenizer: Tokenizer, max_positions: int, device: DeviceConfig, compute_type: str
) -> CTranslate2Engine:
    """A ``ctranslate2.Translator`` of ``folder``; a model that CTranslate2 cannot load (a damaged
    ``model.bin``) is a one-line CheckpointError naming the file."""
    device_type, index = ctranslate2_device(device)
    check_compute_type(compute_type, device_type)
    try:
        translator = import_ctranslate2(ENGINE).Translator(
            str(folder), device=device_type, device_index=index, compute_type=compute_type,
            intra_threads=device.num_threads,
        )  # fmt: skip
    except RuntimeError as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{folder / MODEL_FILE}: CTranslate2 cannot load it ({reason})") from err
    return CTranslate2Engine(translator, tokenizer, max_positions, compute_type)


def convert_to_ctranslate2(
    model: Transformer, tokenizer: Tokenizer, device: DeviceConfig, compute_type: str
) -> CTranslate2Engine:
    """``model`` written as a float32 CTranslate2 model into a temporary folder (removed once
    loaded, so written without a manifest) and opened as :func:`open_ctranslate2` does."""
    with tempfile.TemporaryDirectory(prefix="noamt-ctranslate2-") as folder:
        write_ctranslate2(model, tokenizer, Path(folder), None, manifest=False)
        return _translator(Path(folder), tokenizer, model.max_positions, device, compute_type)


def open_ctranslate2_engine(
    paths: Sequence[str | os.PathLike], device: DeviceConfig, compute_type: str
) -> CTranslate2Engine:
    """The one model of ``paths``: a CTranslate2 folder opened as it is, or a checkpoint, run
    directory or release folder converted on the fly (:func:`convert_to_ctranslate2`)."""
    (path,) = paths
    if is_ctranslate2_model(path):
        engine = open_ctranslate2(path, device, compute_type)
        log.info("model: CTranslate2 folder %s", Path(path))
    else:
        loaded = load_models([path], "cpu")
        engine = convert_to_ctranslate2(loaded.members[0].model, loaded.tokenizer, device, compute_type)
        engine.loaded = loaded
        log.info("model: %s (step %s) converted to CTranslate2", loaded.paths[0], loaded.members[0].step)
    log.info("engine: ctranslate2 on %s, compute_type=%s", resolve_device(device.device), compute_type)
    return engine
