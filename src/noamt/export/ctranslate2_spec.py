"""noamt's Transformer as a CTranslate2 model, filled into CTranslate2's model specification
(``ctranslate2.specs.TransformerSpec``, field names as in CTranslate2 4.x).

    spec field                                      noamt weight (state-dict name)
    encoder.embeddings[0].weight                    src_embed.weight (V, d), scaled by sqrt(d)
    decoder.embeddings.weight                       tgt_embed.weight (V, d), scaled by sqrt(d)
    {encoder,decoder}.position_encodings.encodings  noamt's sinusoid table PE (P, d): sin in the even,
                                                    cos in the odd columns (CTranslate2's built-in
                                                    table puts all sines before all cosines)
    encoder.layer[i].self_attention.linear[0], [1]  encoder.i.self_attn.qkv (3d, d; rows q|k|v), .out
    encoder.layer[i].self_attention.layer_norm      encoder.i.attn_block.norm
    encoder.layer[i].ffn.linear_0, linear_1         encoder.i.ffn.fc1, .fc2
    encoder.layer[i].ffn.layer_norm                 encoder.i.ffn_block.norm
    decoder.layer[i].self_attention ...             decoder.i.self_attn, decoder.i.self_block.norm
    decoder.layer[i].attention.linear[0], [1], [2]  decoder.i.cross_attn.q, .kv (2d, d; rows k|v), .out
    decoder.layer[i].attention.layer_norm           decoder.i.cross_block.norm
    decoder.layer[i].ffn ...                        decoder.i.ffn, decoder.i.ffn_block.norm
    {encoder,decoder}.layer_norm (pre-norm only)    encoder_norm, decoder_norm
    decoder.projection.weight                       tgt_embed.weight (the tied output projection)
    decoder.projection.bias                         0, but -inf at <pad> and <s>

With ``pre_norm=False`` CTranslate2 applies each layer_norm to x + f(x), as noamt's post-norm
does; with ``pre_norm=True`` to the sublayer's input, with a final norm. The projection bias
bans <pad> and <s> from the output, as noamt's search does. The config: tokens ``<s>``, ``</s>``
and ``<unk>`` as in noamt's vocabulary (ids 1-3; ``<pad>`` is id 0 of both vocabularies),
decoding starts from ``<s>`` (noamt's BOS), ``add_source_eos`` appends ``</s>`` to every source as
noamt's batches do, and ``layer_norm_epsilon`` is the model's LayerNorm eps. Beside the model,
``tokenizer.json`` and ``noamt.json`` (max_positions) let ``engine=ctranslate2`` translate text with it,
and ``noamt-manifest.json`` (:mod:`noamt.manifest`) lists the SHA-256 of every file, checked
before the folder is read.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import cast

import torch
from torch import nn

from noamt.checkpoint import CheckpointError
from noamt.data import BOS, EOS, UNK, Tokenizer
from noamt.export.check import ExportError, GreedyReference
from noamt.export.limits import positions
from noamt.export.release import tied_names
from noamt.io import write_atomic
from noamt.manifest import verify_folder, write_manifest
from noamt.model import Transformer
from noamt.run_dir import TOKENIZER_FILE

QUANTIZATIONS = ("int8", "int16", "float32")
NOAMT_FILE = "noamt.json"  # what noamt needs beside the model: {"max_positions": P}
MODEL_FILE, CONFIG_FILE, VOCABULARY_FILE = "model.bin", "config.json", "shared_vocabulary.json"  # CTranslate2's
NOAMT_CONFIG = {  # CTranslate2's config.json as noamt's search needs it
    "add_source_eos": True,
    "bos_token": BOS,
    "eos_token": EOS,
    "unk_token": UNK,
    "decoder_start_token": BOS,
}


def import_ctranslate2(what: str = "format=ctranslate2"):
    """The ctranslate2 module; its absence is a one-line ExportError saying that ``what`` needs it."""
    try:
        import ctranslate2
    except ImportError as err:
        raise ExportError(f"{what} needs the ctranslate2 package: pip install 'noamt[export]'") from err
    return ctranslate2


class _Weights:
    """The model's state dict as float32 arrays, recording which entries were placed. Each array
    is a copy: the spec quantizes its arrays in place, which must not reach the model's weights."""

    def __init__(self, model: Transformer):
        self.state = model.state_dict()
        self.placed: set[str] = set(tied_names(self.state))  # a tied name is placed with its first name

    def __call__(self, name: str):
        self.placed.add(name)
        return self.state[name].detach().cpu().float().numpy().copy()

    def linear(self, spec, name: str) -> None:
        spec.weight, spec.bias = self(f"{name}.weight"), self(f"{name}.bias")

    def norm(self, spec, name: str) -> None:
        spec.gamma, spec.beta = self(f"{name}.weight"), self(f"{name}.bias")

    def unplaced(self) -> list[str]:
        return sorted(set(self.state) - self.placed)


