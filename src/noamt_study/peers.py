"""HF transformers' Marian built with the shape of a noamt model, for side-by-side benchmarks.

Marian (as implemented in HF transformers) is the post-norm encoder-decoder Transformer of
Vaswani et al. with sinusoidal positions and scaled, tied embeddings: noamt's model with
``pre_norm=false`` and ``share_embeddings=true``. Its fixed position tables and its zero logits
bias are not trained, so both models train the same number of parameters. ``transformers`` is
an optional dependency (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from noamt.data import Batch
from noamt.export.marian import marian_config
from noamt.model import ModelConfig


def marian_model(cfg: ModelConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> nn.Module:
    """A randomly initialised ``MarianMTModel`` of the same shape and dropouts as ``cfg``."""
    from transformers import MarianMTModel

    if cfg.pre_norm or not cfg.share_embeddings:
        raise ValueError("Marian is post-norm with shared embeddings: set model.pre_norm=false, share_embeddings=true")
    return MarianMTModel(marian_config(cfg, vocab_size, pad_id, bos_id, eos_id))


def trainable_parameters(model: nn.Module) -> int:
    """Parameters that receive gradients, each shared tensor counted once."""
    seen = {p.data_ptr(): p.numel() for p in model.parameters() if p.requires_grad}
    return sum(seen.values())


def marian_train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch, pad_id: int, label_smoothing: float
) -> torch.Tensor:
    """One update of Marian on ``batch``: label-smoothed cross-entropy summed over the target
    tokens, divided by their count; returns the summed loss (detached)."""
    model.train()
    keep = batch.tgt_out != pad_id  # (B, T)
    logits = model(input_ids=batch.src, attention_mask=batch.src != pad_id, decoder_input_ids=batch.tgt_in).logits
    loss = F.cross_entropy(logits[keep].float(), batch.tgt_out[keep], label_smoothing=label_smoothing, reduction="sum")
    (loss / keep.sum()).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()
