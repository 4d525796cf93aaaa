"""``noamt-export`` as a library call: a checkpoint (file or run directory) written as
``format=release``, ``format=ctranslate2`` or ``format=transformers`` (the writers of
:mod:`noamt.export`) and checked as it is written: the export is built in a temporary folder
beside ``out``, its greedy translations of the check sentences (:mod:`noamt.export.check`) are
compared with noamt's, and only an export that matches is renamed to ``out``. Every folder ends
with its manifest (:mod:`noamt.manifest`), the SHA-256 of each file, which noamt checks before it
loads the folder. An error or an interrupt (Ctrl-C) leaves no ``out`` and removes the temporary
folder. ``ExportConfig`` is its config, checked when it is made."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from noamt.evaluation import default_out_dir
from noamt.export.card import model_card
from noamt.export.check import CHECK_SENTENCES, ExportError, GreedyReference, check_outputs, greedy_reference
from noamt.export.ctranslate2_spec import QUANTIZATIONS, ctranslate2_greedy, write_ctranslate2
from noamt.export.release import write_release
from noamt.export.transformers_folder import transformers_greedy, write_transformers
from noamt.inference import LoadedModel, load_model
from noamt.results import RESULTS_FILE, EvaluationResults, read_results_json

log = logging.getLogger(__name__)

FORMATS = ("release", "ctranslate2", "transformers")


def stored_evaluation(checkpoint: Path) -> EvaluationResults | None:
    """The run's ``eval/results.json`` when it scores this very checkpoint file, else None."""
    path = default_out_dir(checkpoint) / RESULTS_FILE
    if not path.is_file():
        return None
    results = read_results_json(path)
    scored = results["checkpoint"]  # a list for an ensemble
    return results if isinstance(scored, str) and (path.parent / scored).resolve() == checkpoint.resolve() else None


def _export_release(loaded: LoadedModel, folder: Path, reference: GreedyReference, sentences: Sequence[str]) -> None:
    card = model_card(loaded.config, loaded.tokenizer.vocab_size, loaded.step, stored_evaluation(loaded.path))
    write_release(folder, loaded.model, loaded.model.cfg, loaded.tokenizer, loaded.config, loaded.step, card)
    released = load_model(folder)
    stored = released.model.state_dict()
    changed = [name for name, tensor in loaded.model.state_dict().items() if not torch.equal(tensor, stored[name])]
    if changed:
        raise ExportError(f"format=release: weights {changed} differ once read back from {folder}")
    check_outputs(reference, greedy_reference(released.model, released.tokenizer, sentences).outputs, "format=release")


def _export_ctranslate2(
    loaded: LoadedModel, folder: Path, reference: GreedyReference, quantization: str | None
) -> None:
    model, tokenizer = loaded.model, loaded.tokenizer
    if quantization in (None, "float32"):
        write_ctranslate2(model, tokenizer, folder, quantization)
        check_outputs(reference, ctranslate2_greedy(folder, tokenizer, reference), "format=ctranslate2")
        return
    with tempfile.TemporaryDirectory(dir=folder.parent) as exact:  # the conversion itself, unquantized
        write_ctranslate2(model, tokenizer, Path(exact), None, manifest=False)
        check_outputs(reference, ctranslate2_greedy(Path(exact), tokenizer, reference), "format=ctranslate2")
    write_ctranslate2(model, tokenizer, folder, quantization)
    outputs = ctranslate2_greedy(folder, tokenizer, reference)
    same = sum(got == want for got, want in zip(outputs, reference.outputs, strict=True))
    log.info("quantization=%s: %d of %d check sentences translate as with noamt", quantization, same,
             len(outputs))  # fmt: skip


def _export_transformers(loaded: LoadedModel, folder: Path, reference: GreedyReference) -> None:
    write_transformers(loaded.model, loaded.tokenizer, folder)
    check_outputs(reference, transformers_greedy(folder, loaded.model, reference), "format=transformers")


@dataclass
class ExportConfig:
    """Which model, in which format, to which folder: the config of ``noamt-export``."""

    checkpoint: str
    """A checkpoint file or a run directory (its checkpoint_best.pt, else checkpoint_last.pt)."""
    format: str
    """release, ctranslate2 or transformers."""
    out: str
    """The folder to write; it must not exist yet."""
    quantization: str | None = None
    """format=ctranslate2 only: int8, int16 or float32 (null: float32)."""

    def __post_init__(self) -> None:
        """Settings no writer can honour are a one-line ExportError naming the key."""
        if self.format not in FORMATS:
            raise ExportError(f"format={self.format}: choose one of {', '.join(FORMATS)}")
        if self.quantization is not None and self.format != "ctranslate2":
            raise ExportError(f"quantization={self.quantization}: applies to format=ctranslate2 only")
        if self.quantization not in (None, *QUANTIZATIONS):
            raise ExportError(f"quantization={self.quantization}: choose one of {', '.join(QUANTIZATIONS)}")


def export_model(cfg: ExportConfig, *, sentences: Sequence[str] = CHECK_SENTENCES) -> Path:
    """Write ``cfg.checkpoint``'s model to the new folder ``cfg.out`` as ``cfg.format`` and check
    it on ``sentences``; returns ``out``. ``quantization`` (ctranslate2 only: int8, int16,
    float32) stores the weights so; the float32 conversion must match noamt exactly, and how many
    check sentences the quantized model still translates identically is logged."""
    out = Path(cfg.out)
    if out.exists():
        raise ExportError(f"out={out} exists: choose a new folder")
    loaded = load_model(cfg.checkpoint)
    reference = greedy_reference(loaded.model, loaded.tokenizer, sentences)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if cfg.format == "release":
            _export_release(loaded, staging, reference, sentences)
        elif cfg.format == "ctranslate2":
            _export_ctranslate2(loaded, staging, reference, cfg.quantization)
        else:
            _export_transformers(loaded, staging, reference)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s (update %s) as %s to %s; greedy output equals noamt's on %d check sentences",
             loaded.path, loaded.step, cfg.format, out, len(sentences))  # fmt: skip
    return out
