"""Validation BLEU, the score training watches: the model's greedy translations of the
validation batches against their references, with sacreBLEU. The BLEU metric and the check of
one hypothesis per reference are shared with the evaluation's scores (:mod:`noamt.evaluation`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sacrebleu.metrics import BLEU

from noamt.data import Batch, Tokenizer
from noamt.decoding import GREEDY, DecodingConfig, translate_batches
from noamt.model import Transformer


def bleu_metric(tokenize: str) -> BLEU:
    """sacreBLEU's BLEU; tokenized input (``tokenize="none"``) is declared, so no warning about it."""
    return BLEU(tokenize=tokenize, force=tokenize == "none")


def check_lengths(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    """One hypothesis per reference, and at least one reference; else a ValueError saying which."""
    if not references:
        raise ValueError("no references to score against")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"need one hypothesis per reference: got {len(hypotheses)} hypotheses and {len(references)} references"
        )


def validation_bleu(
    model: Transformer,
    batches: Iterable[Batch],
    tokenizer: Tokenizer,
    references: Sequence[str],
    tokenize: str = "13a",
    decoding: DecodingConfig = GREEDY,
) -> tuple[float, list[str]]:
    """sacreBLEU of the translations of ``batches`` (greedy unless ``decoding`` says otherwise)
    against ``references`` (in split order), with sacreBLEU's ``tokenize`` ("none" for text that
    is tokenized already).

    ``batches`` must cover the whole split once (rewind a TokenBudgetBatches first); the model
    is put in eval mode for the search and its train/eval mode restored afterwards.
    """
    hyps = translate_batches(model, batches, tokenizer, decoding)
    check_lengths(hyps, references)
    return float(bleu_metric(tokenize).corpus_score(hyps, [list(references)]).score), hyps
