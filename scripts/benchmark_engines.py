"""Beam search by noamt, HF transformers' ``generate`` and CTranslate2 (in each compute type of
``--compute-types``) on the same weights and the same sentences, timed in alternating rounds.

    pip install -e ".[dev]"            # transformers and ctranslate2
    python scripts/benchmark_engines.py model=small --rounds 3 --out docs/results/engines_small
    python scripts/benchmark_engines.py model=base --sentences 200 --length 30 --threads 2
    python scripts/benchmark_engines.py model=base device=cuda device.precision=bf16 --sentences 1000

The model is built from the Hydra config (as for noamt-train; its weights are its random
initialisation, or those of ``--checkpoint``), then exported as the Marian model of
``noamt-export format=transformers`` and as the CTranslate2 model of ``format=ctranslate2``,
which CTranslate2 loads once per compute type, so all engines hold the same weights. The
sentences are the first ``--sentences`` of the validation split, in the same batches for every
engine. The device is the device group's (``device=cpu`` unless an override names another):
noamt's search and ``generate`` run there under the group's precision (``device.precision=bf16``:
autocast on CUDA), CTranslate2 there in each compute type (default ``float32,int8`` on the CPU,
``float32,float16,int8_float16`` on CUDA).

Equal work: every hypothesis is forced to ``--length`` tokens and an EOS (EOS banned before,
forced after), so each engine runs ``length + 1`` decoder steps of beam ``--beam`` on every
sentence. Each round times the engines one after another on every batch; the first round
is a warm-up. Sentences/s per round, the median of the rounds and each engine's median ratio
to ``generate`` (the ratio is taken within each round, then the median) are printed and, with
``--out``, written to ``results.json`` with the command and the machine.

With ``--checkpoint`` (trained weights) the engines then search greedily without forcing, each
sentence to noamt's limit ``floor(1.2 |x| + 10)``: the share of sentences on which ``generate``
and CTranslate2 (each compute type) give noamt's tokens is printed. Random weights give nearly flat
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
from noamt.bounds import int_type, positive_int
from noamt.cli.config import register_configs, to_train_config
from noamt.data import DataConfig, EncodedSplit, TokenBudgetBatches
from noamt.decoding import DecodingConfig, beam_search, max_output_lengths
from noamt.decoding.config import MAX_BEAM_SIZE, MAX_OUTPUT_LENGTH
from noamt.device import MAX_THREADS, DeviceManager
from noamt.export.ctranslate2_spec import write_ctranslate2
from noamt.export.marian import marian_model
from noamt.inference import load_model

COMPUTE_TYPES = {"cpu": "float32,int8", "cuda": "float32,float16,int8_float16"}  # --compute-types defaults
GREEDY = DecodingConfig(beam_size=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for noamt-train (model=small, ...)")
    parser.add_argument("--checkpoint", help="weights to load instead of the random initialisation")
    parser.add_argument("--sentences", type=positive_int, default=200, help="validation sentences to translate")
    parser.add_argument(
        "--length", type=int_type(1, MAX_OUTPUT_LENGTH), default=30, help="tokens every hypothesis is forced to"
    )
    parser.add_argument("--beam", type=int_type(1, MAX_BEAM_SIZE), default=5, help="beam size of the timed search")
    parser.add_argument("--rounds", type=positive_int, default=3, help="timed rounds after one warm-up round")
    parser.add_argument(
        "--max-tokens", type=positive_int, default=4096, help="source tokens per batch, padding included"
    )
    parser.add_argument(
        "--threads", type=int_type(1, MAX_THREADS), default=torch.get_num_threads(), help="CPU threads of every engine"
    )
    parser.add_argument(
        "--compute-types",
        help="CTranslate2's, comma-separated (default: float32,int8 on the CPU, float32,float16,int8_float16 on CUDA)",
    )
    parser.add_argument("--out", type=Path, help="folder for results.json")
    return parser.parse_args(argv)


class Engines:
    """The engines over one model on one device, each translating a batch of source ids (B, S)
    into token-id lists without BOS and EOS, forced or greedy; ``names`` lists them."""

    def __init__(self, model, tokenizer, folder: Path, dm: DeviceManager, compute_types: list[str], threads: int):
        import ctranslate2

        model.eval()
        self.marian = marian_model(model, tokenizer).to(dm.device)
        write_ctranslate2(model, tokenizer, folder, None)
        self.model, self.tokenizer, self.dm = model.to(dm.device), tokenizer, dm
        self.vocabulary = tokenizer.vocabulary()
        self.token_id = {token: i for i, token in enumerate(self.vocabulary)}
        self.ct2 = {
            f"ct2_{compute_type}": ctranslate2.Translator(
                str(folder),
                device=dm.device.type,
                device_index=dm.device.index or 0,
                compute_type=compute_type,
                intra_threads=threads,
            )
            for compute_type in compute_types
        }
        self.names = ["noamt", "generate", *self.ct2]

    def run(self, engine: str, src: torch.Tensor, beam: int, length: int | None) -> list[list[int]]:
        """``length`` tokens then EOS for every hypothesis, or (None) greedy to noamt's limit."""
        if engine in ("noamt", "generate"):
            with self.dm.autocast():
                search = self._noamt if engine == "noamt" else self._generate
                return search(src.to(self.dm.device), beam, length)
        return self._ctranslate2(self.ct2[engine], src, beam, length)

    def _limits(self, src: torch.Tensor) -> list[int]:
        return max_output_lengths(src, self.tokenizer.pad_id, self.model.cfg.max_positions, GREEDY).tolist()

    def _noamt(self, src, beam, length):
        tok = self.tokenizer
        decoding = GREEDY if length is None else DecodingConfig(beam_size=beam, max_len_a=0.0, max_len_b=length,
                                                                 min_len=length)  # fmt: skip
        return beam_search(self.model, src, decoding, bos_id=tok.bos_id, eos_id=tok.eos_id)

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
                sources,
                beam_size=beam,
                max_input_length=0,
                length_penalty=1.0,
                min_decoding_length=length,
                max_decoding_length=length,
            )
        return [[self.token_id[t] for t in r.hypotheses[0]] for r in results]


