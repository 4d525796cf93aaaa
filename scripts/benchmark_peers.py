"""noamt against HF transformers' Marian, side by side: training and beam search on the same data.

    pip install -e ".[bench]"          # brings transformers
    python scripts/benchmark_peers.py model=small --rounds 3 --block 10
    python scripts/benchmark_peers.py model=tiny device=cuda trainer.max_tokens=8192 --block 50

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
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import time

import torch
from hydra import compose, initialize_config_module

from noamt import pipeline
from noamt.bounds import int_type, non_negative_int, positive_int
from noamt.cli.config import register_configs, to_train_config
from noamt.data import EncodedSplit, TokenBudgetBatches, endless_batches
from noamt.decoding import DecodingConfig, beam_search
from noamt.decoding.config import MAX_BEAM_SIZE, MAX_OUTPUT_LENGTH
from noamt.device import DeviceManager
from noamt.optim import build_optimizer
from noamt.trainer import Trainer
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
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    return parser.parse_args(argv)


def timed(step, batches, sync) -> float:
    """Seconds to run ``step`` on every batch."""
    sync()
    start = time.perf_counter()
    for batch in batches:
        step(batch)
    sync()
    return time.perf_counter() - start


def decode_rounds(args, data, ours, marian, dm, sync) -> dict:
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

    @torch.inference_mode()
    def run_marian(src):
        marian.generate(input_ids=src, attention_mask=src != tok.pad_id, num_beams=args.beam, do_sample=False,
                        min_new_tokens=length + 1, max_new_tokens=length + 1, length_penalty=1.0)  # fmt: skip

    rounds = []
    for i in range(args.rounds + 1):
        with dm.autocast():
            t_ours, t_marian = timed(run_ours, batches, sync), timed(run_marian, batches, sync)
        if i > 0:  # the first round warms up
            rounds.append({"noamt_sent_s": n / t_ours, "marian_sent_s": n / t_marian, "ratio": t_marian / t_ours})
    ratios = [r["ratio"] for r in rounds]
    return {
        "sentences": n,
        "beam_size": args.beam,
        "length": length,
        "rounds": [{k: round(v, 3 if k == "ratio" else 1) for k, v in r.items()} for r in rounds],
        "median_ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        cfg = to_train_config(compose(config_name="train", overrides=args.overrides))
    dm = DeviceManager(cfg.device)
    dm.seed(cfg.trainer.seed)
    data = pipeline.prepare_data(cfg.data, cfg.tokenizer, cfg.trainer, dm)
    tok = data.tokenizer
    ours = pipeline.build_model(cfg.model, tok).to(dm.device)
    marian = marian_model(cfg.model, tok.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id).to(dm.device)
    marian_adam = build_optimizer(marian, cfg.optim)
    for group in marian_adam.param_groups:
        group["lr"] = 1e-4
    stream = endless_batches(data.train)
    blocks = [[b.to(dm.device) for b in itertools.islice(stream, args.block)] for _ in range(args.rounds + 1)]
    sync = torch.cuda.synchronize if dm.device.type == "cuda" else (lambda: None)
    rounds = []
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg.trainer, ours, build_optimizer(ours, cfg.optim), lambda k: 1e-4,
                          data.train, None, dm, run_dir)  # fmt: skip

        def step_ours(batch):
            trainer.train_step([batch])

        def step_marian(batch):
            with dm.autocast():
                marian_train_step(marian, marian_adam, batch, tok.pad_id, cfg.trainer.label_smoothing)

        for i, block in enumerate(blocks):
            t_ours, t_marian = timed(step_ours, block, sync), timed(step_marian, block, sync)
            if i == 0:
                continue  # warm-up: first shapes, allocator growth
            tokens = sum(b.n_tgt_tokens for b in block)
            rounds.append(
                {"noamt_tok_s": tokens / t_ours, "marian_tok_s": tokens / t_marian, "ratio": t_marian / t_ours}
            )
    ratios = [r["ratio"] for r in rounds]
    per_update = statistics.mean(b.n_tgt_tokens for block in blocks for b in block)
    result = {
        "model": cfg.model.name,
        "device": dm.describe(),
        "trainable_parameters": {"noamt": trainable_parameters(ours), "marian": trainable_parameters(marian)},
        "target_tokens_per_update": round(per_update, 1),
        "rounds": [{k: round(v, 3 if k == "ratio" else 1) for k, v in r.items()} for r in rounds],
        "median_ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
    }
    if args.decode_sentences > 0:
        result["decoding"] = decode_rounds(args, data, ours, marian, dm, sync)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} on {result['device']}, {per_update:.0f} target tokens per update, "
              f"trainable parameters {result['trainable_parameters']}")  # fmt: skip
        print(f"{'round':>5}  {'noamt tok/s':>12}  {'Marian tok/s':>12}  {'ratio':>6}")
        for i, r in enumerate(result["rounds"], 1):
            print(f"{i:>5}  {r['noamt_tok_s']:>12.1f}  {r['marian_tok_s']:>12.1f}  {r['ratio']:>6.3f}")
        print(f"median ratio noamt / Marian: {result['median_ratio']} (range {result['ratio_range']})")
        if "decoding" in result:
            d = result["decoding"]
            print(f"beam {args.beam}, {d['sentences']} sentences forced to {args.decode_length} tokens:")
            print(f"{'round':>5}  {'noamt sent/s':>12}  {'Marian sent/s':>13}  {'ratio':>6}")
            for i, r in enumerate(d["rounds"], 1):
                print(f"{i:>5}  {r['noamt_sent_s']:>12.1f}  {r['marian_sent_s']:>13.1f}  {r['ratio']:>6.3f}")
            print(f"median ratio noamt / Marian: {d['median_ratio']} (range {d['ratio_range']})")
    dm.close()
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
