"""noamt against HF transformers' Marian, side by side: training and beam search on the same data.

    pip install -e ".[bench]"          # brings transformers
    python scripts/benchmark_peers.py model=small --rounds 3 --block 10
    python scripts/benchmark_peers.py model=tiny device=cuda trainer.max_tokens=8192 --block 50
    python scripts/benchmark_peers.py model=small --contention 1 --out docs/results/peers_busy

Both models are built from the same Hydra config (noamt's model and a Marian of the same shape,
noamt_study.peers) in one process and trained with Adam and label-smoothed cross-entropy on the same
token-budget batches. The timing alternates: a block of ``--block`` updates of noamt, then the
same block of batches for Marian, ``--rounds`` times, after one untimed block of each; so both
see the same machine state. Prints each round's target tokens/s of both and their ratio, then
the median ratio and its spread. A ratio is only meaningful from one such run.

Decoding (``--decode-sentences``, 0 to skip): beam search over the first validation sentences,
noamt's ``beam_search`` against Marian's ``generate(num_beams=...)``, with equal work: every
hypothesis is forced to ``--decode-length`` tokens and an EOS (EOS banned before, forced after;
both run length + 1 decoder steps), on the same batches of sources, alternating in rounds the
same way. Prints sentences/s of both and the ratio.

Shared cores (``--contention N``): N busy processes (noamt_study.contention), each spinning on a
core, run from before the first block to the end, so both sides' rounds meet the same competition
for the cores. Each side runs with its own CPU threads (class ``Threads``): noamt fits its count to
the free cores unless ``device.num_threads`` is set, Marian keeps torch's default unless
``--marian-threads`` is set; every round records both. ``--out`` writes results.json (the
command, date, machine, contention and every round) and output.txt (what was printed) to a folder.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from noamt import pipeline
from noamt.bounds import int_type, non_negative_int, positive_int
from noamt.cli.config import register_configs, to_train_config
from noamt.data import EncodedSplit, TokenBudgetBatches, endless_batches
from noamt.decoding import DecodingConfig, beam_search
from noamt.decoding.config import MAX_BEAM_SIZE, MAX_OUTPUT_LENGTH
from noamt.device import MAX_THREADS, DeviceManager
from noamt.optim import build_optimizer
from noamt.trainer import Trainer
from noamt_study.contention import MAX_BUSY_PROCESSES, busy_processes
from noamt_study.peers import marian_model, marian_train_step, trainable_parameters


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for noamt-train")
    parser.add_argument("--rounds", type=positive_int, default=3, help="timed rounds (noamt block, then Marian block)")
    parser.add_argument("--block", type=positive_int, default=10, help="updates per block")
    parser.add_argument(
        "--decode-sentences", type=non_negative_int, default=200, help="sentences to beam-search (0: skip)"
    )
    parser.add_argument(
        "--decode-length", type=int_type(1, MAX_OUTPUT_LENGTH), default=30, help="tokens every hypothesis is forced to"
    )
    parser.add_argument("--beam", type=int_type(1, MAX_BEAM_SIZE), default=5, help="beam size for decoding")
    parser.add_argument(
        "--contention",
        type=int_type(0, MAX_BUSY_PROCESSES),
        default=0,
        help="busy processes, one core each, running beside both sides' rounds (default 0: a quiet machine)",
    )
    parser.add_argument(
        "--marian-threads",
        type=int_type(1, MAX_THREADS),
        help="Marian's CPU threads (default: device.num_threads when set, else torch's default, one per core)",
    )
    parser.add_argument("--out", type=Path, help="folder for results.json and output.txt")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    return parser.parse_args(argv)


class Threads:
    """Each side's CPU threads. noamt's are its DeviceManager's: ``device.num_threads`` when set,
    else fitted to the free cores after every update or batch (``DeviceManager.adapt_threads``), as
    in noamt-train and noamt-translate. Marian's are fixed: ``--marian-threads``, by default
    ``device.num_threads`` when set, else torch's default (one per core, as transformers runs)."""

    def __init__(self, marian: int):
        self.marian, self.noamt = marian, torch.get_num_threads()

    @contextmanager
    def of_noamt(self) -> Iterator[None]:
        torch.set_num_threads(self.noamt)
        yield
        self.noamt = torch.get_num_threads()

    @contextmanager
    def of_marian(self) -> Iterator[None]:
        torch.set_num_threads(self.marian)
        yield


