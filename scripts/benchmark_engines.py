"""Beam search by noamt, HF transformers' ``generate`` and CTranslate2 (float32, int8) on the
same weights and the same sentences, timed in alternating rounds.

    pip install -e ".[dev]"            # transformers and ctranslate2
    python scripts/benchmark_engines.py model=small --rounds 3 --out docs/results/engines_small
    python scripts/benchmark_engines.py model=base --sentences 200 --length 30 --threads 2

The model is built from the Hydra config (as for noamt-train; its weights are its random
initialisation, or those of ``--checkpoint``), then exported as the Marian model of
``noamt-export format=transformers`` and as the CTranslate2 models of ``format=ctranslate2``
(float32, and int8 weights), so all four engines hold the same weights. The sentences are the
first ``--sentences`` of the validation split, in the same batches for every engine.

Equal work: every hypothesis is forced to ``--length`` tokens and an EOS (EOS banned before,
forced after), so each engine runs ``length + 1`` decoder steps of beam ``--beam`` on every
sentence. Each round times the four engines one after another on every batch; the first round
is a warm-up. Sentences/s per round, the median of the rounds and each engine's median ratio
to ``generate`` (the ratio is taken within each round, then the median) are printed and, with
``--out``, written to ``results.json`` with the command and the machine.

With ``--checkpoint`` (trained weights) the engines then search greedily without forcing, each
sentence to noamt's limit ``floor(1.2 |x| + 10)``: the share of sentences on which ``generate``
and CTranslate2 (float32, int8) give noamt's tokens is printed. Random weights give nearly flat
next-token distributions, whose argmax flips with the order of floating-point sums, so the
agreement is measured on trained weights only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from noamt import pipeline
from noamt.cli.config import register_configs, to_train_config
from noamt.data import DataConfig, EncodedSplit, TokenBudgetBatches
from noamt.decoding import DecodingConfig, beam_search, max_output_lengths
from noamt.device import DeviceManager
from noamt.export.ctranslate2_spec import write_ctranslate2
from noamt.export.marian import marian_model
from noamt.inference import load_model

ENGINES = ("noamt", "generate", "ct2_float32", "ct2_int8")
GREEDY = DecodingConfig(beam_size=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for noamt-train (model=small, ...)")
    parser.add_argument("--checkpoint", help="weights to load instead of the random initialisation")
    parser.add_argument("--sentences", type=int, default=200, help="validation sentences to translate")
    parser.add_argument("--length", type=int, default=30, help="tokens every hypothesis is forced to")
    parser.add_argument("--beam", type=int, default=5, help="beam size of the timed search")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument("--max-tokens", type=int, default=4096, help="source tokens per batch, padding included")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads of every engine")
    parser.add_argument("--out", type=Path, help="folder for results.json")
    args = parser.parse_args(argv)
    if min(args.sentences, args.length, args.beam, args.rounds, args.threads) < 1:
        parser.error("--sentences, --length, --beam, --rounds and --threads must be at least 1")
    return args


class Engines:
    """The four engines over one model, each translating a batch of source ids (B, S) into
    token-id lists without BOS and EOS, forced or greedy."""

    def __init__(self, model, tokenizer, folder: Path, threads: int):
        import ctranslate2

        self.model, self.tokenizer = model.eval(), tokenizer
        self.marian = marian_model(model, tokenizer)
        self.vocabulary = tokenizer.vocabulary()
        self.token_id = {token: i for i, token in enumerate(self.vocabulary)}
        self.ct2 = {}
        for quantization in ("float32", "int8"):
            path = folder / quantization
            path.mkdir()
            write_ctranslate2(model, tokenizer, path, quantization)
            self.ct2[f"ct2_{quantization}"] = ctranslate2.Translator(
                str(path), device="cpu", compute_type=quantization, intra_threads=threads
            )

    def run(self, engine: str, src: torch.Tensor, beam: int, length: int | None) -> list[list[int]]:
        """``length`` tokens then EOS for every hypothesis, or (None) greedy to noamt's limit."""
        if engine == "noamt":
            return self._noamt(src, beam, length)
        if engine == "generate":
            return self._generate(src, beam, length)
        return self._ctranslate2(self.ct2[engine], src, beam, length)

    def _limits(self, src: torch.Tensor) -> list[int]:
        return max_output_lengths(src, self.tokenizer.pad_id, self.model.cfg.max_positions, GREEDY).tolist()

    def _noamt(self, src, beam, length):
        tok = self.tokenizer
        forced = DecodingConfig(beam_size=beam, max_len_a=0.0, max_len_b=length or 0, min_len=length or 0)
        return beam_search(self.model, src, GREEDY if length is None else forced, bos_id=tok.bos_id, eos_id=tok.eos_id)

    def _generate(self, src, beam, length):
        if length is None:  # one sentence at a time: each has its own limit
            return [
                self._marian_search(row[row != self.tokenizer.pad_id][None], num_beams=1, max_new_tokens=limit + 1)[0]
                for row, limit in zip(src, self._limits(src), strict=True)
            ]
        return self._marian_search(src, num_beams=beam, min_new_tokens=length + 1, max_new_tokens=length + 1)

    def _marian_search(self, src, **steps):
        tok = self.tokenizer
        out = self.marian.generate(
            input_ids=src, attention_mask=src != tok.pad_id, do_sample=False, length_penalty=1.0, **steps
        )
        return [[i for i in row.tolist()[1:] if i not in (tok.eos_id, tok.pad_id)] for row in out]

    def _ctranslate2(self, translator, src, beam, length):
        tok = self.tokenizer
        sources = [[self.vocabulary[i] for i in row.tolist() if i not in (tok.pad_id, tok.eos_id)] for row in src]
        if length is None:  # one sentence at a time: each has its own limit
            results = [
                translator.translate_batch([s], beam_size=1, max_input_length=0, max_decoding_length=limit)[0]
                for s, limit in zip(sources, self._limits(src), strict=True)
            ]
        else:
            results = translator.translate_batch(
                sources, beam_size=beam, max_input_length=0, length_penalty=1.0,
                min_decoding_length=length, max_decoding_length=length,
            )  # fmt: skip
        return [[self.token_id[t] for t in r.hypotheses[0]] for r in results]


