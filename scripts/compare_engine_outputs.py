"""Side by side, the noamt-evaluate outputs of one model decoded by several engines: each
folder's BLEU per split, its difference to the reference folder's, and the share of output
lines identical to the reference's.

    python scripts/compare_engine_outputs.py docs/results/engines_cpu/bleu \
        --pairs beam1-noamt-float32:beam1-ctranslate2-float32,beam1-ctranslate2-int8 \
        --pairs beam5-noamt-float32:beam5-ctranslate2-float32,beam5-ctranslate2-int8

Each folder holds what ``noamt-evaluate out_dir=...`` writes: ``results.json`` and
``<split>.hyp.<lang>``. Prints a table and, with ``--json``, the rows as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from noamt.results import read_results_json


def compare(root: Path, reference: str, others: list[str]) -> list[dict]:
    """One row per (folder, split): BLEU, its difference to ``reference``'s and identical lines."""
    base = read_results_json(root / reference / "results.json")
    lang = base["tgt_lang"]
    rows = []
    for name in [reference, *others]:
        results = read_results_json(root / name / "results.json")
        for split, scores in results["splits"].items():
            ours = (root / reference / f"{split}.hyp.{lang}").read_text(encoding="utf-8").splitlines()
            theirs = (root / name / f"{split}.hyp.{lang}").read_text(encoding="utf-8").splitlines()
            identical = sum(a == b for a, b in zip(ours, theirs, strict=True))
            rows.append(
                {
                    "reference": reference,
                    "folder": name,
                    "split": split,
                    "bleu": round(scores["bleu"], 2),
                    "delta_bleu": round(scores["bleu"] - base["splits"][split]["bleu"], 2),
                    "identical_lines": identical,
                    "lines": len(ours),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the folder holding the evaluation folders")
    parser.add_argument("--pairs", action="append", required=True, help="REFERENCE:OTHER[,OTHER...]")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rows = []
    for pair in args.pairs:
        reference, _, others = pair.partition(":")
        rows += compare(args.root, reference, [o for o in others.split(",") if o])
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    for r in rows:
        share = r["identical_lines"] / r["lines"]
        print(
            f"{r['folder']:>26} {r['split']:>17}  BLEU {r['bleu']:6.2f}  Δ {r['delta_bleu']:+.2f}  "
            f"identical to {r['reference']}: {share:.2%} of {r['lines']}"
        )


if __name__ == "__main__":
    main()
