"""A tiny Transformer and random token ids, for the model and cache tests."""

from __future__ import annotations

import torch

from noamt.model import ModelConfig, Transformer

PAD = 0
VOCAB = 50


def tiny_model(pre_norm: bool = False, **overrides) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(
        name="test",
        encoder_layers=2,
        decoder_layers=2,
        d_model=32,
        n_heads=4,
        d_ff=64,
        dropout=0.1,
        pre_norm=pre_norm,
        max_positions=64,
        **overrides,
    )
    return Transformer(cfg, VOCAB, VOCAB, pad_id=PAD).eval()


def random_tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(4, VOCAB, (batch, length), generator=g)
