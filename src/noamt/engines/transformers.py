"""Translating through HF transformers (``engine=transformers``): the model as transformers'
``MarianMTModel`` (:mod:`noamt.export.marian`), searched by ``generate`` with noamt's settings
mapped to the same meaning.

    noamt (DecodingConfig)       generate
    beam_size K                  num_beams=K (1: greedy search), do_sample=False,
                                 early_stopping=True (stop once K hypotheses are finished)
    length_penalty alpha         length_penalty=alpha: finished hypotheses rank by
                                 sum log p / |y|^alpha with |y| counting the EOS, as in noamt
    L = min(floor(a |x| + b),    max_length=L + 2 (the start token, L tokens, EOS) with EOS
        max_positions - 1)       forced at the last position (``forced_eos_token_id``); one
                                 ``generate`` call per group of sentences with the same L
    min_len                      min_length=min_len + 1 (``generate`` counts the start token)
    PAD and BOS never emitted    ``suppress_tokens`` of the exported generation config
    max_tokens                   batches of sentences of one L, sorted by length, of at most
                                 max_tokens source tokens, padding included

Greedy output is noamt's exactly (float rounding of near-ties aside). Beam search keeps the
same candidates and stopping rule but its own bookkeeping, so a near-tie may break the other way.

The model is a post-norm noamt model converted in memory, or a folder that ``noamt-export
format=transformers`` wrote, verified against its manifest (:mod:`noamt.manifest`) and its config
checked before ``AutoModelForSeq2SeqLM`` loads it from ``model.safetensors`` (never from a pickle
file); noamt's tokenizer reads its ``tokenizer.json``.

The module bears the name of the package it drives; imports being absolute, ``import
transformers`` (:func:`noamt.export.marian.transformers_module`) finds that package, and only
when a model is made.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from noamt.checkpoint import CheckpointError, require_finite_weights
from noamt.data import Tokenizer
from noamt.decoding import DecodingConfig
from noamt.decoding.search import output_limits
from noamt.decoding.text import translate_nonblank
from noamt.device import DeviceConfig, device_manager
from noamt.export.marian import marian_model, transformers_module
from noamt.export.transformers_folder import CONFIG_FILE, WEIGHTS_FILE, read_transformers_folder
from noamt.inference import LoadedModels, load_models
from noamt.model import Transformer

log = logging.getLogger(__name__)


@dataclass
class TransformersEngine:
    """A ``MarianMTModel`` (eval mode, on its device) and what translating text with it needs."""

    marian: Any  # transformers.MarianMTModel
    tokenizer: Tokenizer
    max_positions: int
    loaded: LoadedModels | None = None  # the noamt checkpoint it was converted from; None for a folder
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext  # device.precision's
    compute_type = None  # device.precision applies

    def translate(
        self,
        texts: Sequence[str],
        decoding: DecodingConfig,
        *,
        max_tokens: int = 4096,
        on_batch: Callable[[int], object] | None = None,
    ) -> list[str]:
        """One translation per text, in input order, as :func:`noamt.decoding.translate_texts`
        gives them but searched by ``generate`` under ``autocast`` (the mapping is in the
        module's docstring)."""
        tok = self.tokenizer
        device = next(self.marian.parameters()).device

        def search(rows: list[list[int]], limit: int) -> list[list[int]]:
            width = max(len(row) for row in rows)
            src = torch.tensor([row + [tok.pad_id] * (width - len(row)) for row in rows], device=device)
            beam = {"early_stopping": True, "length_penalty": decoding.length_penalty} if decoding.beam_size > 1 else {}
            generated = self.marian.generate(
                input_ids=src, attention_mask=src != tok.pad_id, do_sample=False, num_beams=decoding.beam_size,
                num_return_sequences=1, max_length=limit + 2, min_length=decoding.min_len + 1, **beam,
            )  # fmt: skip
            outputs = []
            for row in generated[:, 1:].tolist():
                body = row[: row.index(tok.eos_id)] if tok.eos_id in row else row
                outputs.append([t for t in body if t != tok.pad_id])
            return outputs

        def translate(src_ids: list[list[int]]) -> list[str]:
            rows = [ids + [tok.eos_id] for ids in src_ids]
            lengths = [len(row) for row in rows]
            limits = output_limits(torch.tensor(lengths), self.max_positions, decoding).tolist()
            outputs: list[list[int]] = [[] for _ in rows]
            with torch.inference_mode():
                for limit in sorted(set(limits)):
                    group = [i for i, sentence_limit in enumerate(limits) if sentence_limit == limit]
                    for chunk in token_budget_chunks(group, lengths, max_tokens):
                        if limit > 0:  # L = 0 allows EOS only: an empty translation
                            for i, ids in zip(chunk, search([rows[i] for i in chunk], limit), strict=True):
                                outputs[i] = ids
                        if on_batch is not None:
                            on_batch(len(chunk))
            return tok.decode_batch(outputs)

        with self.autocast():
            return translate_nonblank(tok, texts, self.max_positions, translate, on_batch=on_batch)


def is_transformers_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a transformers model: a ``config.json`` naming a
    ``model_type`` (a ``format=release`` folder's ``config.json`` names none)."""
    try:
        return "model_type" in json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def open_transformers(folder: str | os.PathLike, device: torch.device) -> TransformersEngine:
    """The model that ``noamt-export format=transformers`` wrote into ``folder``, on ``device``.
    The folder is verified first (:func:`~noamt.export.transformers_folder.read_transformers_folder`:
    its manifest, no pickle weights, the config's sizes and vocabulary); transformers then reads
    ``model.safetensors`` only, and every weight must be finite. A model transformers cannot load
    is a one-line CheckpointError naming the folder."""
    folder = Path(folder)
    config, tokenizer = read_transformers_folder(folder)
    auto = transformers_module().AutoModelForSeq2SeqLM
    try:
        marian = auto.from_pretrained(folder, use_safetensors=True, trust_remote_code=False).eval()
    except (OSError, RuntimeError, ValueError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{folder}: transformers cannot load the model ({reason})") from err
    require_finite_weights(marian.state_dict(), folder / WEIGHTS_FILE)
    return TransformersEngine(marian.to(device), tokenizer, int(config["max_position_embeddings"]))


PRE_NORM_REFUSAL = (
    "engine=transformers: this model is pre-norm (model.pre_norm=true), which no transformers architecture "
    "matches; decode it with engine=noamt (the default) or engine=ctranslate2"
)


def convert_to_transformers(model: Transformer, tokenizer: Tokenizer, device: torch.device) -> TransformersEngine:
    """``model`` as a ``MarianMTModel`` on ``device``, in memory; a pre-norm model is refused in
    one line (:data:`PRE_NORM_REFUSAL`)."""
    if model.cfg.pre_norm:
        raise ValueError(PRE_NORM_REFUSAL)
    marian = marian_model(model, tokenizer).to(device)
    return TransformersEngine(marian, tokenizer, model.cfg.max_positions)


def token_budget_chunks(indices: Sequence[int], lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """``indices`` sorted by ``lengths`` and cut into chunks whose padded size (rows x longest)
    stays within ``max_tokens``; a chunk holds at least one sentence."""
    chunks: list[list[int]] = []
    chunk: list[int] = []
    for i in sorted(indices, key=lambda i: lengths[i]):
        if chunk and (len(chunk) + 1) * lengths[i] > max_tokens:
            chunks.append(chunk)
            chunk = []
        chunk.append(i)
    return chunks + [chunk] if chunk else chunks


def open_transformers_engine(
    paths: Sequence[str | os.PathLike], device: DeviceConfig, compute_type: str
) -> TransformersEngine:
    """The one model of ``paths`` on the device group's device and precision: a transformers
    folder opened as it is, or a checkpoint, run directory or release folder of a post-norm model
    converted in memory (:func:`convert_to_transformers`)."""
    (path,) = paths
    transformers_module("engine=transformers")  # its absence: one line naming the extra
    dm = device_manager(device)
    if is_transformers_model(path):
        engine = open_transformers(path, dm.device)
        log.info("model: transformers folder %s", Path(path))
    else:
        loaded = load_models([path], dm.device)
        engine = convert_to_transformers(loaded.members[0].model, loaded.tokenizer, dm.device)
        engine.loaded = loaded
        log.info("model: %s (step %s) converted to transformers' Marian", loaded.paths[0], loaded.members[0].step)
    log.info("engine: transformers generate on %s", dm.describe())
    engine.autocast = dm.autocast
    return engine
