"""The search settings of ``noamt-translate`` and ``noamt-evaluate`` (the ``decoding/`` config group)."""

from __future__ import annotations

from dataclasses import dataclass

from noamt.bounds import at_least, is_finite, require


@dataclass
class DecodingConfig:
    """Search settings; ``beam_size=1`` runs greedy search (:mod:`noamt.decoding.search`).

    ``length_penalty`` is alpha in sum log p / |y|^alpha (beam search only). A source of |x|
    tokens may give at most L = min(floor(max_len_a * |x| + max_len_b), max_positions - 1)
    tokens before EOS; ``min_len`` bans EOS before that many tokens (fairseq's ``--min-len``).
    """

    beam_size: int = 5
    """Hypotheses kept at each step; 1 is greedy search."""
    length_penalty: float = 1.0
    """alpha: finished hypotheses are ranked by sum log p / |y|^alpha (0 ranks by sum log p)."""
    max_len_a: float = 1.2
    """a in the output limit floor(a * |x| + b)."""
    max_len_b: int = 10
    """b in the output limit floor(a * |x| + b)."""
    min_len: int = 0
    """EOS is banned before this many output tokens."""

    def __post_init__(self) -> None:
        """Settings that cannot produce a translation are a one-line ValueError naming the key."""
        at_least("decoding.beam_size", self.beam_size, 1)
        require("decoding.length_penalty", self.length_penalty, is_finite(self.length_penalty), "a finite number")
        require("decoding.max_len_a", self.max_len_a, is_finite(self.max_len_a) and self.max_len_a >= 0,
                "a finite number >= 0")  # fmt: skip
        at_least("decoding.max_len_b", self.max_len_b, 0)
        at_least("decoding.min_len", self.min_len, 0)
        if self.max_len_a == 0 and self.max_len_b == 0:
            raise ValueError("decoding.max_len_a=0 and decoding.max_len_b=0 allow no output token: raise one of them")


GREEDY = DecodingConfig(beam_size=1)  # what validation BLEU decodes with
