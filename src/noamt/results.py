"""``results.json`` of an evaluation: its contents as TypedDicts, the writer and the reader.

``noamt-evaluate`` (:func:`noamt.evaluation.evaluate_checkpoint`) writes one per evaluated
checkpoint, beside the hypothesis files; the schedule comparison reads it back to decide whether
a run must be evaluated again and to build its report. Both go through this module.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TypedDict

from noamt.io import write_atomic

RESULTS_FILE = "results.json"


class TokenizedBleu(TypedDict):
    """BLEU on whitespace tokens against Multi30k's tokenized references (``multi-bleu.perl``)."""

    score: float
    label: str  # which of the two tokenized BLEUs: hypotheses Moses-tokenized, or scored as given
    signature: str
    bp: float  # brevity penalty
    ratio: float  # hypothesis length / reference length, in tokens
    precisions: list[float]  # clipped 1- to 4-gram precisions, in percent


class CorpusScores(TypedDict):
    """sacreBLEU's corpus BLEU, chrF and TER of a split, with their signatures."""

    bleu: float
    chrf: float
    ter: float
    signatures: dict[str, str]  # metric name ("bleu", "chrf", "ter") -> sacreBLEU signature


class _SplitScores(CorpusScores):
    n_sentences: int


class Likelihood(TypedDict):
    """The teacher-forced negative log-likelihood of a split's references (:mod:`noamt.likelihood`):
    sum over its sentences of -sum_t ln p(y_t | y_<t, x), y the reference's tokens and EOS."""

    nll_per_token: float  # nats: the summed NLL / tokens
    perplexity: float  # exp(nll_per_token)
    tokens: int  # target tokens scored: each reference's BPE tokens and its EOS
    file: str  # the per-sentence NLL and token counts, relative to this file's folder (<split>.nll.tsv)
    label_smoothing: float  # 0.0: plain cross-entropy


class SplitResults(_SplitScores, total=False):
    """The scores of one split: sacreBLEU's BLEU, chrF and TER with their signatures, the
    tokenized BLEU where tokenized references exist, and the references' likelihood under the
    model (absent in older files and with ``likelihood=false``)."""

    tokenized_bleu: TokenizedBleu
    likelihood: Likelihood


class _Evaluation(TypedDict):
    checkpoint: str | list[str]  # the checkpoint file (a list: an ensemble's), relative to this file's folder
    step: int | None | list[int | None]  # its optimizer updates (a list: each ensemble member's)
    data: str  # the data config's name
    src_lang: str
    tgt_lang: str
    tokenized: bool  # the text was lowercased and tokenized already (data.tokenized)
    decoding: dict[str, int | float | bool]  # the DecodingConfig's fields
    splits: dict[str, SplitResults]  # split name ("valid", "test_2016_flickr", ...) -> scores


class EvaluationResults(_Evaluation, total=False):
    """The whole file: what was evaluated, how, and the scores per split; the engine that decoded
    (noamt or ctranslate2) and CTranslate2's compute type (absent in older files)."""

    engine: str
    compute_type: str
    files: dict[str, str]  # the hypothesis and NLL files it belongs to -> their SHA-256 (absent in older files)


class ResultsError(ValueError):
    """A result file of an evaluation (results.json, <split>.nll.tsv) that cannot be read or lacks
    what is needed."""


def dump_results(results: EvaluationResults) -> str:
    """``results`` as the text of results.json."""
    return json.dumps(results, indent=2, ensure_ascii=False) + "\n"


def write_results_json(path: str | os.PathLike, results: EvaluationResults) -> Path:
    """Write ``results`` to ``path`` atomically (:func:`noamt.io.write_atomic`)."""
    return write_atomic(path, dump_results(results))


def read_results_json(path: str | os.PathLike) -> EvaluationResults:
    """The contents of ``path``; a file that is not JSON or lacks a key is a one-line ResultsError."""
    path = Path(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(f"cannot read {path}: {err}") from err
    _require(results, EvaluationResults.__required_keys__, path, "")
    _verify_files(results.get("files", {}), path)
    for split, scores in results["splits"].items():
        _require(scores, SplitResults.__required_keys__, path, f"splits.{split}.")
        if "likelihood" in scores:
            _require(scores["likelihood"], Likelihood.__required_keys__, path, f"splits.{split}.likelihood.")
    return results


def _verify_files(files: object, path: Path) -> None:
    """Each file results.json lists holds what it held when results.json was written."""
    if not isinstance(files, dict):
        raise ResultsError(f"{path}: files is not a JSON object")
    for name, digest in files.items():
        member = path.parent / name
        try:
            data = member.read_bytes()
        except OSError as err:
            raise ResultsError(f"{path} lists {name}, which cannot be read: {err.strerror or err}") from err
        if hashlib.sha256(data).hexdigest() != digest:
            raise ResultsError(f"{member} has changed since {path} was written (its sha256 differs)")


def _require(value: object, required: frozenset[str], path: Path, prefix: str) -> None:
    if not isinstance(value, dict):
        raise ResultsError(f"{path}: {prefix.rstrip('.') or 'the file'} is not a JSON object")
    missing = sorted(prefix + key for key in required if key not in value)
    if missing:
        raise ResultsError(f"{path}: no {', '.join(missing)} (not the results.json of an evaluation)")
