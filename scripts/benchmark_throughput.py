"""Training throughput: target tokens per second of the real training step.

    python scripts/benchmark_throughput.py model=small --updates 30
    python scripts/benchmark_throughput.py model=tiny device=cuda trainer.max_tokens=8192

Builds the run exactly as ``noamt-train`` would (same configs and overrides, real Multi30k
batches, real tokenizer), times ``Trainer.train_step`` over ``--updates`` updates after
``--warmup`` untimed ones, and prints target tokens/s, source+target tokens/s, the model's
matmul FLOP rate and peak memory.

FLOPs per update are counted as 6 * (parameters touched per token) * tokens, split into the
encoder (source tokens), the decoder (target tokens) and the output projection (target tokens),
plus attention scores (4 * T_q * T_k * d per layer and attention, forward; x3 for training).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time

import torch
from hydra import compose, initialize_config_module

from noamt import pipeline
from noamt.cli.config import register_configs, to_train_config
from noamt.device import DeviceManager
from noamt.trainer import Trainer, build_optimizer


def matmul_flops(model_cfg, batch) -> float:
    """Training FLOPs (forward + backward = 3x forward) of one batch's matrix products."""
    d, ff = model_cfg.d_model, model_cfg.d_ff
    b, s = batch.src.shape
    t = batch.tgt_in.shape[1]
    src_tokens, tgt_tokens, real_tgt = b * s, b * t, batch.n_tgt_tokens
    enc_layer = 2 * (4 * d * d + 2 * d * ff) * src_tokens + 2 * 2 * b * s * s * d
    dec_layer = (
        2 * (4 * d * d + 2 * d * d + 2 * d * ff) * tgt_tokens
        + 2 * 2 * d * d * src_tokens
        + 2 * 2 * b * t * t * d
        + 2 * 2 * b * t * s * d
    )
    return 3 * (model_cfg.encoder_layers * enc_layer + model_cfg.decoder_layers * dec_layer), real_tgt


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for noamt-train")
    parser.add_argument("--updates", type=int, default=30, help="timed updates")
    parser.add_argument("--warmup", type=int, default=5, help="untimed updates first")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = parser.parse_args(argv)

    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        cfg = to_train_config(compose(config_name="train", overrides=args.overrides))
    dm = DeviceManager(cfg.device)
    dm.seed(cfg.trainer.seed)
    data = pipeline.prepare_data(cfg.data, cfg.tokenizer, cfg.trainer, dm)
    model = pipeline.build_model(cfg.model, data.tokenizer).to(dm.device)
    vocab = data.tokenizer.vocab_size
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(
            cfg.trainer,
            model,
            build_optimizer(model, cfg.optim),
            lambda k: 1e-4,
            data.train,
            None,
            dm,
            run_dir,
        )
        data.train.set_epoch(1)
        batches = iter(data.train)
        for _ in range(args.warmup):
            trainer.train_step([next(batches)])
        sync = torch.cuda.synchronize if dm.device.type == "cuda" else (lambda: None)
        sync()
        tokens = all_tokens = flops = 0
        start = time.perf_counter()
        for _ in range(args.updates):
            batch = next(batches)
            trainer.train_step([batch])
            body, real_tgt = matmul_flops(cfg.model, batch)
            flops += body + 3 * 2 * real_tgt * cfg.model.d_model * vocab
            tokens += real_tgt
            all_tokens += real_tgt + int((batch.src != model.pad_id).sum())
        sync()
        elapsed = time.perf_counter() - start
    result = {
        "model": cfg.model.name,
        "device": dm.describe(),
        "max_tokens": cfg.trainer.max_tokens,
        "parameters": sum(p.numel() for p in model.parameters()),
        "updates": args.updates,
        "seconds": round(elapsed, 2),
        "target_tokens_per_s": round(tokens / elapsed, 1),
        "src_tgt_tokens_per_s": round(all_tokens / elapsed, 1),
        "gflop_per_s": round(flops / elapsed / 1e9, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if dm.device.type == "cuda":
        result["peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    dm.close()
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
