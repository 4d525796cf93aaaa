"""Score translations with sacreBLEU; load a checkpoint, translate splits, write the results.

The headline numbers are sacreBLEU's BLEU, chrF and TER of detokenized, cased hypotheses
against the raw references, each reported with its signature. For comparison with papers that
ran ``multi-bleu.perl`` on Multi30k's official ``{split}.lc.norm.tok.{lang}`` references, a
tokenized BLEU is reported beside them: hypotheses go through the same steps as those
references (lowercase, Moses punctuation normalisation, Moses tokenization with XML escapes)
and BLEU is computed on whitespace tokens, without smoothing, as ``multi-bleu.perl`` does.

A model trained on the tokenized text itself (``data.tokenized=true``) already writes lowercased,
tokenized hypotheses: they are scored as they are, on whitespace tokens, against the tokenized
references, with no second Moses pass (which would escape ``&apos;`` into ``&amp;apos;``).

BLEU = BP * exp(sum_{n=1..4} log(p_n) / 4), p_n the clipped n-gram precision over the corpus,
BP = min(1, exp(1 - r / c)) for reference length r and hypothesis length c.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from sacrebleu.metrics import BLEU, CHRF, TER
from sacremoses import MosesPunctNormalizer, MosesTokenizer

from noamt.checkpoint import BEST, LAST, CheckpointError, load_checkpoint
from noamt.data import Batch, Tokenizer
from noamt.decoding import DecodingConfig, translate_batches, translate_texts
from noamt.model import ModelConfig, Transformer

TOKENIZED_BLEU_LABEL = "BLEU (lc, Moses-tokenized, multi-bleu comparable)"
AS_GIVEN_BLEU_LABEL = "BLEU (lc, tokenized text scored as given, multi-bleu comparable)"


def score(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> dict:
    """Corpus BLEU, chrF and TER (one reference per sentence) and signatures.

    sacreBLEU's defaults, except BLEU's ``tokenize`` ("none" for text that is tokenized already).
    """
    _check_lengths(hypotheses, references)
    metrics = {"bleu": _bleu(tokenize), "chrf": CHRF(), "ter": TER()}
    result: dict = {
        name: float(metric.corpus_score(list(hypotheses), [list(references)]).score) for name, metric in metrics.items()
    }
    result["signatures"] = {name: str(metric.get_signature()) for name, metric in metrics.items()}
    return result


def _bleu(tokenize: str) -> BLEU:
    """sacreBLEU's BLEU; tokenized input (``tokenize="none"``) is declared, so no warning about it."""
    return BLEU(tokenize=tokenize, force=tokenize == "none")


@functools.lru_cache(maxsize=8)
def _moses(lang: str) -> tuple[MosesPunctNormalizer, MosesTokenizer]:
    return MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)


def moses_tokenize(text: str, lang: str) -> str:
    """Lowercase, then ``normalize-punctuation.perl -l lang``, then ``tokenizer.perl -l lang``
    (with ``&``, ``'``, ``"`` ... escaped as XML entities): the steps of Multi30k's tok refs."""
    normalizer, tokenizer = _moses(lang)
    return tokenizer.tokenize(normalizer.normalize(text.lower()), escape=True, return_str=True)


def tokenized_bleu(
    hypotheses: Sequence[str], tok_references: Sequence[str], lang: str, retokenize: bool = True
) -> dict:
    """BLEU on whitespace tokens, unsmoothed (``multi-bleu.perl``), against tokenized references.

    With ``retokenize`` the hypotheses are first lowercased and Moses-tokenized
    (:func:`moses_tokenize`); without it they are taken as given (already tokenized).
    Returns {"score", "label", "signature", "bp", "ratio", "precisions"}; comparable to
    ``multi-bleu.perl`` numbers only.
    """
    _check_lengths(hypotheses, tok_references)
    metric = BLEU(tokenize="none", smooth_method="none", force=True)
    hyps = [moses_tokenize(h, lang) for h in hypotheses] if retokenize else list(hypotheses)
    result = metric.corpus_score(hyps, [list(tok_references)])
    return {
        "score": float(result.score),
        "label": TOKENIZED_BLEU_LABEL if retokenize else AS_GIVEN_BLEU_LABEL,
        "signature": str(metric.get_signature()),
        "bp": float(result.bp),
        "ratio": float(result.sys_len / result.ref_len) if result.ref_len else 0.0,
        "precisions": [float(p) for p in result.precisions],
    }


def validation_bleu(
    model: Transformer,
    batches: Iterable[Batch],
    tokenizer: Tokenizer,
    references: Sequence[str],
    max_len_a: float = 1.2,
    max_len_b: float = 10,
    tokenize: str = "13a",
) -> tuple[float, list[str]]:
    """sacreBLEU of greedy translations of ``batches`` against ``references`` (in split order),
    with sacreBLEU's ``tokenize`` ("none" for text that is tokenized already).

    ``batches`` must cover the whole split once (rewind a TokenBudgetBatches first); the model
    is put in eval mode for the search and its train/eval mode restored afterwards.
    """
    hyps = translate_batches(model, batches, tokenizer, beam_size=1, max_len_a=max_len_a, max_len_b=max_len_b)
    _check_lengths(hyps, references)
    return float(_bleu(tokenize).corpus_score(hyps, [list(references)]).score), hyps


