"""Score translations with sacreBLEU; translate a checkpoint's splits and write the results.

``evaluate_checkpoint`` is the whole job of ``noamt-evaluate`` as a library call: its config
(``EvaluateConfig``: the checkpoint, engine, decoding settings, splits) in, hypothesis files and
``results.json`` out.

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

Beside the translations' scores, the references' teacher-forced negative log-likelihood under
noamt's model (:mod:`noamt.likelihood`): per sentence in ``<split>.nll.tsv``, per token in
results.json.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF, TER
from sacremoses import MosesPunctNormalizer, MosesTokenizer
from tqdm import tqdm

from noamt.checkpoint import CheckpointError
from noamt.data import DataConfig, DataError, Tokenizer, load_corpus, read_lines, resolve_data_dir
from noamt.decoding import DecodingConfig, Ensemble, translate_texts
from noamt.engines import Engine, EngineConfig, open_engine
from noamt.evaluation_output import output_lock, write_evaluation
from noamt.inference import LoadedModel, checkpoint_list
from noamt.likelihood import SentenceNLL, likelihood_summary, nll_file_name, sentence_nll, sentence_nll_text
from noamt.model import Transformer
from noamt.results import CorpusScores, EvaluationResults, SplitResults, TokenizedBleu
from noamt.run_dir import EVAL_DIR, RunDir
from noamt.validation import bleu_metric, check_lengths

TOKENIZED_BLEU_LABEL = "BLEU (lc, Moses-tokenized, multi-bleu comparable)"
AS_GIVEN_BLEU_LABEL = "BLEU (lc, tokenized text scored as given, multi-bleu comparable)"


def score(hypotheses: Sequence[str], references: Sequence[str], tokenize: str = "13a") -> CorpusScores:
    """Corpus BLEU, chrF and TER (one reference per sentence) and their signatures.

    sacreBLEU's defaults, except BLEU's ``tokenize`` ("none" for text that is tokenized already).
    """
    check_lengths(hypotheses, references)
    metrics = {"bleu": bleu_metric(tokenize), "chrf": CHRF(), "ter": TER()}
    values = {
        name: float(metric.corpus_score(list(hypotheses), [list(references)]).score) for name, metric in metrics.items()
    }
    signatures = {name: str(metric.get_signature()) for name, metric in metrics.items()}
    return CorpusScores(bleu=values["bleu"], chrf=values["chrf"], ter=values["ter"], signatures=signatures)


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
) -> TokenizedBleu:
    """BLEU on whitespace tokens, unsmoothed (``multi-bleu.perl``), against tokenized references.

    With ``retokenize`` the hypotheses are first lowercased and Moses-tokenized
    (:func:`moses_tokenize`); without it they are taken as given (already tokenized).
    Comparable to ``multi-bleu.perl`` numbers only.
    """
    check_lengths(hypotheses, tok_references)
    metric = BLEU(tokenize="none", smooth_method="none", force=True)
    hyps = [moses_tokenize(h, lang) for h in hypotheses] if retokenize else list(hypotheses)
    result = metric.corpus_score(hyps, [list(tok_references)])
    return TokenizedBleu(
        score=float(result.score),
        label=TOKENIZED_BLEU_LABEL if retokenize else AS_GIVEN_BLEU_LABEL,
        signature=str(metric.get_signature()),
        bp=float(result.bp),
        ratio=float(result.sys_len / result.ref_len) if result.ref_len else 0.0,
        precisions=[float(p) for p in result.precisions],
    )


def as_line(text: str) -> str:
    """``text`` with line breaks replaced by spaces, so that it fills exactly one output line."""
    return text.replace("\r", " ").replace("\n", " ")


def tokenized_reference_file(data_dir: Path, stem: str, lang: str) -> Path:
    """Where Multi30k keeps the official tokenized references: ``tok/{stem}.lc.norm.tok.{lang}``."""
    return data_dir / "tok" / f"{stem}.lc.norm.tok.{lang}"


def evaluate_split(
    model: Transformer | Ensemble,
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
) -> tuple[list[str], SplitResults]:
    """Translate ``sources`` and score them (:func:`score_split`): (hypotheses, their scores)."""
    hyps = translate_texts(model, tokenizer, sources, decoding, max_tokens=max_tokens, on_batch=on_batch)
    return hyps, score_split(hyps, references, tgt_lang=tgt_lang, tok_references=tok_references, tokenized=tokenized)


def score_split(
    hyps: Sequence[str],
    references: Sequence[str],
    *,
    tgt_lang: str,
    tok_references: Sequence[str] | None = None,
    tokenized: bool = False,
) -> SplitResults:
    """The scores of one split's hypotheses.

    Raw text: sacreBLEU on the detokenized text, and a tokenized BLEU when ``tok_references``
    are given. ``tokenized`` text (hypotheses and ``references`` lowercased and tokenized
    already): BLEU without re-tokenization, and the tokenized BLEU scored as given.
    """
    if tokenized:
        result = SplitResults(n_sentences=len(hyps), **score(hyps, references, tokenize="none"))
        result["tokenized_bleu"] = tokenized_bleu(hyps, references, tgt_lang, retokenize=False)
        return result
    result = SplitResults(n_sentences=len(hyps), **score(hyps, references))
    if tok_references is not None:
        result["tokenized_bleu"] = tokenized_bleu(hyps, tok_references, tgt_lang)
    return result


def write_results(
    out_dir: str | os.PathLike,
    hypotheses: dict[str, list[str]],
    results: EvaluationResults,
    nll: dict[str, SentenceNLL] | None = None,
) -> Path:
    """Write ``<out_dir>/<split>.hyp.<tgt_lang>`` per split, ``<split>.nll.tsv`` per split of
    ``nll`` (:func:`noamt.likelihood.sentence_nll_text`) and ``results.json``, which lists them
    with their SHA-256, as one unit that replaces the folder's previous evaluation
    (:func:`noamt.evaluation_output.write_evaluation`); returns the path of results.json."""
    files = {
        f"{split}.hyp.{results['tgt_lang']}": "".join(as_line(h) + "\n" for h in hyps).encode("utf-8")
        for split, hyps in hypotheses.items()
    }
    for split, scores in (nll or {}).items():
        files[nll_file_name(split)] = sentence_nll_text(scores).encode("utf-8")
    return write_evaluation(out_dir, files, results)


EMPTY_SHARE_WARNED = 0.5  # more than this share of empty hypotheses gets a warning


def empty_hypotheses_warning(split: str, hyps: Sequence[str]) -> str | None:
    """One line when more than half of ``hyps`` are empty (a model that has not yet learnt to
    translate, or a run stopped early): its BLEU is near 0 for that reason, not for a bug in scoring."""
    empty = sum(1 for h in hyps if not h.strip())
    if not hyps or empty / len(hyps) <= EMPTY_SHARE_WARNED:
        return None
    return (f"{split}: {empty} of {len(hyps)} hypotheses are empty: the model has not learnt to translate yet "
            "(too few updates?), so its scores are near 0")  # fmt: skip


def format_table(results: dict[str, SplitResults]) -> str:
    """A plain-text table (split, n, BLEU, chrF, TER, tok-BLEU, NLL per reference token)
    followed by the signatures."""
    width = max(len("split"), *(len(s) for s in results))
    lines = [f"{'split':<{width}}  {'n':>5}  {'BLEU':>6}  {'chrF':>6}  {'TER':>6}  {'tok-BLEU':>8}  {'NLL/tok':>7}"]
    signatures: dict[str, str] = {}
    for split, r in results.items():
        tok = r.get("tokenized_bleu")
        tok_text = f"{tok['score']:8.2f}" if tok else f"{'-':>8}"
        likelihood = r.get("likelihood")
        nll_text = f"{likelihood['nll_per_token']:7.4f}" if likelihood else f"{'-':>7}"
        lines.append(
            f"{split:<{width}}  {r['n_sentences']:>5}  {r['bleu']:6.2f}  {r['chrf']:6.2f}  {r['ter']:6.2f}  "
            f"{tok_text}  {nll_text}"
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


# ----------------------------------------------------------------------------- the whole job
log = logging.getLogger(__name__)


def stored_data_config(loaded: LoadedModel, data_dir: str | None) -> DataConfig:
    """The run's data config, reading files from ``data_dir`` when given."""
    try:
        data_cfg = DataConfig(**loaded.config["data"])
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{loaded.path}: config.data is not a DataConfig ({err})") from err
    if data_dir is not None:
        data_cfg = dataclasses.replace(data_cfg, dir=data_dir, source="files")
    return data_cfg


