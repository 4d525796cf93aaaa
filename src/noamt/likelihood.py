"""Teacher-forced negative log-likelihood of reference translations, sentence by sentence.

For a source x and its reference y = (y_1, ..., y_T), y_1 .. y_{T-1} the reference's BPE tokens
and y_T the end-of-sentence token, the model reads x + EOS, is fed BOS + y_1 .. y_{T-1}, and
scores

    nll(x, y) = - sum_{t=1..T} ln p(y_t | y_<t, x)        (nats),        tokens(x, y) = T,

the plain cross-entropy the trainer's validation sums (label smoothing 0). A split's figure is
the ratio of its sums, nll_per_token = sum nll / sum tokens, and perplexity = exp(nll_per_token).
For an ensemble (:class:`~noamt.decoding.Ensemble`) p is the members' averaged probability,
p(v) = (1/N) sum_i p_i(v), the distribution its search decodes.

What is counted is what the validation split of training counts (:mod:`noamt.data.batching`):
the tokenizer's ids of each side, the source cut to ``max_src_len`` and the reference to
``max_tgt_len`` tokens (``data.max_src_len`` / ``data.max_tgt_len``) and both to the model's
``max_positions - 1`` (x + EOS and BOS + y must fit), then one EOS per reference. An empty
reference is the EOS alone (T = 1); a blank source is the EOS alone on the encoder side. No
sentence is dropped.

``<split>.nll.tsv`` holds one sentence per line, in split order, after the header ``nll<TAB>tokens``:
nll(x, y) as Python's ``repr`` of the float (it reads back exactly) and T.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from noamt.data import EncodedSplit, TokenBudgetBatches, Tokenizer
from noamt.decoding import Ensemble
from noamt.io import write_atomic
from noamt.model import Transformer
from noamt.results import Likelihood, ResultsError

NLL_HEADER = "nll\ttokens"
CHUNK_ROWS = 1024  # target positions projected at once: at most CHUNK_ROWS x V logits exist
_POSITIVE_INT = re.compile(r"[1-9][0-9]*")


class SentenceNLL(NamedTuple):
    """Per sentence, in input order: nll (n,) float64, -sum_t ln p(y_t | y_<t, x) in nats, and
    tokens (n,) int64, T, the target tokens summed over (the reference's BPE tokens + EOS)."""

    nll: np.ndarray
    tokens: np.ndarray


def nll_file_name(split: str) -> str:
    """``<split>.nll.tsv``: the per-sentence file of ``split``."""
    return f"{split}.nll.tsv"


def encode_pairs(
    tokenizer: Tokenizer,
    sources: Sequence[str],
    references: Sequence[str],
    max_positions: int,
    max_src_len: int | None = None,
    max_tgt_len: int | None = None,
) -> EncodedSplit:
    """The token ids of each pair, cut as the validation split is (``max_src_len``,
    ``max_tgt_len``; None: no limit) and to ``max_positions - 1`` tokens."""
    limit = max_positions - 1
    return EncodedSplit.encode(
        tokenizer,
        sources,
        references,
        max_src_len=limit if max_src_len is None else min(max_src_len, limit),
        max_tgt_len=limit if max_tgt_len is None else min(max_tgt_len, limit),
        truncate=True,
    )


def batch_sentence_nll(
    model: Transformer | Ensemble, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """src (B, S), tgt_in (B, T), tgt_out (B, T) -> per row b, in float64, the sum over the
    positions t where tgt_out is not padding of -ln p(tgt_out[b, t] | tgt_in[b, :t+1], src[b]),
    and (int64) the number of those positions.

    Only those positions are projected (in chunks of :data:`CHUNK_ROWS`); the model's
    ``project`` gives logits (a Transformer) or log-probabilities (an Ensemble), which the
    log-softmax of ``F.cross_entropy`` normalises alike.
    """
    memory, memory_mask = model.encode(src)
    hidden = model.decode(tgt_in, memory, memory_mask)  # (B, T, d)
    keep = tgt_out != model.pad_id  # (B, T)
    chunks = zip(hidden[keep].split(CHUNK_ROWS), tgt_out[keep].split(CHUNK_ROWS), strict=True)
    token_nll = torch.cat([F.cross_entropy(model.project(h).float(), t, reduction="none") for h, t in chunks])
    per_position = torch.zeros(keep.shape, dtype=torch.float64, device=keep.device)
    per_position[keep] = token_nll.double()
    return per_position.sum(dim=1), keep.sum(dim=1)


def sentence_nll(
    model: Transformer | Ensemble,
    tokenizer: Tokenizer,
    sources: Sequence[str],
    references: Sequence[str],
    *,
    max_tokens: int = 4096,
    max_src_len: int | None = None,
    max_tgt_len: int | None = None,
) -> SentenceNLL:
    """nll(x, y) and T of every (source, reference) pair (see the module), in input order.

    The pairs are batched by length (:class:`~noamt.data.TokenBudgetBatches`: B pairs while
    B x max(longest source, longest target) <= ``max_tokens``), which changes no value: padding
    is masked. Runs on
    the device of the model's parameters, in eval mode under ``torch.inference_mode`` (the
    model's train/eval mode is restored afterwards), in the model's dtype unless the caller
    runs it under autocast.
    """
    if len(sources) != len(references):
        raise ValueError(f"need one reference per source: got {len(sources)} sources and {len(references)} references")
    split = encode_pairs(tokenizer, sources, references, model.max_positions, max_src_len, max_tgt_len)
    nll, tokens = np.zeros(len(split), dtype=np.float64), np.zeros(len(split), dtype=np.int64)
    if not len(split):
        return SentenceNLL(nll, tokens)
    batches = TokenBudgetBatches(split, max_tokens, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, shuffle=False)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in batches:
                on_device = batch.to(device)
                sums, counts = batch_sentence_nll(model, on_device.src, on_device.tgt_in, on_device.tgt_out)
                rows = batch.indices.numpy()
                nll[rows], tokens[rows] = sums.cpu().numpy(), counts.cpu().numpy()
    finally:
        model.train(was_training)
    return SentenceNLL(nll, tokens)


def likelihood_summary(scores: SentenceNLL, file: str) -> Likelihood:
    """A split's entry: nll_per_token = sum nll / sum tokens, perplexity = exp(nll_per_token)."""
    tokens = int(scores.tokens.sum())
    nll_per_token = math.fsum(scores.nll.tolist()) / tokens
    return Likelihood(
        nll_per_token=nll_per_token,
        perplexity=math.exp(nll_per_token),
        tokens=tokens,
        file=file,
        label_smoothing=0.0,
    )


def sentence_nll_text(scores: SentenceNLL) -> str:
    """The text of ``<split>.nll.tsv``: the header, then ``repr(nll)<TAB>tokens`` per sentence."""
    rows = (f"{nll!r}\t{tokens}" for nll, tokens in zip(scores.nll.tolist(), scores.tokens.tolist(), strict=True))
    return "\n".join([NLL_HEADER, *rows]) + "\n"


def write_sentence_nll(path: str | os.PathLike, scores: SentenceNLL) -> Path:
    """Write ``scores`` to ``path`` atomically (:func:`noamt.io.write_atomic`, :func:`sentence_nll_text`)."""
    return write_atomic(path, sentence_nll_text(scores))


def read_sentence_nll(path: str | os.PathLike) -> SentenceNLL:
    """The per-sentence scores of a file :func:`write_sentence_nll` wrote. A missing header, a
    line without exactly two tab-separated columns, an nll that is not a finite number >= 0 or
    a token count that is not a positive integer is a one-line ResultsError naming the file
    and the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"cannot read {path}: {err}") from err
    if lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != NLL_HEADER:
        raise ResultsError(f"{path}:1: expected the header {NLL_HEADER!r}, got {lines[0] if lines else ''!r}")
    rows = [_parse_row(line, path, number) for number, line in enumerate(lines[1:], start=2)]
    return SentenceNLL(
        np.array([nll for nll, _ in rows], dtype=np.float64), np.array([tokens for _, tokens in rows], dtype=np.int64)
    )


def _parse_row(line: str, path: Path, number: int) -> tuple[float, int]:
    """(nll, tokens) of line ``number`` of ``path``, checked as :func:`read_sentence_nll` says."""
    fields = line.split("\t")
    if len(fields) != 2:
        raise ResultsError(f"{path}:{number}: expected 2 tab-separated columns (nll, tokens), got {len(fields)}")
    try:
        nll = float(fields[0])
    except ValueError:
        nll = math.nan
    if not (math.isfinite(nll) and nll >= 0.0):
        raise ResultsError(f"{path}:{number}: nll {fields[0]!r} is not a finite number >= 0")
    if not _POSITIVE_INT.fullmatch(fields[1]):
        raise ResultsError(f"{path}:{number}: tokens {fields[1]!r} is not a positive integer")
    return nll, int(fields[1])
