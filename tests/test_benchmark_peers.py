"""scripts/benchmark_peers.py and noamt_study.peers: Marian of our shape, trained on our batches."""

import json
import statistics

import pytest
from helpers.runs import run_script

from noamt.model import ModelConfig, Transformer

transformers = pytest.importorskip("transformers")

from noamt_study.peers import marian_model, trainable_parameters  # noqa: E402

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(name="tiny", encoder_layers=4, decoder_layers=4, d_model=128, n_heads=4, d_ff=256, dropout=0.3),
        ModelConfig(
            name="small",
            encoder_layers=3,
            decoder_layers=3,
            d_model=256,
            n_heads=4,
            d_ff=1024,
            dropout=0.1,
            attention_dropout=0.1,
        ),
    ],
    ids=["tiny", "small"],
)
def test_marian_has_our_shape_and_trains_as_many_parameters(cfg):
    marian = marian_model(cfg, 1000, 0, 1, 2)
    mc = marian.config
    assert (mc.encoder_layers, mc.decoder_layers, mc.d_model, mc.encoder_attention_heads, mc.encoder_ffn_dim) == (
        cfg.encoder_layers,
        cfg.decoder_layers,
        cfg.d_model,
        cfg.n_heads,
        cfg.d_ff,
    )
    assert marian.get_input_embeddings().weight is marian.get_output_embeddings().weight  # tied
    assert trainable_parameters(marian) == trainable_parameters(Transformer(cfg, 1000, 1000, 0))


def test_pre_norm_has_no_marian_twin():
    with pytest.raises(ValueError, match="Marian is post-norm"):
        marian_model(ModelConfig(pre_norm=True), 100, 0, 1, 2)


def test_the_peer_benchmark_alternates_rounds_on_the_same_batches_beside_a_busy_process(toy_data_dir, tmp_path):
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
    proc = run_script(
        "benchmark_peers.py",
        *overrides,
        "--rounds",
        "2",
        "--block",
        "3",
        "--decode-length",
        "5",
        "--beam",
        "2",
        "--contention",
        "1",
        "--out",
        str(tmp_path / "out"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(result["rounds"]) == 2
    assert result["trainable_parameters"]["noamt"] == result["trainable_parameters"]["marian"]
    for r in result["rounds"]:
        assert r["noamt_tok_s"] > 0 and r["marian_tok_s"] > 0
        assert r["ratio"] == pytest.approx(r["noamt_tok_s"] / r["marian_tok_s"], rel=1e-2)
    ratios = [r["ratio"] for r in result["rounds"]]
    assert result["ratio_range"] == [min(ratios), max(ratios)]
    assert result["median_ratio"] == pytest.approx(statistics.median(ratios), abs=1e-3)  # rounded to 3 decimals
    decoding = result["decoding"]
    assert decoding["sentences"] == 10 and decoding["length"] == 5 and len(decoding["rounds"]) == 2
    assert all(r["noamt_sent_s"] > 0 and r["marian_sent_s"] > 0 for r in decoding["rounds"])
    assert result["contention"] == 1 and "--contention 1" in result["command"]
    # device.num_threads=1 fixes noamt's count and, without --marian-threads, Marian's
    assert all(r["noamt_threads"] == r["marian_threads"] == 1 for r in result["rounds"] + decoding["rounds"])
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == result
    output = (tmp_path / "out" / "output.txt").read_text()
    assert "1 busy process beside it" in output and f"median ratio noamt / Marian: {result['median_ratio']}" in output
