"""Translating with a trained model: the search settings (``config``), the key/value cache of
incremental decoding (``cache``), greedy and beam search (``search``, ``beam``) and text in, text
out (``text``); an ``ensemble`` of models searched as one."""

from noamt.decoding.beam import beam_search
from noamt.decoding.cache import DecoderCache
from noamt.decoding.config import GREEDY, DecodingConfig
from noamt.decoding.ensemble import Ensemble
from noamt.decoding.search import greedy_search, max_output_lengths
from noamt.decoding.text import search_batch, translate_batches, translate_texts

__all__ = [
    "GREEDY",
    "DecoderCache",
    "DecodingConfig",
    "Ensemble",
    "beam_search",
    "greedy_search",
    "max_output_lengths",
    "search_batch",
    "translate_batches",
    "translate_texts",
]
