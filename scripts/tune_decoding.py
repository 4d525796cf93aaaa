"""Choose the beam size and length penalty on the validation set; say why outputs are short.

    python scripts/tune_decoding.py --checkpoint runs/my-run/checkpoints/checkpoint_avg.pt
    python scripts/tune_decoding.py --checkpoint ckpt.pt --beams 5,10 --length-penalties 0.8,1,1.2,1.4 \
        --diagnose --out valid_decoding.json --device cuda

Translates the validation split with every (beam, length penalty) pair and prints BLEU with its
brevity penalty and length ratio; the best pair on validation BLEU is marked, to be used on the
test sets. BLEU is the tokenized (multi-bleu comparable) score when the run trained on tokenized
text, else sacreBLEU. ``--diagnose`` scores the references and the outputs of greedy search and
of beam search (first beam size, alpha 1) under the model (noamt_study.length_analysis): search errors
against model errors, for outputs shorter and longer than their reference.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from noamt.bounds import argument, comma_separated, in_interval, int_type, positive_int
from noamt.checkpoint import CheckpointError
from noamt.data import DataError, load_corpus
from noamt.decoding import DecodingConfig
from noamt.decoding.config import MAX_BEAM_SIZE, MAX_LENGTH_PENALTY
from noamt.device import DeviceConfig, DeviceManager
from noamt.evaluation import evaluate_split, stored_data_config, tokenized_references
from noamt.inference import load_model
from noamt_study.length_analysis import diagnose_lengths

BEAMS = comma_separated(int_type(1, MAX_BEAM_SIZE))
"""``--beams``: comma-separated decoding.beam_size values."""
LENGTH_PENALTIES = comma_separated(
    argument(float, lambda key, alpha: in_interval(key, alpha, -MAX_LENGTH_PENALTY, MAX_LENGTH_PENALTY), "alpha")
)
"""``--length-penalties``: comma-separated decoding.length_penalty values."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint file or run directory")
    parser.add_argument("--data-dir", help="replaces the data folder stored in the checkpoint")
    parser.add_argument("--beams", type=BEAMS, default=[5], help="comma-separated beam sizes (default 5)")
    parser.add_argument(
        "--length-penalties",
        type=LENGTH_PENALTIES,
        default=[0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 2.0],
        help="comma-separated alphas, each in [-10, 10] (default 0.6,0.8,1.0,1.2,1.4,1.6,2.0)",
    )
    parser.add_argument("--max-tokens", type=positive_int, default=4096, help="source tokens per batch")
    parser.add_argument("--diagnose", action="store_true", help="search errors against model errors")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--precision", default="fp32", help="fp32 | bf16 (autocast on CUDA)")
    parser.add_argument("--out", type=Path, help="write the grid and the choice as JSON")
    args = parser.parse_args(argv)
    if not args.beams or not args.length_penalties:
        parser.error("--beams and --length-penalties: give one value or more")
    return args


def headline(result: dict, tokenized: bool) -> dict:
    """BLEU, brevity penalty and length ratio of one evaluate_split result."""
    tok = result.get("tokenized_bleu")
    if tokenized or tok:
        return {"bleu": tok["score"], "bp": tok["bp"], "ratio": tok["ratio"], "sacrebleu": result["bleu"]}
    return {"bleu": result["bleu"], "bp": None, "ratio": None, "sacrebleu": result["bleu"]}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        dm = DeviceManager(DeviceConfig(device=args.device, precision=args.precision))
        loaded = load_model(args.checkpoint, dm.device)
        data_cfg = stored_data_config(loaded, args.data_dir)
        valid = load_corpus(data_cfg, splits=["valid"])["valid"]
    except (CheckpointError, DataError, OSError, RuntimeError, ValueError) as err:
        sys.exit(f"tune_decoding: {err}")
    sources, references = list(valid["src"]), list(valid["tgt"])
    tok_refs = tokenized_references(data_cfg, "valid")
    kind = "tokenized BLEU" if (data_cfg.tokenized or tok_refs) else "sacreBLEU"
    print(f"{loaded.path} (update {loaded.step}), {data_cfg.name} validation, {len(sources)} sentences, {kind}")
    print(f"{'beam':>4}  {'alpha':>5}  {'BLEU':>6}  {'BP':>5}  {'ratio':>6}")
    grid, outputs = [], {}
    for beam in args.beams:
        for alpha in args.length_penalties if beam > 1 else [1.0]:
            decoding = DecodingConfig(beam_size=beam, length_penalty=alpha)
            with dm.autocast():
                hyps, result = evaluate_split(
                    loaded.model,
                    loaded.tokenizer,
                    sources,
                    references,
                    decoding,
                    tgt_lang=data_cfg.tgt_lang,
                    max_tokens=args.max_tokens,
                    tok_references=tok_refs,
                    tokenized=data_cfg.tokenized,
                )
            row = {"beam_size": beam, "length_penalty": alpha, **headline(result, data_cfg.tokenized)}
            grid.append(row)
            outputs[(beam, alpha)] = hyps
            bp = f"{row['bp']:5.3f}" if row["bp"] is not None else "    -"
            ratio = f"{row['ratio']:6.3f}" if row["ratio"] is not None else "     -"
            print(f"{beam:>4}  {alpha:>5.2f}  {row['bleu']:6.2f}  {bp}  {ratio}", flush=True)
    best = max(grid, key=lambda r: r["bleu"])
    print(
        f"best on validation: decoding.beam_size={best['beam_size']} "
        f"decoding.length_penalty={best['length_penalty']} ({best['bleu']:.2f})"
    )
    report = {"checkpoint": str(loaded.path), "step": loaded.step, "data": data_cfg.name, "grid": grid, "best": best}
    if args.diagnose:
        report["diagnosis"] = {}
        for beam in sorted({1, args.beams[0]}):
            hyps = outputs.get((beam, 1.0))
            if hyps is None:
                with dm.autocast():
                    hyps, _ = evaluate_split(
                        loaded.model,
                        loaded.tokenizer,
                        sources,
                        references,
                        DecodingConfig(beam_size=beam),
                        tgt_lang=data_cfg.tgt_lang,
                        max_tokens=args.max_tokens,
                        tokenized=data_cfg.tokenized,
                    )
            with dm.autocast():
                diagnosis = diagnose_lengths(loaded.model, loaded.tokenizer, sources, hyps, references)
            report["diagnosis"][f"beam{beam}"] = dataclasses.asdict(diagnosis)
            print(f"beam {beam}, alpha 1: {diagnosis.summary()}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"-> {args.out}")


if __name__ == "__main__":
    main()
