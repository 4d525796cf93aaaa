"""The optimizer: Adam (or AdamW), its learning rate set by the schedule before every update."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OptimConfig:
    """Adam (Kingma and Ba 2015) as in Vaswani et al.: betas (0.9, 0.98), eps 1e-9."""

    name: str = "adam"
    """adam or adamw (decoupled weight decay)."""
    betas: tuple[float, float] = (0.9, 0.98)
    """Decay rates of the first and second moment estimates."""
    eps: float = 1e-9
    """Added to the root of the second moment estimate."""
    weight_decay: float = 0.0
    """L2 penalty (adam) or decoupled weight decay (adamw)."""


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """Adam, or AdamW when ``name == 'adamw'``; lr is set by the schedule before every update."""
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if cfg.name not in kinds:
        raise ValueError(f"optim.name={cfg.name!r}: expected one of {sorted(kinds)}")
    device_type = next(model.parameters()).device.type
    return kinds[cfg.name](
        model.parameters(),
        lr=0.0,
        betas=tuple(cfg.betas),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=device_type in {"cpu", "cuda"},
    )
