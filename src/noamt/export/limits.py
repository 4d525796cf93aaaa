"""What keeps a damaged or crafted config of an exported folder from building a model without
end: checks made before a model is built from it.

- The weights: a Transformer of a config's sizes has at least :func:`least_weights` weights (its
  embeddings, and the attention and feed-forward matrices of each layer). A config that gives
  more than its weights file holds is refused, so the sizes of the model built are bounded by
  the file itself, whatever the config says (``d_model``, ``d_ff``, the layers).
- The positions, which no file holds (the sinusoid table is computed): ``max_positions`` at most
  :data:`MAX_POSITIONS` (65,536), as ModelConfig allows for training.
- The types the sizes must have: each an integer >= 1 (:func:`size`).
"""

from __future__ import annotations

from typing import Any

from noamt.bounds import is_integer, require
from noamt.model import MAX_WIDTH, ModelConfig

MAX_POSITIONS = MAX_WIDTH  # the bound ModelConfig sets on max_positions


def size(key: str, value: Any) -> None:
    """``value`` is an integer >= 1; else ValueError ``<key>=<value>: must be ...``."""
    require(key, value, is_integer(value), "an integer")
    require(key, value, value >= 1, "at least 1")


def positions(key: str, value: Any) -> None:
    """``value`` is an integer in [1, :data:`MAX_POSITIONS`]; else ValueError naming ``key``."""
    size(key, value)
    require(key, value, value <= MAX_POSITIONS, f"at most {MAX_POSITIONS}")


def least_weights(
    vocab_size: int, d_model: int, layers: tuple[int, int], d_ff: tuple[int, int], embeddings: int = 1
) -> int:
    """A lower bound on the weights of an encoder-decoder Transformer: ``embeddings`` matrices of
    ``vocab_size`` x ``d_model`` (one when shared), and for the (encoder, decoder) ``layers`` with
    feed-forward widths ``d_ff``: in each encoder layer the four d x d attention projections and
    the two d x d_ff feed-forward matrices, in each decoder layer eight and two. Biases and layer
    norms are left out. A file that holds fewer weights cannot hold this model."""
    d = d_model
    encoder, decoder = 4 * d * d + 2 * d * d_ff[0], 8 * d * d + 2 * d * d_ff[1]
    return embeddings * vocab_size * d + layers[0] * encoder + layers[1] * decoder


def least_model_weights(cfg: ModelConfig, vocab_size: int) -> int:
    """:func:`least_weights` of a noamt Transformer of ``cfg`` over ``vocab_size`` tokens."""
    return least_weights(vocab_size, cfg.d_model, (cfg.encoder_layers, cfg.decoder_layers), (cfg.d_ff, cfg.d_ff),
                         1 if cfg.share_embeddings else 2)  # fmt: skip
