"""Translate with a ``noamt-export format=transformers`` folder through transformers'
``pipeline("translation")`` alone (no noamt import: run it where only transformers is
installed), and compare the output with noamt's hypotheses of the same sources.

    python scripts/check_transformers_pipeline.py --model hf/my-run --source test_2016_flickr.en.gz \
        --noamt runs/my-run/eval/test_2016_flickr.hyp.de --beam 5 --out pipeline/test_2016_flickr.hyp.de

Each sentence gets noamt's length limit L = min(floor(a |x| + b), max_positions - 1), with |x|
the source's token count including the ``</s>`` the export's tokenizer appends and a, b =
``--max-len-a``, ``--max-len-b`` (noamt's defaults 1.2 and 10), passed as ``max_length=L + 2``
(the start token, L tokens, ``</s>``); everything else comes from the folder's generation config.
Prints how many lines equal noamt's and, with ``--reference``, both sides' sacreBLEU. The
translation pipeline is in transformers 4 (5.0 removed it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

MAX_BEAM_SIZE, MAX_OUTPUT_LENGTH = 1024, 65536  # noamt's bounds of decoding.beam_size and max_len_a, max_len_b


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the format=transformers folder")
    parser.add_argument("--source", type=Path, required=True, help="source sentences, one per line (.gz read too)")
    parser.add_argument("--noamt", type=Path, required=True, help="noamt's hypotheses of the same sources")
    parser.add_argument("--reference", type=Path, help="references, to score both sides with sacreBLEU")
    parser.add_argument("--beam", type=bounded(int, 1, MAX_BEAM_SIZE), default=5)
    parser.add_argument("--max-len-a", type=bounded(float, 0, MAX_OUTPUT_LENGTH), default=1.2)
    parser.add_argument("--max-len-b", type=bounded(float, 0, MAX_OUTPUT_LENGTH), default=10.0)
    parser.add_argument("--out", type=Path, help="write the pipeline's hypotheses here")
    args = parser.parse_args(argv)

    import transformers

    if "translation" not in transformers.pipelines.get_supported_tasks():
        sys.exit(f"transformers {transformers.__version__} has no translation pipeline (5.0 removed it): use 4.x")
    translator = transformers.pipeline("translation", model=str(args.model), device="cpu")
    max_positions = translator.model.config.max_position_embeddings
    sources, expected = read_lines(args.source), read_lines(args.noamt)
    if len(sources) != len(expected):
        sys.exit(f"{args.noamt}: {len(expected)} lines for the {len(sources)} of {args.source}")
    outputs = []
    for i, text in enumerate(sources, 1):
        if i % 200 == 0:
            print(f"{args.source.name}: {i} of {len(sources)} sentences", file=sys.stderr, flush=True)
        n_tokens = len(translator.tokenizer(text)["input_ids"])
        limit = min(math.floor(args.max_len_a * n_tokens + args.max_len_b), max_positions - 1)
        (result,) = translator(text, max_length=limit + 2, num_beams=args.beam)
        outputs.append(result["translation_text"])
    identical = sum(a == b for a, b in zip(outputs, expected, strict=True))
    report = {
        "transformers": transformers.__version__,
        "model": str(args.model),
        "source": args.source.name,
        "beam": args.beam,
        "lines": len(outputs),
        "identical_to_noamt": identical,
    }
    if args.reference is not None:
        import sacrebleu

        references = [read_lines(args.reference)]
        report["bleu_pipeline"] = round(sacrebleu.corpus_bleu(outputs, references).score, 2)
        report["bleu_noamt"] = round(sacrebleu.corpus_bleu(expected, references).score, 2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(line + "\n" for line in outputs), encoding="utf-8")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