def _check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if not references:
        raise ValueError("no references to score against")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"need one hypothesis per reference: got {len(hypotheses)} hypotheses and {len(references)} references"
        )


@dataclass
class LoadedModel:
    """A model ready for translation, with what its checkpoint says about it."""

    model: Transformer
    tokenizer: Tokenizer
    config: dict  # the run's resolved config (data, model, ... sections)
    step: int | None
    path: Path


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint file as given; for a run directory (or its ``checkpoints/`` folder),
    ``checkpoint_best.pt``, else ``checkpoint_last.pt``."""
    path = Path(path)
    if not path.is_dir():
        return path
    for folder in (path / "checkpoints", path):
        for name in (BEST, LAST):
            if (folder / name).is_file():
                return folder / name
    raise CheckpointError(f"no {BEST} or {LAST} in {path / 'checkpoints'} or {path}")


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the Transformer and tokenizer stored in a checkpoint (file or run directory)."""
    path = resolve_checkpoint(path)
    state = load_checkpoint(path)
    for key in ("config", "tokenizer"):
        if key not in state:
            raise CheckpointError(f"{path} has no {key!r} entry (expected a checkpoint of noamt-train)")
    try:
        model_cfg = ModelConfig(**state["config"]["model"])
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: config.model is not a ModelConfig ({err})") from err
    tokenizer = Tokenizer.from_str(state["tokenizer"])
    vocab = tokenizer.vocab_size
    model = Transformer(model_cfg, vocab, vocab, pad_id=tokenizer.pad_id)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit config.model ({first})") from err
    model.to(device).eval()
    return LoadedModel(model, tokenizer, state["config"], state.get("step"), path)


def as_line(text: str) -> str:
    """``text`` with line breaks replaced by spaces, so that it fills exactly one output line."""
    return text.replace("\r", " ").replace("\n", " ")


def tokenized_reference_file(data_dir: Path, stem: str, lang: str) -> Path:
    """Where Multi30k keeps the official tokenized references: ``tok/{stem}.lc.norm.tok.{lang}``."""
    return data_dir / "tok" / f"{stem}.lc.norm.tok.{lang}"


def evaluate_split(
    model: Transformer,
    tokenizer: Tokenizer,
    sources: Sequence[str],
    references: Sequence[str],
    decoding: DecodingConfig,
    *,
    tgt_lang: str,
    max_tokens: int = 4096,
    tok_references: Sequence[str] | None = None,
    tokenized: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[list[str], dict]:
    """Translate ``sources`` and score them: (hypotheses, {n_sentences, bleu, chrf, ter,
    signatures[, tokenized_bleu]}).

    Raw text: sacreBLEU on the detokenized text, and a tokenized BLEU when ``tok_references``
    are given. ``tokenized`` text (hypotheses and ``references`` lowercased and tokenized
    already): BLEU without re-tokenization, and the tokenized BLEU scored as given.
    """
    hyps = translate_texts(model, tokenizer, sources, decoding, max_tokens=max_tokens, on_batch=on_batch)
    if tokenized:
        result = {"n_sentences": len(hyps), **score(hyps, references, tokenize="none")}
        result["tokenized_bleu"] = tokenized_bleu(hyps, references, tgt_lang, retokenize=False)
        return hyps, result
    result = {"n_sentences": len(hyps), **score(hyps, references)}
    if tok_references is not None:
        result["tokenized_bleu"] = tokenized_bleu(hyps, tok_references, tgt_lang)
    return hyps, result


def write_results(
    out_dir: str | os.PathLike,
    hypotheses: dict[str, list[str]],
    results: dict[str, dict],
    tgt_lang: str,
    meta: dict,
) -> Path:
    """Write ``<out_dir>/<split>.hyp.<tgt_lang>`` per split and ``results.json``:
    ``{**meta, "splits": results}``. Returns the path of results.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, hyps in hypotheses.items():
        (out_dir / f"{split}.hyp.{tgt_lang}").write_text("".join(as_line(h) + "\n" for h in hyps), encoding="utf-8")
    path = out_dir / "results.json"
    path.write_text(
        json.dumps({**meta, "splits": results}, indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return path


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table (split, n, BLEU, chrF, TER, tok-BLEU) followed by the signatures."""
    width = max(len("split"), *(len(s) for s in results))
    lines = [f"{'split':<{width}}  {'n':>5}  {'BLEU':>6}  {'chrF':>6}  {'TER':>6}  {'tok-BLEU':>8}"]
    signatures: dict[str, str] = {}
    for split, r in results.items():
        tok = r.get("tokenized_bleu")
        tok_text = f"{tok['score']:8.2f}" if tok else f"{'-':>8}"
        lines.append(
            f"{split:<{width}}  {r['n_sentences']:>5}  {r['bleu']:6.2f}  {r['chrf']:6.2f}  {r['ter']:6.2f}  {tok_text}"
        )
        signatures.update(
            {
                "BLEU": r["signatures"]["bleu"],
                "chrF": r["signatures"]["chrf"],
                "TER": r["signatures"]["ter"],
            }
        )
        if tok:
            signatures["tok-BLEU"] = f"{tok['label']}: {tok['signature']}"
    lines += [f"{name}: {signature}" for name, signature in signatures.items()]
    return "\n".join(lines)