def timed_rounds(engines: Engines, batches: list[torch.Tensor], args) -> list[dict[str, float]]:
    """Sentences/s of each engine per round, the engines one after another within a round."""
    n = sum(len(b) for b in batches)
    rounds = []
    for i in range(args.rounds + 1):
        seconds = {}
        for engine in engines.names:
            start = time.perf_counter()
            for src in batches:
                outputs = engines.run(engine, src, args.beam, args.length)
                assert all(len(o) == args.length for o in outputs), (engine, [len(o) for o in outputs][:5])
            seconds[engine] = time.perf_counter() - start
        if i > 0:  # the first round warms up
            rounds.append({engine: n / s for engine, s in seconds.items()})
            line = "  ".join(f"{e} {rounds[-1][e]:.1f}" for e in engines.names)
            print(f"round {i}: sentences/s  {line}", flush=True)
    return rounds


def greedy_agreement(engines: Engines, batches: list[torch.Tensor]) -> dict[str, float]:
    """Share of sentences whose greedy output equals noamt's, per other engine."""
    outputs = {engine: [o for src in batches for o in engines.run(engine, src, 1, None)] for engine in engines.names}
    reference = outputs["noamt"]
    return {
        engine: sum(a == b for a, b in zip(outputs[engine], reference, strict=True)) / len(reference)
        for engine in engines.names[1:]
    }


def check_compute_types(requested: str | None, device_type: str) -> list[str]:
    """CTranslate2's compute types to time; one the device lacks is a one-line error naming it."""
    import ctranslate2

    names = (requested or COMPUTE_TYPES.get(device_type, "float32")).split(",")
    supported = ctranslate2.get_supported_compute_types(device_type)
    missing = [name for name in names if name not in supported]
    if missing:
        sys.exit(f"--compute-types: {device_type} lacks {', '.join(missing)}; it has {', '.join(sorted(supported))}")
    return names


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    register_configs()
    names_device = any(o.split("=")[0].lstrip("+~") == "device" for o in args.overrides)
    overrides = args.overrides if names_device else [*args.overrides, "device=cpu"]
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        cfg = to_train_config(compose(config_name="train", overrides=overrides))
    dm = DeviceManager(cfg.device)
    compute_types = check_compute_types(args.compute_types, dm.device.type)
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
    batches = [
        b.src for b in TokenBudgetBatches(split, args.max_tokens, tok.pad_id, tok.bos_id, tok.eos_id, shuffle=False)
    ]
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode():
        engines = Engines(model, tok, Path(folder), dm, compute_types, args.threads)
        print(
            f"{model.cfg.name} on {dm.describe()}: {n} sentences in {len(batches)} batches, beam {args.beam}, "
            f"{args.length} tokens each",
            flush=True,
        )
        rounds = timed_rounds(engines, batches, args)
        agreement = greedy_agreement(engines, batches) if args.checkpoint else {}
    medians = {engine: statistics.median(r[engine] for r in rounds) for engine in engines.names}
    ratios = {engine: statistics.median(r[engine] / r["generate"] for r in rounds) for engine in engines.names}
    for engine in engines.names:
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
            "device": dm.describe(),
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
