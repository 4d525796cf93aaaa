"""The significance checks as a user runs them: scripts/seed_null_check.py on hypothesis files of
one setup, scripts/calibrate_significance.py on simulated comparisons."""

import json
import random

import pytest
from helpers.runs import run_script
from helpers.study_runs import degrade, sentences
from sacrebleu.metrics import BLEU

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses


def write_runs(tmp_path, n_runs: int) -> tuple:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(50)]
    refs = [" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))) for _ in range(200)]
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n")
    hyps = []
    for run in range(n_runs):  # the same quality for every run: only the "seed" differs
        noisy = [" ".join("zz" if rng.random() < 0.3 else w for w in r.split()) for r in refs]
        path = tmp_path / f"run{run}.hyp"
        path.write_text("\n".join(noisy) + "\n")
        hyps.append(str(path))
    return tmp_path / "ref.txt", hyps


def test_seed_null_check_compares_every_pair_and_every_split(tmp_path):
    refs, hyps = write_runs(tmp_path, 4)
    out = tmp_path / "null.json"
    options = ["--refs", str(refs), "--hyps", *hyps, "--resamples", "200", "--out", str(out)]
    result = run_script("seed_null_check.py", *options)
    assert result.returncode == 0, result.stderr
    saved = json.loads(out.read_text())
    assert len(saved["pairs"]) == 6 and len(saved["splits"]) == 3  # 4 choose 2; {0,x} against the rest
    assert all(0 < r["bootstrap_p"] <= 1 for r in saved["pairs"])
    assert all(len(r["a"]) == 2 and 0 < r["seed_sentence_p"] <= 1 for r in saved["splits"])
    assert saved["refs"] == "ref.txt" and "pairs, bootstrap_p:" in result.stdout
    one = run_script("seed_null_check.py", "--refs", str(refs), "--hyps", hyps[0])
    assert one.returncode == 2 and "give 2 runs or more" in one.stderr


def test_calibration_script_writes_a_rate_per_test_and_scenario(tmp_path):
    result = run_script("calibrate_significance.py", "--replicates", "4", "--resamples", "50", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["meta"]["replicates"] == 4 and len(saved["scenarios"]) == 6
    for row in saved["scenarios"]:
        rates = row["rejection_rate_at_5pct"]
        assert {"sentences only (paired bootstrap)", "seeds only (paired t-test)", "seeds and sentences"} <= set(rates)
        assert all(rate in (0.0, 0.25, 0.5, 0.75, 1.0) for rate in rates.values())


def test_bleu_interval_script_brackets_the_corpus_score(tmp_path):
    refs = sentences(300, 7)
    hyps = degrade(refs, 0.3, 7)
    (tmp_path / "refs.txt").write_text("".join(r + "\n" for r in refs))
    (tmp_path / "hyps.txt").write_text("".join(h + "\n" for h in hyps))
    expected = BLEU(tokenize="none", smooth_method="none", force=True).corpus_score(hyps, [refs]).score
    options = ["--hyps", str(tmp_path / "hyps.txt"), "--refs", str(tmp_path / "refs.txt"), "--resamples", "200"]
    result = run_script("bootstrap_bleu_interval.py", *options, "--threshold", str(expected))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["bleu"] == pytest.approx(expected) and out["n_sentences"] == 300
    low, high = out["interval"]
    assert low < out["bleu"] < high and high - low < 10
    assert 0.3 < out["share_at_or_above_threshold"] < 0.7  # the resamples centre on the full-sample score
    assert out["refs"] == "refs.txt"  # a file name, never the machine's path