def round_record(rate: str, work: float, t_ours: float, t_marian: float, threads: Threads) -> dict:
    """One round: each side's rate (``work`` per second), Marian's time over noamt's, each side's threads."""
    return {f"noamt_{rate}": work / t_ours, f"marian_{rate}": work / t_marian, "ratio": t_marian / t_ours,
            "noamt_threads": threads.noamt, "marian_threads": threads.marian}  # fmt: skip


def timed(step, batches, sync, threads) -> float:
    """Seconds to run ``step`` on every batch with the ``threads`` context entered."""
    with threads:
        sync()
        start = time.perf_counter()
        for batch in batches:
            step(batch)
        sync()
        return time.perf_counter() - start


def decode_rounds(args, data, ours, marian, dm, sync, threads: Threads) -> dict:
    """Alternating rounds of beam search, noamt then Marian, on the same source batches."""
    tok = data.tokenizer
    n = min(args.decode_sentences, len(data.valid.split))
    split = EncodedSplit(data.valid.split.src_ids[:n], [[] for _ in range(n)])
    batches = [b.src.to(dm.device) for b in TokenBudgetBatches(split, 4096, tok.pad_id, tok.bos_id, tok.eos_id,
                                                                   shuffle=False)]  # fmt: skip
    length = args.decode_length
    marian.eval()

    decoding = DecodingConfig(beam_size=args.beam, max_len_a=0.0, max_len_b=length, min_len=length)

    def run_ours(src):
        beam_search(ours, src, decoding, bos_id=tok.bos_id, eos_id=tok.eos_id)
        dm.adapt_threads()

    @torch.inference_mode()
    def run_marian(src):
        marian.generate(input_ids=src, attention_mask=src != tok.pad_id, num_beams=args.beam, do_sample=False,
                        min_new_tokens=length + 1, max_new_tokens=length + 1, length_penalty=1.0)  # fmt: skip

    rounds = []
    for i in range(args.rounds + 1):
        with dm.autocast():
            t_ours = timed(run_ours, batches, sync, threads.of_noamt())
            t_marian = timed(run_marian, batches, sync, threads.of_marian())
        if i > 0:  # the first round warms up
            rounds.append(round_record("sent_s", n, t_ours, t_marian, threads))
    ratios = [r["ratio"] for r in rounds]
    return {
        "sentences": n,
        "beam_size": args.beam,
        "length": length,
        "rounds": [rounded(r) for r in rounds],
        "median_ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }


def train_rounds(args, cfg, data, ours, marian, dm, sync, threads: Threads) -> dict:
    """Alternating blocks of training updates, noamt then Marian, on the same batches."""
    tok = data.tokenizer
    marian_adam = build_optimizer(marian, cfg.optim)
    for group in marian_adam.param_groups:
        group["lr"] = 1e-4
    stream = endless_batches(data.train)
    blocks = [[b.to(dm.device) for b in itertools.islice(stream, args.block)] for _ in range(args.rounds + 1)]
    rounds = []
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg.trainer, ours, build_optimizer(ours, cfg.optim), lambda k: 1e-4,
                          data.train, None, dm, run_dir)  # fmt: skip

        def step_ours(batch):
            trainer.train_step([batch])
            dm.adapt_threads()  # as Trainer.train does after every update

        def step_marian(batch):
            with dm.autocast():
                marian_train_step(marian, marian_adam, batch, tok.pad_id, cfg.trainer.label_smoothing)

        for i, block in enumerate(blocks):
            t_ours = timed(step_ours, block, sync, threads.of_noamt())
            t_marian = timed(step_marian, block, sync, threads.of_marian())
            if i == 0:
                continue  # warm-up: first shapes, allocator growth
            tokens = sum(b.n_tgt_tokens for b in block)
            rounds.append(round_record("tok_s", tokens, t_ours, t_marian, threads))
    ratios = [r["ratio"] for r in rounds]
    return {
        "target_tokens_per_update": round(statistics.mean(b.n_tgt_tokens for block in blocks for b in block), 1),
        "rounds": [rounded(r) for r in rounds],
        "median_ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }


def rounded(values: dict) -> dict:
    """A round's record: ratios to 3 decimals, rates to 1, thread counts as they are."""
    return {k: v if "threads" in k else round(v, 3 if k == "ratio" else 1) for k, v in values.items()}


def report_lines(result: dict, args) -> list[str]:
    """The text report of one benchmark's result."""
    n = result["contention"]
    busy = f", {n} busy process{'' if n == 1 else 'es'} beside it" if n else ", no busy process"
    lines = [
        f"{result['model']} on {result['device']}{busy}, {result['target_tokens_per_update']:.0f} target tokens "
        f"per update, trainable parameters {result['trainable_parameters']}",
        f"{'round':>5}  {'noamt tok/s':>12}  {'Marian tok/s':>12}  {'ratio':>6}  threads (noamt, Marian)",
    ]
    for i, r in enumerate(result["rounds"], 1):
        lines.append(f"{i:>5}  {r['noamt_tok_s']:>12.1f}  {r['marian_tok_s']:>12.1f}  {r['ratio']:>6.3f}  "
                     f"{r['noamt_threads']}, {r['marian_threads']}")  # fmt: skip
    lines.append(f"median ratio noamt / Marian: {result['median_ratio']} (range {result['ratio_range']})")
    if "decoding" in result:
        d = result["decoding"]
        lines.append(f"beam {args.beam}, {d['sentences']} sentences forced to {args.decode_length} tokens:")
        lines.append(
            f"{'round':>5}  {'noamt sent/s':>12}  {'Marian sent/s':>13}  {'ratio':>6}  threads (noamt, Marian)"
        )
        for i, r in enumerate(d["rounds"], 1):
            lines.append(f"{i:>5}  {r['noamt_sent_s']:>12.1f}  {r['marian_sent_s']:>13.1f}  {r['ratio']:>6.3f}  "
                         f"{r['noamt_threads']}, {r['marian_threads']}")  # fmt: skip
        lines.append(f"median ratio noamt / Marian: {d['median_ratio']} (range {d['ratio_range']})")
    return lines


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        cfg = to_train_config(compose(config_name="train", overrides=args.overrides))
    marian_threads = args.marian_threads or cfg.device.num_threads or torch.get_num_threads()
    dm = DeviceManager(cfg.device)
    dm.seed(cfg.trainer.seed)
    data = pipeline.prepare_data(cfg.data, cfg.tokenizer, cfg.trainer, dm)
    tok = data.tokenizer
    ours = pipeline.build_model(cfg.model, tok).to(dm.device)
    threads = Threads(marian_threads)
    marian = marian_model(cfg.model, tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id).to(dm.device)
    sync = torch.cuda.synchronize if dm.device.type == "cuda" else (lambda: None)
    result = {
        "command": " ".join(["python", "scripts/benchmark_peers.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
        "model": cfg.model.name,
        "device": dm.describe(),
        "contention": args.contention,
        "trainable_parameters": {"noamt": trainable_parameters(ours), "marian": trainable_parameters(marian)},
    }
    with busy_processes(args.contention):
        result.update(train_rounds(args, cfg, data, ours, marian, dm, sync, threads))
        if args.decode_sentences > 0:
            result["decoding"] = decode_rounds(args, data, ours, marian, dm, sync, threads)
    lines = report_lines(result, args)
    print(json.dumps(result) if args.json else "\n".join(lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        (args.out / "output.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dm.close()
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