def timed_rounds(engines: Engines, batches: list[torch.Tensor], args) -> list[dict[str, float]]:
    """Sentences/s of each engine per round, the engines one after another within a round."""
    n = sum(len(b) for b in batches)
    rounds = []
    for i in range(args.rounds + 1):
        seconds = {}
        for engine in ENGINES:
            start = time.perf_counter()
            for src in batches:
                outputs = engines.run(engine, src, args.beam, args.length)
                assert all(len(o) == args.length for o in outputs), (engine, [len(o) for o in outputs][:5])
            seconds[engine] = time.perf_counter() - start
        if i > 0:  # the first round warms up
            rounds.append({engine: n / s for engine, s in seconds.items()})
            line = "  ".join(f"{e} {rounds[-1][e]:.1f}" for e in ENGINES)
            print(f"round {i}: sentences/s  {line}", flush=True)
    return rounds


def greedy_agreement(engines: Engines, batches: list[torch.Tensor]) -> dict[str, float]:
    """Share of sentences whose greedy output equals noamt's, per other engine."""
    outputs = {engine: [o for src in batches for o in engines.run(engine, src, 1, None)] for engine in ENGINES}
    reference = outputs["noamt"]
    return {
        engine: sum(a == b for a, b in zip(outputs[engine], reference, strict=True)) / len(reference)
        for engine in ENGINES[1:]
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        cfg = to_train_config(compose(config_name="train", overrides=[*args.overrides, "device=cpu"]))
    dm = DeviceManager(cfg.device)
    dm.seed(cfg.trainer.seed)
    model = tokenizer = None
    if args.checkpoint:  # its weights, tokenizer and data
        loaded = load_model(args.checkpoint)
        model, tokenizer, cfg.data = loaded.model, loaded.tokenizer, DataConfig(**loaded.config["data"])
    data = pipeline.prepare_data(cfg.data, cfg.tokenizer, cfg.trainer, dm, tokenizer=tokenizer)
    tok = data.tokenizer
    model = model or pipeline.build_model(cfg.model, tok)
    n = min(args.sentences, len(data.valid.split))
    split = EncodedSplit(data.valid.split.src_ids[:n], [[] for _ in range(n)])
    batches = [b.src for b in TokenBudgetBatches(split, args.max_tokens, tok.pad_id, tok.bos_id, tok.eos_id,
                                                 shuffle=False)]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        engines = Engines(model, tok, Path(folder), args.threads)
        print(f"{model.cfg.name}: {n} sentences in {len(batches)} batches, beam {args.beam}, "
              f"{args.length} tokens each, {args.threads} threads", flush=True)  # fmt: skip
        rounds = timed_rounds(engines, batches, args)
        agreement = greedy_agreement(engines, batches) if args.checkpoint else {}
    medians = {engine: statistics.median(r[engine] for r in rounds) for engine in ENGINES}
    ratios = {engine: statistics.median(r[engine] / r["generate"] for r in rounds) for engine in ENGINES}
    for engine in ENGINES:
        print(f"{engine:>12}: median {medians[engine]:.1f} sentences/s, {ratios[engine]:.2f}x generate")
    if agreement:
        print("greedy outputs equal to noamt's: " + ", ".join(f"{e} {agreement[e]:.1%}" for e in agreement))
    result = {
        "command": " ".join(["python", "scripts/benchmark_engines.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },
        "model": {
            "name": model.cfg.name,
            "encoder_layers": model.cfg.encoder_layers,
            "d_model": model.cfg.d_model,
            "vocab_size": tok.vocab_size,
            "weights": args.checkpoint or "random initialisation",
        },
        "sentences": n,
        "batches": len(batches),
        "beam_size": args.beam,
        "forced_length": args.length,
        "threads": args.threads,
        "rounds_sentences_per_s": [{e: round(v, 2) for e, v in r.items()} for r in rounds],
        "median_sentences_per_s": {e: round(v, 2) for e, v in medians.items()},
        "median_ratio_to_generate": {e: round(v, 3) for e, v in ratios.items()},
        "greedy_agreement_with_noamt": {e: round(v, 4) for e, v in agreement.items()},
    }
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
