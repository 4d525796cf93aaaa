"""A Trainer of a 1+1-layer d_model 16 Transformer on 200 pairs of toy token ids, built directly
(no corpus, tokenizer or pipeline): a run of 20 updates takes about half a second on a CPU."""

from __future__ import annotations

import random
from pathlib import Path

from noamt.data import EncodedSplit, TokenBudgetBatches
from noamt.device import DeviceConfig, DeviceManager
from noamt.model import ModelConfig, Transformer
from noamt.optim import OptimConfig, build_optimizer
from noamt.trainer import Trainer, TrainerConfig

VOCAB, PAD_ID, BOS_ID, EOS_ID = 40, 0, 1, 2
MAX_TOKENS = 128


def toy_split(pairs: int, seed: int) -> EncodedSplit:
    """Sources of 2 to 9 random ids, targets the sources reversed."""
    rng = random.Random(seed)
    src = [[rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 9))] for _ in range(pairs)]
    return EncodedSplit(src, [list(reversed(s)) for s in src])


def toy_batches(pairs: int = 200, seed: int = 1, shuffle: bool = True) -> TokenBudgetBatches:
    return TokenBudgetBatches(toy_split(pairs, seed), MAX_TOKENS, PAD_ID, BOS_ID, EOS_ID, shuffle=shuffle)


def tiny_trainer(run_dir: Path, device: str = "cpu", optimizer: str = "adam", **settings) -> Trainer:
    """20 updates with clipping, logged every 5, validated (20 pairs) and saved every 10; lr
    warms up linearly to 1e-3 over 4 updates. ``settings``: other TrainerConfig values."""
    values = dict(
        max_steps=20,
        max_tokens=MAX_TOKENS,
        log_interval=5,
        val_interval=10,
        save_interval=10,
        val_bleu=False,
        tensorboard=False,
        progress=False,
        clip_norm=1.0,
    )
    cfg = TrainerConfig(**(values | settings))
    dm = DeviceManager(DeviceConfig(device=device, num_threads=1))  # a fixed count: runs compared bit for bit
    dm.seed(cfg.seed)
    model_cfg = ModelConfig(
        name="test", encoder_layers=1, decoder_layers=1, d_model=16, n_heads=2, d_ff=32, max_positions=32
    )
    model = Transformer(model_cfg, VOCAB, VOCAB, PAD_ID).to(dm.device)
    opt = build_optimizer(model, OptimConfig(name=optimizer))
    train, valid = toy_batches(200, 1), toy_batches(20, 2, shuffle=False)
    return Trainer(cfg, model, opt, lambda k: 1e-3 * min(1, k / 4), train, valid, dm, run_dir)
