"""The search settings of ``noamt-translate`` and ``noamt-evaluate`` (the ``decoding/`` config group)."""

from __future__ import annotations

from dataclasses import dataclass


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


GREEDY = DecodingConfig(beam_size=1)  # what validation BLEU decodes with


def check_decoding(cfg: DecodingConfig) -> None:
    """Settings that cannot produce a translation are a ValueError naming the key."""
    if cfg.beam_size < 1:
        raise ValueError(f"decoding.beam_size={cfg.beam_size}: must be at least 1")
    if cfg.max_len_a < 0 or cfg.max_len_b < 0:
        raise ValueError(
            f"decoding.max_len_a={cfg.max_len_a}, decoding.max_len_b={cfg.max_len_b}: neither may be negative"
        )
    if cfg.min_len < 0:
        raise ValueError(f"decoding.min_len={cfg.min_len}: must not be negative")
    if cfg.max_len_a == 0 and cfg.max_len_b == 0:
        raise ValueError("decoding.max_len_a=0 and decoding.max_len_b=0 allow no output token: raise one of them")
