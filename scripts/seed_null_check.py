"""Null check on real runs: several runs of one and the same setup, differing only in the seed,
compared with each other as if they were two systems. Nothing differs between them but the
seed, so every "significant" difference is a false positive.

Every pair of runs gets the paired bootstrap over test sentences (which holds the trained models
fixed); with 4 runs or more, every split of the runs into two groups of n // 2 also gets the
seed-and-sentence test (which counts the seeds). Rejections at 5% are counted per test.

    python scripts/seed_null_check.py --refs tok/test_2016_flickr.lc.norm.tok.de --tokenize none \\
        --hyps seed1/test_2016_flickr.hyp.de seed2/test_2016_flickr.hyp.de seed3/test_2016_flickr.hyp.de
"""

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from noamt.bounds import resample_count
from noamt.data import read_lines
from noamt_study.seed_sentence_test import seed_sentence_test_from
from noamt_study.stats import bleu_from_statistics, bleu_statistics, bootstrap_differences, paired_bootstrap_from

ALPHA = 0.05


def pairs(stats: list[np.ndarray], names: list[str], resamples: int) -> list[dict]:
    rows = []
    for i, j in itertools.combinations(range(len(stats)), 2):
        test = paired_bootstrap_from(*bootstrap_differences([stats[i]], [stats[j]], resamples))
        rows.append({"a": names[i], "b": names[j], "delta": test.delta, "bootstrap_p": test.p_value})
    return rows


def splits(stats: list[np.ndarray], names: list[str], resamples: int) -> list[dict]:
    """Every split of the runs into two groups of n // 2 (each split once, runs paired in order)."""
    k, rows = len(stats) // 2, []
    for group in itertools.combinations(range(len(stats)), k):
        rest = [i for i in range(len(stats)) if i not in group][:k]
        if group[0] != 0:  # (A, B) and (B, A) are the same split
            continue
        observed, resampled = bootstrap_differences([stats[i] for i in group], [stats[i] for i in rest], resamples)
        rows.append(
            {
                "a": [names[i] for i in group],
                "b": [names[i] for i in rest],
                "delta": float(observed.mean()),
                "seed_sentence_p": seed_sentence_test_from(observed, resampled).p_value,
                "bootstrap_p": paired_bootstrap_from(observed, resampled).p_value,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", type=Path, required=True, help="reference file, one sentence per line")
    parser.add_argument("--hyps", type=Path, nargs="+", required=True, help="one hypothesis file per run (2 or more)")
    parser.add_argument("--tokenize", default="13a", help="sacreBLEU tokenizer: 13a, or none for tokenized text")
    parser.add_argument("--resamples", type=resample_count, default=1000, help="2 to 100000 (default 1000)")
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    if len(args.hyps) < 2:
        parser.error("--hyps: give 2 runs or more")
    refs = read_lines(args.refs)
    stats = [bleu_statistics(read_lines(h), refs, args.tokenize) for h in args.hyps]
    names = [str(h) for h in args.hyps]
    for name, s in zip(names, stats, strict=True):
        print(f"{name}: BLEU {bleu_from_statistics(s.sum(axis=0)):.2f}")
    result = {
        "refs": args.refs.name,
        "tokenize": args.tokenize,
        "resamples": args.resamples,
        "pairs": pairs(stats, names, args.resamples),
    }
    for row in result["pairs"]:
        print(f"{row['a']} vs {row['b']}: delta {row['delta']:+.2f}, paired bootstrap p = {row['bootstrap_p']:.3f}")
    if len(stats) >= 4:
        result["splits"] = splits(stats, names, args.resamples)
        for row in result["splits"]:
            print(
                f"{len(row['a'])} vs {len(row['b'])} runs: delta {row['delta']:+.2f}, seed-and-sentence p = "
                f"{row['seed_sentence_p']:.3f}, bootstrap p = {row['bootstrap_p']:.3f}"
            )
    for kind, key in (("pairs", "bootstrap_p"), ("splits", "bootstrap_p"), ("splits", "seed_sentence_p")):
        if kind in result:
            hits = sum(r[key] < ALPHA for r in result[kind])
            print(f"{kind}, {key}: {hits} of {len(result[kind])} below {ALPHA}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
