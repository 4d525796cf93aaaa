"""scripts/benchmark_throughput.py: the real training step, timed past the end of an epoch."""

import json

import pytest
from helpers.runs import run_script

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses


def test_the_benchmark_runs_more_updates_than_an_epoch_has_batches(toy_data_dir, tmp_path):
    overrides = [
        f"data.dir={toy_data_dir}",
        "data.max_train_examples=60",
        "data.max_eval_examples=10",
        "tokenizer.vocab_size=600",
        f"tokenizer.cache_dir={tmp_path}",
        "model=tiny",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "trainer.max_tokens=512",
        "device=cpu",
        "device.num_threads=1",
    ]
    proc = run_script("benchmark_throughput.py", *overrides, "--updates", "12", "--warmup", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["updates"] == 12 and result["warmup_updates"] == 2
    assert 14 > 2 * result["batches_per_epoch"]  # the 14 updates span more than two epochs
    assert result["target_tokens_per_s"] > 0 and result["median_ms_per_update"] > 0
    low, high = result["p10_p90_ms_per_update"]
    assert 0 < low <= result["median_ms_per_update"] <= high
    assert 0 < result["mfu_vs_measured_peak"] < 1.5
    # tokens/s is the timed updates' target tokens over their summed seconds, each printed rounded
    tokens = result["target_tokens_per_update"] * result["updates"]
    rounding = 0.005 * result["target_tokens_per_s"] + 0.05 * (result["updates"] + result["seconds"])
    assert result["target_tokens_per_s"] * result["seconds"] == pytest.approx(tokens, abs=rounding)
