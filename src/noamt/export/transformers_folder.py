"""The ``format=transformers`` folder: what ``AutoModelForSeq2SeqLM.from_pretrained(folder)`` and
``AutoTokenizer.from_pretrained(folder)`` load, offline.

    config.json, generation_config.json, model.safetensors   the Marian model (:mod:`noamt.export.marian`)
    tokenizer.json, tokenizer_config.json                    noamt's BPE as a ``PreTrainedTokenizerFast``

The tokenizer appends ``</s>`` to every source, as noamt's batches do, so that
``tokenizer(texts)`` gives the model noamt's ids; ``decode(ids, skip_special_tokens=True)``
drops ``<pad>``, ``<s>`` and ``</s>`` and joins the rest as noamt's detokenization does
(``clean_up_tokenization_spaces`` is off). Unlike noamt's tokenizer, which reads every string as
text, the transformers tokenizer reads a literal ``<pad>``, ``<s>``, ``</s>`` or ``<unk>`` in the
input as that special token.
"""

from __future__ import annotations

import json
from pathlib import Path

import tokenizers
import torch
from tokenizers import processors

from noamt.data import BOS, EOS, PAD, UNK, Tokenizer
from noamt.export.check import ExportError, GreedyReference
from noamt.export.marian import marian_model, marian_permutation, transformers_module
from noamt.io import write_atomic
from noamt.model import Transformer

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


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
