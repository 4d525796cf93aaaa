"""Synthetic study runs with known answers: sentences and degraded hypotheses, metrics.jsonl
records, finished and evaluated run folders, and a small benchmark of two schedules over three seeds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from sacrebleu.metrics import BLEU

from noamt.likelihood import SentenceNLL, likelihood_summary, nll_file_name, write_sentence_nll
from noamt.run_dir import LAST
from noamt_study.collect import collect_run
from noamt_study.plan import Job


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(60)]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))) for _ in range(n)]


def degrade(texts: list[str], fraction: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join("zz" if rng.random() < fraction else w for w in t.split()) for t in texts]


def write_records(run_dir, records):
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def run_record(step, time, resumed=False, peak=0.01):
    return {
        "kind": "run",
        "step": step,
        "time": time,
        "resumed": resumed,
        "schedule": "noam",
        "peak_lr": peak,
        "schedule_params": {"d_model": 32, "warmup_steps": 2, "factor": 1.0},
        "device": "cpu",
    }


def valid_record(step, time, loss, bleu=None):
    return {"kind": "valid", "step": step, "time": time, "loss": loss, **({} if bleu is None else {"bleu": bleu})}


def end_record(step, time, interrupted=False):
    return {"kind": "end", "step": step, "time": time, "interrupted": interrupted}


def sentence_nll(tokens: list[int], per_token: float, seed: int) -> SentenceNLL:
    """Per-sentence likelihoods near ``per_token`` nats per token, with sentence-level noise."""
    rng = np.random.default_rng(seed)
    counts = np.asarray(tokens, dtype=np.int64)
    return SentenceNLL(counts * per_token * rng.uniform(0.8, 1.2, len(counts)), counts)


def fake_run(
    root, job: Job, scores: dict, hypotheses: dict, final_loss: float, peak: float = 0.01, nll: dict | None = None
):
    """A finished 6-update run with its evaluation: scores = {split: (bleu, chrf)}, and each
    split's likelihood file, ``nll[split]`` (a SentenceNLL) or three sentences at 2.0 nats per token."""
    run_dir = root / "runs" / job.name
    write_records(
        run_dir,
        [
            run_record(0, 100.0, peak=peak),
            valid_record(0, 101.0, 9.0),
            valid_record(3, 110.0, 6.0, 1.0),
            valid_record(6, 120.0, final_loss, 2.0),
            end_record(6, 121.0),
        ],
    )
    signatures = {"bleu": "nrefs:1|tok:13a", "chrf": "nrefs:1|nc:6", "ter": "tercom"}
    results = {
        "checkpoint": str(run_dir / "checkpoints" / LAST),
        "step": 6,
        "data": "toy",
        "src_lang": "en",
        "tgt_lang": "de",
        "tokenized": False,
        "decoding": {"beam_size": 1},
        "splits": {
            s: {"bleu": b, "chrf": c, "ter": 50.0, "n_sentences": 3, "signatures": signatures}
            for s, (b, c) in scores.items()
        },
    }
    out = run_dir / "eval"
    out.mkdir()
    for split, entry in results["splits"].items():
        per_sentence = (nll or {}).get(split) or SentenceNLL(np.array([8.0, 10.0, 12.0]), np.array([4, 5, 6]))
        write_sentence_nll(out / nll_file_name(split), per_sentence)
        entry["likelihood"] = likelihood_summary(per_sentence, nll_file_name(split))
    (out / "results.json").write_text(json.dumps(results))
    for split, hyps in hypotheses.items():
        (out / f"{split}.hyp.de").write_text("".join(h + "\n" for h in hyps))
    return run_dir


def corpus_bleu(hyps, refs):
    return BLEU().corpus_score(hyps, [refs]).score


def synthetic_benchmark(root: Path) -> tuple[Path, list, dict[str, list[str]]]:
    """noam and cosine over seeds 1-3: known validation scores; noam's test hypotheses are better.
    Returns ``root``, the collected runs and the test references."""
    refs = sentences(150, 0)
    valid_bleu = {"noam": [30.0, 32.0, 34.0], "cosine": [20.0, 21.0, 25.0]}
    runs = []
    for seed in (1, 2, 3):
        for name, quality in (("noam", 0.1), ("cosine", 0.4)):
            job = Job(name, seed)
            hyps = degrade(refs, quality, seed)
            scores = {"valid": (valid_bleu[name][seed - 1], 50.0 + seed), "test_a": (corpus_bleu(hyps, refs), 60.0)}
            loss = {"noam": 4.0, "cosine": 5.0}[name] + seed / 10
            nll = sentence_nll([len(r.split()) + 1 for r in refs], 1.0 + quality + seed / 100, seed)
            fake_run(root, job, scores, {"test_a": hyps}, loss, nll={"test_a": nll})
            runs.append(collect_run(job, root / "runs" / job.name))
    return root, runs, {"test_a": refs}
