"""sacreBLEU scores and signatures, the multi-bleu-comparable tokenized BLEU, result files."""

import json
import math

import pytest
import torch

from noamt.data import (
    EncodedSplit,
    TokenBudgetBatches,
    TokenizerConfig,
    read_lines,
    train_tokenizer,
)
from noamt.decoding import DecodingConfig, greedy_search
from noamt.evaluation import (
    AS_GIVEN_BLEU_LABEL,
    TOKENIZED_BLEU_LABEL,
    empty_hypotheses_warning,
    format_table,
    moses_tokenize,
    score,
    tokenized_bleu,
    tokenized_reference_file,
    write_results,
)
from noamt.model import ModelConfig, Transformer
from noamt.results import EvaluationResults, ResultsError, read_results_json
from noamt.validation import validation_bleu

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny matrices: one thread avoids oversubscribing a shared CPU


SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest."]


def test_identical_hypotheses_score_100_with_signatures():
    result = score(SENTENCES, SENTENCES)
    assert result["bleu"] == pytest.approx(100.0)
    assert result["chrf"] == pytest.approx(100.0)
    assert result["ter"] == pytest.approx(0.0)
    assert result["signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp")
    assert "version:" in result["signatures"]["chrf"] and "version:" in result["signatures"]["ter"]
    assert all(isinstance(result[m], float) for m in ("bleu", "chrf", "ter"))


def test_bleu_of_a_known_small_case():
    # p1..p4 = 5/6, 3/5, 1/4 and 0/3, smoothed by sacreBLEU's "exp" method to 1/(2*3); BP = 1
    result = score(["the cat sat on the mat"], ["the cat is on the mat"])
    expected = 100 * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(1 / 4) + math.log(1 / 6)) / 4)
    assert result["bleu"] == pytest.approx(expected, abs=1e-6)  # 37.99


def test_brevity_penalty_of_a_short_hypothesis():
    # every n-gram precision is 1; BP = exp(1 - 5/4)
    assert score(["a b c d"], ["a b c d e"])["bleu"] == pytest.approx(100 * math.exp(-0.25), abs=1e-6)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="got 2 hypotheses and 3 references"):
        score(SENTENCES[:2], SENTENCES)


def test_moses_pipeline_lowercases_normalises_tokenizes_and_escapes():
    assert moses_tokenize("Ein Mann's Hund.", "de") == "ein mann &apos; s hund ."
    assert moses_tokenize('A "big" dog & a cat…', "en") == "a &quot; big &quot; dog &amp; a cat ..."
    assert moses_tokenize("A man’s dog", "en") == "a man &apos;s dog"


def test_tokenized_bleu_is_labelled_and_lowercase_insensitive():
    tok_refs = [moses_tokenize(s, "de") for s in SENTENCES]
    result = tokenized_bleu([s.upper() for s in SENTENCES], tok_refs, "de")
    assert result["score"] == pytest.approx(100.0)
    assert result["label"] == TOKENIZED_BLEU_LABEL
    assert "tok:none" in result["signature"]


def test_raw_references_reproduce_the_official_tokenized_ones(multi30k_dir):
    """The pipeline gives Multi30k's own lc.norm.tok files back from the raw text."""
    raw = read_lines(multi30k_dir / "test_2016_flickr.de.gz")
    official = read_lines(tokenized_reference_file(multi30k_dir, "test_2016_flickr", "de"))
    assert [moses_tokenize(s, "de") for s in raw[:200]] == official[:200]
    assert tokenized_bleu(raw, official, "de")["score"] == pytest.approx(100.0)


def test_validation_bleu_translates_greedily_in_split_order(toy_data_dir):
    src = read_lines(toy_data_dir / "val.en")[:12]
    tgt = read_lines(toy_data_dir / "val.de")[:12]
    tokenizer = train_tokenizer(src + tgt, TokenizerConfig(vocab_size=300, min_frequency=1))
    torch.manual_seed(0)
    cfg = ModelConfig(encoder_layers=1, decoder_layers=1, d_model=32, n_heads=2, d_ff=64, max_positions=128)
    model = Transformer(cfg, tokenizer.vocab_size, tokenizer.vocab_size, tokenizer.pad_id).train()
    split = EncodedSplit.encode(tokenizer, src, tgt)
    specials = (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)
    batches = TokenBudgetBatches(split, 200, *specials, shuffle=False)
    short = DecodingConfig(beam_size=1, max_len_a=0.0, max_len_b=5)
    bleu, hyps = validation_bleu(model, batches, tokenizer, tgt, decoding=short)
    assert isinstance(bleu, float) and 0.0 <= bleu <= 100.0
    assert len(hyps) == len(tgt)
    assert model.training  # restored after the search
    one_by_one = [
        greedy_search(model, torch.tensor([ids + [tokenizer.eos_id]]), short, bos_id=tokenizer.bos_id,
                      eos_id=tokenizer.eos_id)[0]
        for ids in split.src_ids
    ]  # fmt: skip
    assert hyps == tokenizer.decode_batch(one_by_one)


