"""The ``format=transformers`` folder: what ``AutoModelForSeq2SeqLM.from_pretrained(folder)`` and
``AutoTokenizer.from_pretrained(folder)`` load, offline.

    config.json, generation_config.json, model.safetensors   the Marian model (:mod:`noamt.export.marian`)
    tokenizer.json, tokenizer_config.json                    noamt's BPE as a ``PreTrainedTokenizerFast``
    noamt-manifest.json                                      the SHA-256 of each file (:mod:`noamt.manifest`)

The tokenizer appends ``</s>`` to every source, as noamt's batches do, so that
``tokenizer(texts)`` gives the model noamt's ids; ``decode(ids, skip_special_tokens=True)``
drops ``<pad>``, ``<s>`` and ``</s>`` and joins the rest as noamt's detokenization does
(``clean_up_tokenization_spaces`` is off). Unlike noamt's tokenizer, which reads every string as
text, the transformers tokenizer reads a literal ``<pad>``, ``<s>``, ``</s>`` or ``<unk>`` in the
input as that special token.

:func:`read_transformers_folder` verifies a folder before transformers reads it: the manifest,
no pickle weights (``pytorch_model.bin`` and the like, which loading could run code from), the
config's sizes (:mod:`noamt.export.limits`), and its vocabulary size and sizes against the
tokenizer and the weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import safetensors
import tokenizers
import torch
from tokenizers import processors

from noamt.bounds import is_integer
from noamt.checkpoint import CheckpointError
from noamt.data import BOS, EOS, PAD, UNK, Tokenizer
from noamt.export.check import ExportError, GreedyReference
from noamt.export.limits import least_weights, positions, size
from noamt.export.marian import marian_model, marian_permutation, transformers_module
from noamt.io import write_atomic
from noamt.manifest import verify_folder, write_manifest
from noamt.model import Transformer
from noamt.run_dir import TOKENIZER_FILE

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_CONFIG_FILE = "config.json", "model.safetensors", "tokenizer_config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")  # torch.save / pickle files
# config.json's sizes, each an integer >= 1
MARIAN_SIZES = ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "decoder_attention_heads",
                "encoder_ffn_dim", "decoder_ffn_dim")  # fmt: skip
EMBEDDINGS = ("model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight")


def fast_tokenizer(tokenizer: Tokenizer, max_positions: int):
    """``tokenizer`` as a transformers ``PreTrainedTokenizerFast`` that appends ``</s>``."""
    transformers = transformers_module()
    hf = tokenizers.Tokenizer.from_str(tokenizer.to_str())
    hf.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A $B {EOS}", special_tokens=[(EOS, tokenizer.eos_id)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=hf,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=max_positions,
        clean_up_tokenization_spaces=False,
    )


POSITION_TOLERANCE = 1e-4  # rounding: noamt's table is computed in float32, transformers 4's in float64


def check_position_table(table: torch.Tensor, model: Transformer, what: str) -> None:
    """Marian's computed position ``table`` must be noamt's, permuted, up to rounding: noamt
    computes sin(p w_i) in float32, transformers 4 in float64 (|difference| up to 6e-5 at
    position 1,000); a different layout differs by O(1). Else a one-line ExportError naming ``what``."""
    expected = model.positions.cpu()[:, marian_permutation(model.cfg.d_model)]
    if table.shape != expected.shape or not torch.allclose(table, expected, atol=POSITION_TOLERANCE, rtol=0):
        raise ExportError(
            f"format=transformers: the {what} position table is not noamt's (a transformers version whose "
            "Marian lays it out differently)"
        )


def _check_positions(marian, model: Transformer, folder: Path) -> None:
    for part in ("encoder", "decoder"):
        table = getattr(marian.model, part).embed_positions.weight.detach()
        check_position_table(table, model, f"{part} of the model read back from {folder}")


def write_transformers(model: Transformer, tokenizer: Tokenizer, folder: Path) -> None:
    """Write the model and tokenizer into the existing ``folder`` with ``save_pretrained``; the
    tokenizer's class is recorded as ``PreTrainedTokenizerFast``, the name transformers 4 and 5
    both load (5 writes its own name for it, ``TokenizersBackend``)."""
    marian_model(model, tokenizer).save_pretrained(folder, safe_serialization=True)
    fast_tokenizer(tokenizer, model.cfg.max_positions).save_pretrained(folder)
    config_path = folder / TOKENIZER_CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    write_atomic(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    write_manifest(folder)


def _refuse_pickles(folder: Path) -> None:
    """A pickle file among the weights (``pytorch_model.bin``, :data:`PICKLE_SUFFIXES`) is refused
    in one line: unpickling it could run code, and noamt reads ``model.safetensors`` only."""
    pickles = sorted(path.name for path in folder.iterdir() if path.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(f"{folder / pickles[0]}: a pickle file, which loading could run code from: "
                              f"noamt reads a transformers folder's {WEIGHTS_FILE} only")  # fmt: skip


def check_marian_config(path: Path, config: dict[str, Any], vocab_size: int) -> None:
    """The sizes in a Marian ``config.json``: those of :data:`MARIAN_SIZES` integers >= 1,
    ``max_position_embeddings`` at most :data:`~noamt.export.limits.MAX_POSITIONS`, and
    ``vocab_size`` and ``decoder_vocab_size`` the tokenizer's ``vocab_size``; else a one-line
    CheckpointError naming the file and the key."""
    try:
        for key in MARIAN_SIZES:
            size(key, config.get(key))
        positions("max_position_embeddings", config.get("max_position_embeddings"))
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    stated = {"decoder_vocab_size": config.get("vocab_size"), **config}  # absent: Marian takes vocab_size
    for key in ("vocab_size", "decoder_vocab_size"):
        if not is_integer(stated.get(key)) or stated.get(key) != vocab_size:
            raise CheckpointError(f"{path}: {key}={stated.get(key)!r}: must be {vocab_size}, the size of "
                                  f"{TOKENIZER_FILE}'s vocabulary")  # fmt: skip


def _header_shapes(path: Path) -> dict[str, list[int]]:
    """{name: shape} of every tensor in the safetensors file at ``path``, from its header alone."""
    try:
        with safetensors.safe_open(str(path), "pt") as weights:
            return {name: list(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except Exception as err:  # a missing file, a malformed header (safetensors' own error)
        raise CheckpointError(f"cannot read {path}: {err}") from err


def _check_weights_fit(folder: Path, config: dict[str, Any], vocab_size: int) -> None:
    """``model.safetensors`` (its header) fits ``config.json``: its embedding has ``vocab_size``
    rows, and it holds at least the weights the config's sizes give
    (:func:`~noamt.export.limits.least_weights`), so that no larger model is built for it."""
    shapes = _header_shapes(folder / WEIGHTS_FILE)
    for name in EMBEDDINGS:
        if name in shapes and shapes[name][:1] != [vocab_size]:
            raise CheckpointError(f"{folder / CONFIG_FILE}: vocab_size={vocab_size} but {WEIGHTS_FILE} has "
                                  f"{name} of shape {shapes[name]}")  # fmt: skip
    held = sum(math.prod(shape) for shape in shapes.values())
    least = least_weights(vocab_size, config["d_model"], (config["encoder_layers"], config["decoder_layers"]),
                          (config["encoder_ffn_dim"], config["decoder_ffn_dim"]))  # fmt: skip
    if held < least:
        raise CheckpointError(f"{folder / CONFIG_FILE}: the weights do not fit its sizes (they give at least "
                              f"{least} weights, {WEIGHTS_FILE} holds {held})")  # fmt: skip


def read_transformers_folder(folder: Path) -> tuple[dict[str, Any], Tokenizer]:
    """The ``config.json`` and the tokenizer of a folder that :func:`write_transformers` wrote,
    verified before transformers reads it: its manifest (:func:`noamt.manifest.verify_folder`; a
    folder without one is read with a warning), no pickle weights, a Marian ``config.json`` whose
    sizes are within bounds (:func:`check_marian_config`) and fit the weights, the vocabulary size
    the tokenizer's (of ``model.safetensors`` only the header is read here). A folder
    without a readable config and tokenizer, or not a Marian model, is a one-line ExportError
    naming it; anything else a one-line CheckpointError naming the file and the key."""
    verify_folder(folder)
    _refuse_pickles(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(folder / TOKENIZER_FILE)
    except Exception as err:  # OSError, bad JSON; tokenizers raises a bare Exception
        raise ExportError(
            f"{folder}: no readable {CONFIG_FILE} and {TOKENIZER_FILE} (write the folder with "
            f"noamt-export format=transformers): {err}"
        ) from err
    if not isinstance(config, dict) or config.get("model_type") != "marian":
        model_type = config.get("model_type") if isinstance(config, dict) else None
        raise ExportError(f"{folder / CONFIG_FILE}: model_type {model_type!r}; noamt reads the Marian models "
                          "that noamt-export format=transformers writes")  # fmt: skip
    check_marian_config(folder / CONFIG_FILE, config, tokenizer.vocab_size)
    _check_weights_fit(folder, config, tokenizer.vocab_size)
    return config, tokenizer


def transformers_greedy(folder: Path, model: Transformer, reference: GreedyReference) -> list[list[int]]:
    """Greedy translations (``num_beams=1``) of the reference's sources by the model loaded from
    ``folder`` with ``AutoModelForSeq2SeqLM``, as token ids without ``<s>`` and ``</s>``, each
    with its sentence's length limit L (``max_length = L + 2``: the start token, L tokens,
    ``</s>``); its position tables are checked first."""
    transformers = transformers_module()
    marian = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
    _check_positions(marian, model, folder)
    eos = marian.generation_config.eos_token_id
    outputs = []
    with torch.inference_mode():
        for source, limit in zip(reference.sources, reference.limits, strict=True):
            ids = torch.tensor([[*source, eos]])
            (generated,) = marian.generate(ids, num_beams=1, do_sample=False, max_length=limit + 2).tolist()
            body = generated[1:]
            outputs.append(body[: body.index(eos)] if eos in body else body)
    return outputs
