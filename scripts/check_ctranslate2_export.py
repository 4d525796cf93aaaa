"""Translate with a ``noamt-export format=ctranslate2`` folder through ``ctranslate2`` and
``tokenizers`` alone (no noamt or torch import: run it where only those two are installed), and
compare the output with noamt's hypotheses of the same sources.

    python scripts/check_ctranslate2_export.py --model ct2/my-run --source test_2016_flickr.en.gz \
        --noamt runs/my-run/eval/test_2016_flickr.hyp.de --beam 5 --out ct2/test_2016_flickr.hyp.de

The steps are the ones ``noamt-translate engine=ctranslate2`` takes, written out for a user of
the folder: the folder's ``tokenizer.json`` encodes each line without special tokens (a blank
line translates to an empty one), a source longer than ``max_positions - 1`` tokens (the
folder's ``noamt.json``) is cut to that length, and each sentence gets noamt's length limit
L = min(floor(a |x| + b), max_positions - 1), with |x| its token count including the ``</s>``
CTranslate2 appends and a, b = ``--max-len-a``, ``--max-len-b`` (noamt's defaults 1.2 and 10).
Sentences sharing a limit are searched together with ``max_decoding_length=L``,
``min_decoding_length`` = ``--min-len`` (noamt's default 0; CTranslate2's own default 1 bans
``</s>`` at the first step, which changes what the beam holds) and ``return_end_token=True``
(without it CTranslate2 leaves ``</s>`` out of |y| in the length penalty's sum log p / |y|^alpha,
where noamt counts it); the output tokens, ``</s>`` and the other special tokens removed, are
decoded by the tokenizer. Prints one
JSON line: how many lines equal noamt's and, with ``--reference``, both sides' sacreBLEU.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

PAD = "<pad>"  # noamt's padding token: id 0, never in an output
MAX_BEAM_SIZE, MAX_LENGTH_PENALTY, MAX_OUTPUT_LENGTH, MAX_THREADS = 1024, 10.0, 65536, 1024  # noamt's bounds


def bounded(kind: type[int] | type[float], least: float, most: float) -> Callable[[str], float]:
    """An argparse ``type``: a finite ``kind`` from ``least`` to ``most``, noamt's bounds of the same
    setting (written out here: this script imports no noamt)."""

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text}: must be {'an integer' if kind is int else 'a number'}") from None
        if not (math.isfinite(value) and least <= value <= most):
            raise argparse.ArgumentTypeError(f"{text}: must be in [{least:g}, {most:g}]")
        return value

    return convert


def read_lines(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode("utf-8").splitlines()


def translate(args: argparse.Namespace, sources: list[str]) -> list[str]:
    """One translation per source line, in order (the steps in the module docstring)."""
    import ctranslate2
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(args.model / "tokenizer.json"))
    config = json.loads((args.model / "config.json").read_text(encoding="utf-8"))
    max_positions = json.loads((args.model / "noamt.json").read_text(encoding="utf-8"))["max_positions"]
    specials = {config["bos_token"], config["eos_token"], config["unk_token"], PAD}
    translator = ctranslate2.Translator(
        str(args.model), device="cpu", compute_type=args.compute_type, intra_threads=args.threads
    )
    by_limit: dict[int, list[int]] = defaultdict(list)  # L -> indices of the sentences with that limit
    tokens: dict[int, list[str]] = {}
    for i, text in enumerate(sources):
        if text.strip():
            tokens[i] = tokenizer.encode(text, add_special_tokens=False).tokens[: max_positions - 1]
            limit = min(math.floor(args.max_len_a * (len(tokens[i]) + 1) + args.max_len_b), max_positions - 1)
            by_limit[max(limit, 0)].append(i)
    outputs, done = [""] * len(sources), 0
    for limit, group in sorted(by_limit.items()):
        done += len(group)
        if limit == 0:  # only </s> fits: an empty translation
            continue
        results = translator.translate_batch(
            [tokens[i] for i in group],
            beam_size=args.beam,
            length_penalty=args.length_penalty,
            max_decoding_length=limit,
            min_decoding_length=args.min_len,
            max_input_length=0,
            max_batch_size=4096,
            batch_type="tokens",
            return_end_token=True,
        )
        for i, result in zip(group, results, strict=True):
            ids = [tokenizer.token_to_id(t) for t in result.hypotheses[0] if t not in specials]
            outputs[i] = tokenizer.decode(ids, skip_special_tokens=False)
        print(f"{args.source.name}: {done} of {len(tokens)} sentences", file=sys.stderr, flush=True)
    return outputs


def compare(outputs: list[str], expected: list[str] | None, reference: Path | None) -> dict:
    """Lines equal to noamt's and sacreBLEU of both sides, as far as the files given allow."""
    report = {}
    if expected is not None:
        report["identical_to_noamt"] = sum(a == b for a, b in zip(outputs, expected, strict=True))
    if reference is not None:
        import sacrebleu

        references = [read_lines(reference)]
        for key, lines in (("bleu", outputs), ("bleu_noamt", expected)):
            if lines is not None:
                report[key] = round(sacrebleu.corpus_bleu(lines, references).score, 2)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the format=ctranslate2 folder")
    parser.add_argument("--source", type=Path, required=True, help="source sentences, one per line (.gz read too)")
    parser.add_argument("--noamt", type=Path, help="noamt's hypotheses of the same sources, to compare with")
    parser.add_argument("--reference", type=Path, help="references, to score the output (and noamt's) with sacreBLEU")
    parser.add_argument("--beam", type=bounded(int, 1, MAX_BEAM_SIZE), default=5)
    parser.add_argument("--length-penalty", type=bounded(float, -MAX_LENGTH_PENALTY, MAX_LENGTH_PENALTY), default=1.0)
    parser.add_argument("--max-len-a", type=bounded(float, 0, MAX_OUTPUT_LENGTH), default=1.2)
    parser.add_argument("--max-len-b", type=bounded(float, 0, MAX_OUTPUT_LENGTH), default=10.0)
    parser.add_argument(
        "--min-len", type=bounded(int, 0, MAX_OUTPUT_LENGTH), default=0, help="tokens before </s> may end a hypothesis"
    )
    parser.add_argument("--compute-type", default="float32", help="float32, int8, ... as the CPU supports")
    parser.add_argument("--threads", type=bounded(int, 1, MAX_THREADS), default=1)
    parser.add_argument("--out", type=Path, help="write the hypotheses here")
    args = parser.parse_args(argv)
    for name in ("config.json", "noamt.json", "tokenizer.json"):
        if not (args.model / name).is_file():
            sys.exit(f"{args.model}: no {name}; is it a folder written by noamt-export format=ctranslate2?")

    import ctranslate2

    sources = read_lines(args.source)
    expected = read_lines(args.noamt) if args.noamt is not None else None
    if expected is not None and len(expected) != len(sources):
        sys.exit(f"{args.noamt}: {len(expected)} lines for the {len(sources)} of {args.source}")
    outputs = translate(args, sources)
    report = {
        "ctranslate2": ctranslate2.__version__,
        "model": str(args.model),
        "source": args.source.name,
        "beam": args.beam,
        "compute_type": args.compute_type,
        "lines": len(outputs),
        **compare(outputs, expected, args.reference),
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in outputs)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
