"""Does an export translate like noamt? noamt's greedy search gives the reference token ids of
each check sentence (one sentence per batch, with the greedy length limit
L = min(floor(1.2 |x| + 10), max_positions - 1), |x| counting the source's EOS); an export is
correct when its greedy search gives the same ids for every sentence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from noamt.data import Tokenizer
from noamt.decoding import GREEDY
from noamt.decoding.search import greedy_search, max_output_lengths
from noamt.model import Transformer

CHECK_SENTENCES = (
    "A man in a blue shirt is standing on a ladder.",
    "Two dogs play in the snow.",
    "Ein Kind sitzt neben dem Fluss.",
    "The 3 musicians wait at 9:45 near the station!",
    "«Quoted» text, commas; and a question?",
    "Über den Bahnhof läuft ein müder Radfahrer.",
    "x",
    "Numbers 1 2 3 4 5 6 7 8 9 10 and letters a b c d e f g",
)


class ExportError(ValueError):
    """An export that cannot be written, or whose output differs from noamt's."""


@dataclass
class GreedyReference:
    """noamt's greedy translations of the check sentences, as token ids."""

    sources: list[list[int]]  # source ids, without the EOS the search appends
    outputs: list[list[int]]  # output ids, without BOS and EOS
    limits: list[int]  # L of each sentence: the most tokens it may emit before EOS


def greedy_reference(model: Transformer, tokenizer: Tokenizer, sentences: Sequence[str]) -> GreedyReference:
    """Greedy search of ``model`` on each sentence (truncated to ``max_positions - 1`` tokens)."""
    sources = [ids[: model.cfg.max_positions - 1] for ids in tokenizer.encode_batch(sentences)]
    outputs, limits = [], []
    for ids in sources:
        src = torch.tensor([[*ids, tokenizer.eos_id]], device=next(model.parameters()).device)  # (1, S)
        limits.append(int(max_output_lengths(src, model.pad_id, model.cfg.max_positions, GREEDY)[0]))
        outputs += greedy_search(model, src, GREEDY, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    return GreedyReference(sources, outputs, limits)


def check_outputs(reference: GreedyReference, outputs: Sequence[Sequence[int]], what: str) -> None:
    """Raise a one-line ExportError naming ``what`` unless ``outputs`` equal the reference's."""
    differing = [i for i, (want, got) in enumerate(zip(reference.outputs, outputs, strict=True)) if list(got) != want]
    if differing:
        first = differing[0]
        raise ExportError(
            f"{what}: greedy output differs from noamt's on {len(differing)} of {len(outputs)} check sentences "
            f"(sentence {first}: noamt {reference.outputs[first]}, export {list(outputs[first])})"
        )
