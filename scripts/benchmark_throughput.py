"""Training throughput: target tokens per second of the real training step.

    python scripts/benchmark_throughput.py model=small --updates 30
    python scripts/benchmark_throughput.py model=tiny device=cuda trainer.max_tokens=8192
    python scripts/benchmark_throughput.py model=base device=cuda device.precision=bf16 \
        device.cuda_graphs=true data.max_src_len=63 data.max_tgt_len=63 --pad-to-buckets 16,24,32,48,64

Builds the run exactly as ``noamt-train`` would (same configs and overrides, real Multi30k
batches, real tokenizer), times ``Trainer.train_step`` over ``--updates`` updates after
``--warmup`` untimed ones (the batches go on epoch after epoch), and prints target tokens/s,
source+target tokens/s, the median and spread of the per-update times, the model's matmul FLOP
rate, its MFU against the peak of a large matrix product timed in the same process (in bf16
under ``device.precision=bf16``; also against the datasheet peak when the device is known),
peak memory, the warm-up's seconds (where ``device.compile`` / ``device.cuda_graphs`` compile
and record) and the batch shapes the timed updates met. On CUDA the first updates pay for new
shapes and allocator growth: the defaults warm up for 50 updates and time 100.
``--pad-to-buckets`` pads the training batches to length buckets (TokenBudgetBatches'
``pad_to_buckets``), which bounds the shapes a compiled step meets. ``--contention N`` runs N
busy processes (noamt_study.contention) beside the warm-up and the timed updates: a shared machine.

FLOPs per update are counted as 6 * (parameters touched per token) * tokens, split into the
encoder (source tokens), the decoder (target tokens) and the output projection (target tokens),
plus attention scores (4 * T_q * T_k * d per layer and attention, forward; x3 for training).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time

import torch
from hydra import compose, initialize_config_module

from noamt import pipeline
from noamt.bounds import comma_separated, int_type, non_negative_int, positive_int
from noamt.cli.config import register_configs, to_train_config
from noamt.data import TokenBudgetBatches, endless_batches
from noamt.device import DeviceManager
from noamt.optim import build_optimizer
from noamt.trainer import Trainer
from noamt_study.contention import MAX_BUSY_PROCESSES, busy_processes


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


DATASHEET_PEAKS = {  # dense TFLOP/s: (fp32/TF32 as torch runs fp32 matmuls, bf16)
    "H100": (494.7, 989.4),
    "H200": (494.7, 989.4),
    "A100": (156.0, 312.0),
}


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` n x n x n matrix products (2 n^3 FLOPs each)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = float("inf")
    for _ in range(repeats + 1):  # the first product warms up
        sync()
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def print_profile(trainer: Trainer, batches, updates: int) -> None:
    """torch.profiler over ``updates`` more updates: the 25 operators with the most self time."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(updates):
            trainer.train_step([next(batches)])
    key = "self_cuda_time_total" if len(activities) > 1 else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=25), file=sys.stderr)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for noamt-train")
    parser.add_argument("--updates", type=positive_int, help="timed updates (default 30 on a CPU, 100 on CUDA)")
    parser.add_argument(
        "--warmup", type=non_negative_int, help="untimed updates first (default 5 on a CPU, 50 on CUDA)"
    )
    parser.add_argument(
        "--pad-to-buckets",
        type=comma_separated(positive_int),
        help="pad training batches to these widths, e.g. 16,24,32,48,64 (each pair must fit the largest)",
    )
    parser.add_argument(
        "--contention",
        type=int_type(0, MAX_BUSY_PROCESSES),
        default=0,
        help="busy processes, one core each, running beside the timed updates (default 0: a quiet machine)",
    )
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    args = parser.parse_args(argv)

    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        cfg = to_train_config(compose(config_name="train", overrides=args.overrides))
    dm = DeviceManager(cfg.device)
    cuda = dm.device.type == "cuda"
    updates = args.updates if args.updates is not None else (100 if cuda else 30)
    warmup = args.warmup if args.warmup is not None else (50 if cuda else 5)
    dm.seed(cfg.trainer.seed)
    data = pipeline.prepare_data(cfg.data, cfg.tokenizer, cfg.trainer, dm)
    if args.pad_to_buckets:
        tok = data.tokenizer
        data.train = TokenBudgetBatches(data.train.split, cfg.trainer.max_tokens, tok.pad_id, tok.bos_id, tok.eos_id,
                                        seed=cfg.trainer.seed, max_sentences=cfg.trainer.max_sentences,
                                        pad_to_buckets=args.pad_to_buckets)  # fmt: skip
    model = pipeline.build_model(cfg.model, data.tokenizer).to(dm.device)
    vocab = data.tokenizer.vocab_size
    with busy_processes(args.contention), tempfile.TemporaryDirectory() as run_dir:
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
        batches = endless_batches(data.train)
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        start = time.perf_counter()
        for _ in range(warmup):
            trainer.train_step([next(batches)])
            dm.adapt_threads()
        sync()
        warmup_seconds = time.perf_counter() - start
        tokens = all_tokens = flops = 0
        times, shapes = [], set()
        for _ in range(updates):
            batch = next(batches)
            shapes.add((*batch.src.shape, batch.tgt_in.size(1)))
            sync()
            start = time.perf_counter()
            trainer.train_step([batch])
            sync()
            times.append(time.perf_counter() - start)
            dm.adapt_threads()  # as Trainer.train does after every update
            body, real_tgt = matmul_flops(cfg.model, batch)
            flops += body + 3 * 2 * real_tgt * cfg.model.d_model * vocab
            tokens += real_tgt
            all_tokens += real_tgt + int((batch.src != model.pad_id).sum())
        elapsed = sum(times)
        peak_cuda = torch.cuda.max_memory_allocated() / 2**20 if cuda else None  # before the matmul peak's
        if args.profile:
            print_profile(trainer, batches, min(updates, 10))
    bf16 = cuda and cfg.device.precision == "bf16"
    peak = matmul_peak(dm.device, torch.bfloat16 if bf16 else torch.float32, 8192 if cuda else 1024)
    achieved = flops / elapsed
    result = {
        "model": cfg.model.name,
        "device": dm.describe(),
        "contention": args.contention,
        "compile": cfg.device.compile,
        "cuda_graphs": cfg.device.cuda_graphs,
        "pad_to_buckets": args.pad_to_buckets,
        "max_tokens": cfg.trainer.max_tokens,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batches_per_epoch": len(data.train),
        "warmup_updates": warmup,
        "warmup_seconds": round(warmup_seconds, 2),
        "updates": updates,
        "batch_shapes": len(shapes),
        "seconds": round(elapsed, 2),
        "target_tokens_per_update": round(tokens / updates, 1),
        "target_tokens_per_s": round(tokens / elapsed, 1),
        "src_tgt_tokens_per_s": round(all_tokens / elapsed, 1),
        "median_ms_per_update": round(1000 * statistics.median(times), 2),
        "p10_p90_ms_per_update": [round(1000 * q, 2) for q in statistics.quantiles(times, n=10)[::8]],
        "gflop_per_s": round(achieved / 1e9, 1),
        "matmul_peak_gflop_per_s": round(peak / 1e9, 1),
        "matmul_peak_dtype": "bf16" if bf16 else "fp32",
        "mfu_vs_measured_peak": round(achieved / peak, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if cuda:
        name = torch.cuda.get_device_name(dm.device)
        known = [peaks for key, peaks in DATASHEET_PEAKS.items() if key in name]
        if known:
            result["mfu_vs_datasheet"] = round(achieved / (known[0][1 if bf16 else 0] * 1e12), 4)
    if peak_cuda is not None:
        result["peak_cuda_mib"] = round(peak_cuda, 1)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    dm.close()
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
