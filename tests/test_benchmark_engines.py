"""scripts/benchmark_engines.py: the engines (CTranslate2 in each compute type asked for), one set of
weights, alternating timed rounds."""

import json

import pytest
from helpers.runs import run_script

pytest.importorskip("transformers")
pytest.importorskip("ctranslate2")

pytestmark = pytest.mark.slow  # runs the script in a subprocess


def test_every_engine_is_timed_on_the_same_forced_work(toy_data_dir, tmp_path):
    overrides = [
        f"data.dir={toy_data_dir}",
        "data.max_train_examples=60",
        "data.max_eval_examples=10",
        "tokenizer.vocab_size=600",
        f"tokenizer.cache_dir={tmp_path}",
        "model=tiny",
        "model.pre_norm=false",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
    ]
    proc = run_script(
        "benchmark_engines.py",
        *overrides,
        "--rounds",
        "2",
        "--length",
        "4",
        "--beam",
        "2",
        "--sentences",
        "8",
        "--threads",
        "1",
        "--compute-types",
        "int8,float32",
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    engines = ["noamt", "generate", "ct2_int8", "ct2_float32"]
    assert list(result["median_ratio_to_generate"]) == engines
    assert result["machine"]["device"].startswith("cpu (cpu), fp32, 1 threads")
    assert (result["sentences"], result["forced_length"], result["beam_size"]) == (8, 4, 2)
    assert len(result["rounds_sentences_per_s"]) == 2
    assert all(r[e] > 0 for r in result["rounds_sentences_per_s"] for e in engines)
    assert result["median_ratio_to_generate"]["generate"] == 1.0
    assert result["greedy_agreement_with_noamt"] == {}  # random weights: no agreement measured
    assert "ct2_int8: median" in proc.stdout


def test_a_compute_type_the_device_lacks_is_named_in_one_line(tmp_path):
    proc = run_script("benchmark_engines.py", "--compute-types", "float32,float16")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("--compute-types: cpu lacks float16; it has ")