def test_results_file_hypotheses_and_table(tmp_path):
    hyps = {"test_a": ["Hallo Welt.", "Zweite\nZeile"]}
    result = {**score(hyps["test_a"], ["Hallo Welt.", "Zweite Zeile"]), "n_sentences": 2}
    result["tokenized_bleu"] = tokenized_bleu(hyps["test_a"], ["hallo welt .", "zweite zeile"], "de")
    meta = {"checkpoint": "ck.pt", "step": 7, "data": "toy", "src_lang": "en", "tgt_lang": "de", "tokenized": False}
    results = EvaluationResults(**meta, decoding={"beam_size": 1}, splits={"test_a": result})
    path = write_results(tmp_path, hyps, results)
    saved = json.loads(path.read_text())
    assert saved["checkpoint"] == "ck.pt" and saved["step"] == 7
    assert saved["splits"]["test_a"]["signatures"]["bleu"].startswith("nrefs:1")
    assert (tmp_path / "test_a.hyp.de").read_text().split("\n") == [
        "Hallo Welt.",
        "Zweite Zeile",
        "",
    ]
    table = format_table({"test_a": result})
    assert "test_a" in table and "tok-BLEU" in table and TOKENIZED_BLEU_LABEL in table
    assert result["signatures"]["bleu"] in table


def test_results_json_is_read_back_as_written_and_an_incomplete_one_is_named(tmp_path):
    result = {**score(["Hallo Welt."], ["Hallo Welt."]), "n_sentences": 1}
    meta = {"checkpoint": "ck.pt", "step": 7, "data": "toy", "src_lang": "en", "tgt_lang": "de", "tokenized": False}
    written = EvaluationResults(**meta, decoding={"beam_size": 5}, splits={"test_a": result})
    path = write_results(tmp_path, {"test_a": ["Hallo Welt."]}, written)
    read = read_results_json(path)
    assert read == {**written, "files": {"test_a.hyp.de": read["files"]["test_a.hyp.de"]}}
    assert not list(tmp_path.glob("*.tmp")) and not (tmp_path / ".staging").exists()
    del result["chrf"]
    path.write_text(json.dumps(written))
    with pytest.raises(ResultsError, match=r"results.json: no splits.test_a.chrf \("):
        read_results_json(path)
    path.write_text(json.dumps({"splits": {}}))
    with pytest.raises(ResultsError, match="no checkpoint, data, decoding, src_lang, step, tgt_lang, tokenized"):
        read_results_json(path)
    path.write_text("{")
    with pytest.raises(ResultsError, match="cannot read .*results.json"):
        read_results_json(path)


def test_tokenized_text_is_scored_as_given_without_a_second_moses_pass(multi30k_dir):
    """data.tokenized: identical tokenized text scores 100; a second Moses pass would not."""
    official = read_lines(tokenized_reference_file(multi30k_dir, "test_2016_flickr", "de"))
    as_given = tokenized_bleu(official, official, "de", retokenize=False)
    assert as_given["score"] == pytest.approx(100.0) and as_given["label"] == AS_GIVEN_BLEU_LABEL
    assert as_given["bp"] == pytest.approx(1.0) and as_given["ratio"] == pytest.approx(1.0)
    escaped = [line for line in official if "&apos;" in line or "&quot;" in line]
    assert escaped and tokenized_bleu(escaped, escaped, "de")["score"] < 99.0  # "&apos;" -> "&amp;apos;"
    result = score(official, official, tokenize="none")
    assert result["bleu"] == pytest.approx(100.0) and "tok:none" in result["signatures"]["bleu"]


def test_mostly_empty_hypotheses_get_one_warning_line():
    assert empty_hypotheses_warning("valid", ["Ein Hund.", "", " "]) == (
        "valid: 2 of 3 hypotheses are empty: the model has not learnt to translate yet (too few updates?), "
        "so its scores are near 0"
    )
    assert empty_hypotheses_warning("valid", ["Ein Hund.", ""]) is None  # half is not most
    assert empty_hypotheses_warning("valid", []) is None