def tokenized_references(data_cfg: DataConfig, split: str) -> list[str] | None:
    """The official lowercased, Moses-tokenized references of ``split``, if the folder has them
    (cut to ``max_eval_examples`` like the split itself)."""
    data_dir = resolve_data_dir(data_cfg)
    if data_dir is None or data_cfg.tokenized or data_cfg.source == "hub":  # tokenized text is its own reference
        return None
    stem = data_cfg.valid_split if split == "valid" else split
    path = tokenized_reference_file(data_dir, stem, data_cfg.tgt_lang)
    return read_lines(path)[: data_cfg.max_eval_examples] if path.is_file() else None


def log_likelihood_model(model: Transformer | Ensemble, n_members: int) -> None:
    """One line: which model scores the references' likelihood, and on which device."""
    device = next(model.parameters()).device
    scorer = f"the ensemble's averaged probabilities ({n_members} models)" if n_members > 1 else "noamt's model"
    log.info("likelihood: teacher-forced NLL of the references under %s on %s, label smoothing 0", scorer, device)


def default_out_dir(checkpoint: Path) -> Path:
    """``<run>/eval`` for ``<run>/checkpoints/<file>`` (:meth:`RunDir.of_checkpoint`),
    ``<folder>/eval`` for a release folder, else ``eval`` beside the checkpoint."""
    if checkpoint.is_dir():
        return checkpoint / EVAL_DIR
    run = RunDir.of_checkpoint(checkpoint)
    return run.eval_dir if run is not None else checkpoint.parent / EVAL_DIR


