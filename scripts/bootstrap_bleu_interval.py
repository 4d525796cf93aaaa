"""Bootstrap interval of one system's corpus BLEU over the test sentences.

The sentences are resampled with replacement (``--resamples`` draws of N out of N, numpy
``default_rng(--seed)``, drawn as ``noamt_study.stats.bootstrap_differences`` draws them) and
BLEU is recomputed on each resample from summed sentence statistics
(``noamt_study.stats.bleu_statistics`` and ``bleu_from_statistic_rows``). Prints, as one JSON
object: BLEU on all sentences (and sacreBLEU's own corpus score, which must equal it), the
central 95% of the resampled scores (percentile interval) and the share of resamples at or
above ``--threshold``. The trained model is held fixed: the interval says how much the score
moves with other test sentences, not with other seeds.

With ``--tokenize none`` (the default) BLEU is computed on whitespace tokens, as
multi-bleu.perl does. ``bleu_from_statistic_rows`` smooths an n-gram order with no match;
the script checks that every resample matches at every order, so the scores are unsmoothed.

    python scripts/bootstrap_bleu_interval.py \\
        --hyps docs/results/multi30k_tiny_paper/ensemble_cpu/ensemble/test_2016_flickr.hyp.de \\
        --refs <multi30k>/tok/test_2016_flickr.lc.norm.tok.de --resamples 1000 --seed 12345 --threshold 42.0
"""

import argparse
import json
from pathlib import Path

import numpy as np
from sacrebleu.metrics import BLEU

from noamt.bounds import finite_float, non_negative_int, open_fraction, resample_count
from noamt.data import read_lines
from noamt_study.stats import MAX_NGRAM_ORDER, bleu_from_statistic_rows, bleu_statistics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hyps", type=Path, required=True, help="hypothesis file, one sentence per line")
    parser.add_argument("--refs", type=Path, required=True, help="reference file, one sentence per line")
    parser.add_argument("--tokenize", default="none", help="sacreBLEU tokenizer: none (tokenized text) or 13a")
    parser.add_argument("--resamples", type=resample_count, default=1000, help="2 to 100000 (default 1000)")
    parser.add_argument("--seed", type=non_negative_int, default=12345, help="numpy default_rng seed of the draws")
    parser.add_argument("--threshold", type=finite_float, help="also report the share of resamples scoring >= this")
    parser.add_argument("--confidence", type=open_fraction, default=0.95, help="of the interval, in (0, 1)")
    args = parser.parse_args(argv)

    hyps, refs = read_lines(args.hyps), read_lines(args.refs)
    stats = bleu_statistics(hyps, refs, args.tokenize)  # (N, 10)
    n = stats.shape[0]
    rng = np.random.default_rng(args.seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=args.resamples).astype(np.float64)  # (B, N)
    totals = weights @ stats  # (B, 10) summed statistics of each resample
    matches = totals[:, 2 : 2 + MAX_NGRAM_ORDER]
    if (matches == 0).any():
        raise SystemExit("a resample has no match at some n-gram order: its BLEU would be smoothed")
    scores = bleu_from_statistic_rows(totals)
    full = float(bleu_from_statistic_rows(stats.sum(axis=0)[None, :])[0])
    metric = BLEU(tokenize=args.tokenize, smooth_method="none", force=True)  # force: tokenized text on purpose
    sacre = metric.corpus_score(hyps, [refs])
    tail = (1.0 - args.confidence) / 2.0
    low, high = np.quantile(scores, [tail, 1.0 - tail])
    result = {
        "hyps": args.hyps.name if args.hyps.is_absolute() else str(args.hyps),
        "refs": args.refs.name,
        "n_sentences": n,
        "tokenize": args.tokenize,
        "bleu": full,
        "sacrebleu_corpus_bleu": sacre.score,
        "sacrebleu_signature": str(metric.get_signature()),
        "resamples": args.resamples,
        "seed": args.seed,
        "confidence": args.confidence,
        "interval": [float(low), float(high)],
        "resampled_mean": float(scores.mean()),
        "resampled_std": float(scores.std(ddof=1)),
    }
    if args.threshold is not None:
        result["threshold"] = args.threshold
        result["share_at_or_above_threshold"] = float(np.mean(scores >= args.threshold))
    if abs(full - sacre.score) > 1e-6:
        raise SystemExit(f"BLEU from the sentence statistics {full} differs from sacreBLEU's {sacre.score}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