def _fill_attention(weights: _Weights, spec, name: str, projections: tuple[str, ...], norm: str) -> None:
    for linear, projection in zip(spec.linear, projections, strict=True):
        weights.linear(linear, f"{name}.{projection}")
    weights.norm(spec.layer_norm, norm)


def _fill_ffn(weights: _Weights, spec, name: str) -> None:
    weights.linear(spec.linear_0, f"{name}.ffn.fc1")
    weights.linear(spec.linear_1, f"{name}.ffn.fc2")
    weights.norm(spec.layer_norm, f"{name}.ffn_block.norm")


def transformer_spec(model: Transformer, tokenizer: Tokenizer):
    """A validated ``ctranslate2.specs.TransformerSpec`` holding ``model``'s weights and vocabulary.

    A weight of the model with no place in the spec is a one-line ExportError naming it.
    """
    specs = import_ctranslate2().specs
    cfg = model.cfg
    spec = specs.TransformerSpec.from_config(
        (cfg.encoder_layers, cfg.decoder_layers), cfg.n_heads, pre_norm=cfg.pre_norm
    )
    weights = _Weights(model)
    positions = model.positions.detach().cpu().float().numpy().copy()  # (P, d)
    spec.encoder.embeddings[0].weight = weights("src_embed.weight")
    spec.encoder.position_encodings.encodings = positions
    spec.decoder.embeddings.weight = weights("tgt_embed.weight")
    spec.decoder.position_encodings.encodings = positions
    for i, layer in enumerate(spec.encoder.layer):
        _fill_attention(weights, layer.self_attention, f"encoder.{i}.self_attn", ("qkv", "out"),
                        f"encoder.{i}.attn_block.norm")  # fmt: skip
        _fill_ffn(weights, layer.ffn, f"encoder.{i}")
    for i, layer in enumerate(spec.decoder.layer):
        _fill_attention(weights, layer.self_attention, f"decoder.{i}.self_attn", ("qkv", "out"),
                        f"decoder.{i}.self_block.norm")  # fmt: skip
        _fill_attention(weights, layer.attention, f"decoder.{i}.cross_attn", ("q", "kv", "out"),
                        f"decoder.{i}.cross_block.norm")  # fmt: skip
        _fill_ffn(weights, layer.ffn, f"decoder.{i}")
    if cfg.pre_norm:
        weights.norm(spec.encoder.layer_norm, "encoder_norm")
        weights.norm(spec.decoder.layer_norm, "decoder_norm")
    spec.decoder.projection.weight = weights("tgt_embed.weight")
    banned = torch.zeros(model.tgt_vocab_size)
    banned[[model.pad_id, tokenizer.bos_id]] = -math.inf
    spec.decoder.projection.bias = banned.numpy()
    unplaced = weights.unplaced()
    if unplaced:
        raise ExportError(f"format=ctranslate2: model weights {unplaced} have no place in a CTranslate2 Transformer")
    vocabulary = tokenizer.vocabulary()
    spec.register_source_vocabulary(vocabulary)
    spec.register_target_vocabulary(vocabulary)
    for key, value in NOAMT_CONFIG.items():  # noamt's special tokens; decode from <s>; </s> after each source
        setattr(spec.config, key, value)
    spec.config.layer_norm_epsilon = next(m.eps for m in model.modules() if isinstance(m, nn.LayerNorm))
    spec.validate()
    return spec


def write_ctranslate2(
    model: Transformer, tokenizer: Tokenizer, folder: Path, quantization: str | None, *, manifest: bool = True
) -> None:
    """Write the CTranslate2 model (``model.bin``, ``config.json``, ``shared_vocabulary.json``)
    into the existing ``folder``, its weights stored as ``quantization`` (one of
    :data:`QUANTIZATIONS`; None: float32), the tokenizer as ``tokenizer.json`` beside it,
    ``noamt.json``: {"max_positions": the longest sequence the model accepts}, and last (unless
    ``manifest`` is false: a folder opened at once and removed) the folder's manifest
    (:func:`noamt.manifest.write_manifest`)."""
    spec = transformer_spec(model, tokenizer)
    spec.optimize(quantization=quantization)
    spec.save(str(folder))
    tokenizer.save(folder / TOKENIZER_FILE)
    write_atomic(folder / NOAMT_FILE, json.dumps({"max_positions": model.max_positions}) + "\n")
    if manifest:
        write_manifest(folder)