@dataclass
class EvaluateConfig(EngineConfig):
    """The models and how to search (:class:`~noamt.engines.EngineConfig`), the splits, where
    results go and what is scored beside the translations."""

    splits: list[str] | None = None
    """The splits to score (valid names the validation split; null: the stored data config's test splits)."""
    data_dir: str | None = None
    """Replaces the folder of the data config stored in the checkpoint."""
    out_dir: str | None = None
    """Where the hypotheses and results.json go (null: <run>/eval; an ensemble must name it)."""
    likelihood: bool = True
    """Also score each split's references by teacher forcing (<split>.nll.tsv)."""
    progress: bool = True
    """Show a progress bar per split on stderr."""

    def __post_init__(self) -> None:
        """The engine's checks, then: an ensemble names its out_dir."""
        super().__post_init__()
        if self.out_dir is None and len(checkpoint_list(self.checkpoint)) > 1:
            raise ValueError("out_dir=...: required with more than one checkpoint (an ensemble has no run folder)")


def evaluate_checkpoint(cfg: EvaluateConfig) -> tuple[Path, dict[str, SplitResults]]:
    """Translate ``cfg.splits`` (default: the stored data config's test splits; ``valid`` names
    the validation split) with a checkpoint file, run directory or release folder, or with an
    ensemble of them (a list: :mod:`noamt.decoding.ensemble`), and score them.

    ``cfg.engine`` (noamt, ctranslate2 in ``compute_type``, or transformers) decodes
    (:mod:`noamt.engines`). The data config is the one stored in the (first) checkpoint
    (``data_dir`` replaces its folder). Writes ``<split>.hyp.<tgt_lang>`` and ``results.json``
    to ``out_dir`` (default for one checkpoint: ``<run>/eval``; an ensemble must name it);
    returns the path of results.json and the scores per split. Batches hold at most
    ``max_tokens`` source tokens; ``progress`` shows a bar per split on stderr.

    With ``likelihood``, each split's references are also scored by noamt's model of the same
    checkpoint(s) whatever the engine (an ensemble: by its averaged probabilities), in float32
    on the device that model is on (:mod:`noamt.likelihood`): ``<split>.nll.tsv`` per sentence
    and a ``likelihood`` entry per split in results.json. Splits the stored data config lacks
    are refused here, where the checkpoint is known.
    """
    translator = open_engine(cfg)
    if translator.loaded is None:
        raise ValueError(f"checkpoint={cfg.checkpoint}: an exported folder records no data config; "
                         "evaluate the checkpoint it was exported from")  # fmt: skip
    first = translator.loaded.members[0]
    out = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(first.path)
    with output_lock(out):
        return _evaluate_into(out, translator, cfg)


