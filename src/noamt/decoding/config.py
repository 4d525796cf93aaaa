"""The search settings of ``noamt-translate`` and ``noamt-evaluate`` (the ``decoding/`` config group)."""

from __future__ import annotations

from dataclasses import dataclass

from noamt.bounds import at_most, between, in_interval, non_negative

MAX_BEAM_SIZE = 1024
"""The widest beam: the widest searched in studies of the beam's width (Koehn and Knowles 2017
go to 1000); each step scores beam_size * vocabulary candidates per sentence, so a wider beam
mostly fills memory."""
MAX_OUTPUT_LENGTH = 65_536
"""The largest max_len_a, max_len_b and min_len: the output limit is at most max_positions - 1
(model.max_positions <= 65536), so larger values change nothing, and floor(a * |x| + b) stays
an exact integer."""
MAX_LENGTH_PENALTY = 10.0
"""The largest |length_penalty|: |y|^alpha stays a finite, non-zero float for every |y| up to
65536 (the typical alpha is 0.6 to 2)."""


@dataclass
class DecodingConfig:
    """Search settings; ``beam_size=1`` runs greedy search (:mod:`noamt.decoding.search`).

    ``length_penalty`` is alpha in sum log p / |y|^alpha (beam search only). A source of |x|
    tokens may give at most L = min(floor(max_len_a * |x| + max_len_b), max_positions - 1)
    tokens before EOS; ``min_len`` bans EOS before that many tokens (fairseq's ``--min-len``).
    """

    beam_size: int = 5
    """Hypotheses kept at each step; 1 is greedy search (at most 1024)."""
    length_penalty: float = 1.0
    """alpha: finished hypotheses are ranked by sum log p / |y|^alpha (0 ranks by sum log p; in [-10, 10])."""
    max_len_a: float = 1.2
    """a in the output limit floor(a * |x| + b) (0 to 65536)."""
    max_len_b: int = 10
    """b in the output limit floor(a * |x| + b) (0 to 65536)."""
    min_len: int = 0
    """EOS is banned before this many output tokens (0 to 65536)."""

    def __post_init__(self) -> None:
        """Settings that cannot produce a translation are a one-line ValueError naming the key."""
        between("decoding.beam_size", self.beam_size, 1, MAX_BEAM_SIZE)
        in_interval("decoding.length_penalty", self.length_penalty, -MAX_LENGTH_PENALTY, MAX_LENGTH_PENALTY)
        non_negative("decoding.max_len_a", self.max_len_a)
        at_most("decoding.max_len_a", self.max_len_a, MAX_OUTPUT_LENGTH)
        between("decoding.max_len_b", self.max_len_b, 0, MAX_OUTPUT_LENGTH)
        between("decoding.min_len", self.min_len, 0, MAX_OUTPUT_LENGTH)
        if self.max_len_a == 0 and self.max_len_b == 0:
            raise ValueError("decoding.max_len_a=0 and decoding.max_len_b=0 allow no output token: raise one of them")


GREEDY = DecodingConfig(beam_size=1)  # what validation BLEU decodes with