def is_ctranslate2_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a CTranslate2 model (``model.bin``)."""
    return (Path(path) / MODEL_FILE).is_file()


def _read_json(path: Path) -> object:
    """The JSON in ``path``; unreadable or malformed (a truncated file) is a one-line CheckpointError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err


def check_ctranslate2_config(path: Path, config: object) -> None:
    """CTranslate2's ``config.json`` must hold the settings :func:`transformer_spec` gives, those
    that make its search noamt's (:data:`NOAMT_CONFIG`: ``</s>`` appended to every source, decoding
    from ``<s>``, noamt's special tokens) and no ``add_source_bos``; else a one-line
    CheckpointError naming the file and the key."""
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: must be a JSON object")
    expected = {**NOAMT_CONFIG, "add_source_bos": False}
    stated = {"add_source_bos": False, **config}  # absent: CTranslate2's default, false
    for key, value in expected.items():
        if stated.get(key) != value or type(stated.get(key)) is not type(value):
            raise CheckpointError(f"{path}: {key}={json.dumps(stated.get(key))}: must be {json.dumps(value)}, "
                                  "as noamt-export format=ctranslate2 writes it")  # fmt: skip


def _max_positions(path: Path) -> int:
    """``noamt.json``'s max_positions: an integer in [1, :data:`~noamt.export.limits.MAX_POSITIONS`]."""
    stated = _read_json(path)
    value = stated.get("max_positions") if isinstance(stated, dict) else None
    try:
        positions("max_positions", value)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    return cast(int, value)


def _check_vocabulary(folder: Path, tokenizer: Tokenizer) -> None:
    """``shared_vocabulary.json`` lists the tokenizer's tokens, in its id order."""
    path = folder / VOCABULARY_FILE
    vocabulary, expected = _read_json(path), tokenizer.vocabulary()
    if not isinstance(vocabulary, list) or len(vocabulary) != len(expected):
        count = len(vocabulary) if isinstance(vocabulary, list) else "no list of"
        raise CheckpointError(f"{path}: {count} tokens but {TOKENIZER_FILE} has {len(expected)}")
    differing = next((i for i, (a, b) in enumerate(zip(vocabulary, expected, strict=True)) if a != b), None)
    if differing is not None:
        raise CheckpointError(f"{path}: token {differing} is {vocabulary[differing]!r} but {TOKENIZER_FILE} "
                              f"has {expected[differing]!r}")  # fmt: skip


def read_ctranslate2_folder(folder: Path) -> tuple[Tokenizer, int]:
    """The tokenizer and max_positions that :func:`write_ctranslate2` stored beside the model,
    the folder verified first: its manifest (:func:`noamt.manifest.verify_folder`; a folder without
    one is read with a warning), CTranslate2's ``config.json`` (:func:`check_ctranslate2_config`),
    ``noamt.json``'s max_positions within bounds, and ``shared_vocabulary.json`` against the
    tokenizer. A folder without a readable tokenizer is a one-line ExportError naming it, anything
    else a one-line CheckpointError naming the file and the key. The weights in ``model.bin``
    are CTranslate2's own format, which it reads without a check of its values: the manifest is
    their guard (an export's weights were finite when written)."""
    verify_folder(folder)
    try:
        tokenizer = Tokenizer.from_file(folder / TOKENIZER_FILE)
    except Exception as err:  # tokenizers raises a bare Exception
        raise ExportError(
            f"{folder}: no readable {TOKENIZER_FILE} and {NOAMT_FILE} beside the CTranslate2 model "
            f"(write it with noamt-export format=ctranslate2): {err}"
        ) from err
    check_ctranslate2_config(folder / CONFIG_FILE, _read_json(folder / CONFIG_FILE))
    max_positions = _max_positions(folder / NOAMT_FILE)
    _check_vocabulary(folder, tokenizer)
    return tokenizer, max_positions


def ctranslate2_greedy(folder: Path, tokenizer: Tokenizer, reference: GreedyReference) -> list[list[int]]:
    """Greedy translations of the reference's sources by the CTranslate2 model in ``folder``, as
    token ids, each with its sentence's length limit."""
    translator = import_ctranslate2().Translator(str(folder), device="cpu", intra_threads=torch.get_num_threads())
    vocabulary = tokenizer.vocabulary()
    token_id = {token: i for i, token in enumerate(vocabulary)}
    outputs = []
    for source, limit in zip(reference.sources, reference.limits, strict=True):
        (result,) = translator.translate_batch(
            [[vocabulary[i] for i in source]],
            beam_size=1,
            max_input_length=0,
            max_decoding_length=limit,
            min_decoding_length=0,
        )
        outputs.append([token_id[token] for token in result.hypotheses[0]])
    return outputs