def _evaluate_into(out: Path, translator: Engine, cfg: EvaluateConfig) -> tuple[Path, dict[str, SplitResults]]:
    """The body of :func:`evaluate_checkpoint`, holding ``out``'s lock."""
    assert translator.loaded is not None  # checked by the caller
    first = translator.loaded.members[0]
    data_cfg = stored_data_config(first, cfg.data_dir)
    splits = list(cfg.splits or data_cfg.test_splits)
    known = ["valid", *data_cfg.test_splits]
    unknown = [s for s in splits if s not in known]
    if unknown:
        raise DataError(f"splits: {unknown} not in data config {data_cfg.name} (has {known})")
    log.info("data: %s, splits %s", data_cfg.name, ", ".join(splits))
    if data_cfg.tokenized:
        log.info(
            "data.tokenized=true: hypotheses are lowercased and tokenized already and are scored as they are "
            "against the tokenized references (BLEU on whitespace tokens, no second Moses pass)"
        )
    corpus = load_corpus(data_cfg, splits=splits)  # only the files of the splits scored
    if cfg.likelihood:
        log_likelihood_model(translator.loaded.model, len(translator.loaded.members))
    hypotheses: dict[str, list[str]] = {}
    scores: dict[str, SplitResults] = {}
    nll: dict[str, SentenceNLL] = {}
    for split in splits:
        with tqdm(total=len(corpus[split]), desc=split, unit="sent", file=sys.stderr, disable=not cfg.progress) as bar:
            hypotheses[split] = translator.translate(
                corpus[split]["src"], cfg.decoding, max_tokens=cfg.max_tokens, on_batch=bar.update
            )
        if (warning := empty_hypotheses_warning(split, hypotheses[split])) is not None:
            log.warning(warning)
        scores[split] = score_split(
            hypotheses[split],
            corpus[split]["tgt"],
            tgt_lang=data_cfg.tgt_lang,
            tok_references=tokenized_references(data_cfg, split),
            tokenized=data_cfg.tokenized,
        )
        if cfg.likelihood:
            nll[split] = sentence_nll(translator.loaded.model, translator.loaded.tokenizer, corpus[split]["src"],
                                      corpus[split]["tgt"], max_tokens=cfg.max_tokens, max_src_len=data_cfg.max_src_len,
                                      max_tgt_len=data_cfg.max_tgt_len)  # fmt: skip
            scores[split]["likelihood"] = likelihood_summary(nll[split], nll_file_name(split))
    checkpoints = [os.path.relpath(path.resolve(), out.resolve()) for path in translator.loaded.paths]
    steps = [member.step for member in translator.loaded.members]
    results = EvaluationResults(
        checkpoint=checkpoints[0] if len(checkpoints) == 1 else checkpoints,
        step=steps[0] if len(steps) == 1 else steps,
        data=data_cfg.name,
        src_lang=data_cfg.src_lang,
        tgt_lang=data_cfg.tgt_lang,
        tokenized=data_cfg.tokenized,
        decoding={f.name: getattr(cfg.decoding, f.name) for f in dataclasses.fields(DecodingConfig)},
        splits=scores,
        engine=cfg.engine,
    )
    if translator.compute_type is not None:
        results["compute_type"] = translator.compute_type
    path = write_results(out, hypotheses, results, nll)
    log.info("wrote %s, %s", path, "the hypotheses and the sentence NLLs" if cfg.likelihood else "the hypotheses")
    return path, scores
