"""The references' teacher-forced NLL per sentence: its value, its batching, its file and its
place in results.json."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noamt.data import EncodedSplit, TokenBudgetBatches, TokenizerConfig, read_lines, train_tokenizer
from noamt.decoding import Ensemble
from noamt.evaluation import score, write_results
from noamt.likelihood import (
    NLL_HEADER,
    SentenceNLL,
    likelihood_summary,
    read_sentence_nll,
    sentence_nll,
    write_sentence_nll,
)
from noamt.model import ModelConfig, Transformer
from noamt.results import EvaluationResults, ResultsError, read_results_json

MAX_POSITIONS = 96


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny matrices: one torch thread (the shared ``one_thread`` fixture)."""


@pytest.fixture(scope="module")
def pairs(toy_data_dir) -> tuple[list[str], list[str]]:
    """The first 24 validation pairs of the toy corpus."""
    return read_lines(toy_data_dir / "val.en")[:24], read_lines(toy_data_dir / "val.de")[:24]


@pytest.fixture(scope="module")
def tokenizer(pairs):
    src, tgt = pairs
    return train_tokenizer(src + tgt, TokenizerConfig(vocab_size=300, min_frequency=1))


def tiny_model(tokenizer, seed: int = 0) -> Transformer:
    """An untrained 1+1-layer model with dropout, left in train mode."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        encoder_layers=1, decoder_layers=1, d_model=32, n_heads=2, d_ff=64, dropout=0.3, max_positions=MAX_POSITIONS
    )
    return Transformer(cfg, tokenizer.vocab_size, tokenizer.vocab_size, tokenizer.pad_id).train()


def logits_of_one(model: Transformer, tokenizer, source: str, reference: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's logits (T, V) for reference tokens + EOS given source + EOS, and those targets (T,)."""
    src = torch.tensor([tokenizer.encode(source) + [tokenizer.eos_id]])
    tgt = tokenizer.encode(reference)
    tgt_in, tgt_out = torch.tensor([[tokenizer.bos_id, *tgt]]), torch.tensor(tgt + [tokenizer.eos_id])
    with torch.no_grad():
        return model.eval()(src, tgt_in)[0], tgt_out


def test_sentence_sums_add_up_to_the_training_nll_and_the_mode_is_restored(pairs, tokenizer):
    src, tgt = pairs
    model = tiny_model(tokenizer)
    scores = sentence_nll(model, tokenizer, src, tgt, max_tokens=100)
    assert model.training  # restored after scoring
    split = EncodedSplit.encode(tokenizer, src, tgt)
    assert scores.tokens.tolist() == [len(ids) + 1 for ids in split.tgt_ids]
    batches = TokenBudgetBatches(split, 100, tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, shuffle=False)
    model.eval()
    with torch.no_grad():
        losses = [model(b.src, b.tgt_in, b.tgt_out, label_smoothing=0.0) for b in batches]
    assert scores.nll.sum() == pytest.approx(sum(float(x.nll) for x in losses), rel=1e-5)
    assert scores.tokens.sum() == sum(int(x.tokens) for x in losses)
    assert scores.nll.dtype == np.float64 and scores.tokens.dtype == np.int64 and (scores.nll > 0).all()


def test_the_value_is_the_cross_entropy_of_the_models_logits(pairs, tokenizer):
    src, tgt = pairs
    model = tiny_model(tokenizer)
    scores = sentence_nll(model, tokenizer, src[3:4], tgt[3:4])
    logits, targets = logits_of_one(model, tokenizer, src[3], tgt[3])
    assert scores.tokens.tolist() == [len(targets)]
    assert scores.nll[0] == pytest.approx(float(F.cross_entropy(logits, targets, reduction="sum")), rel=1e-5)


def test_padding_and_batching_leave_a_sentences_score_unchanged(pairs, tokenizer):
    src, tgt = pairs
    model = tiny_model(tokenizer)
    by_length = sorted(range(len(src)), key=lambda i: len(tokenizer.encode(tgt[i])))
    short, longer = by_length[0], by_length[-3:]
    alone = sentence_nll(model, tokenizer, [src[short]], [tgt[short]])
    order = [longer[0], short, *longer[1:]]
    together = sentence_nll(model, tokenizer, [src[i] for i in order], [tgt[i] for i in order], max_tokens=4096)
    assert together.nll[1] == pytest.approx(alone.nll[0], rel=1e-5) and together.tokens[1] == alone.tokens[0]
    one_by_one = sentence_nll(model, tokenizer, src, tgt, max_tokens=1)  # a batch per sentence
    in_batches = sentence_nll(model, tokenizer, src, tgt, max_tokens=4096)
    np.testing.assert_allclose(in_batches.nll, one_by_one.nll, rtol=1e-5)
    assert in_batches.tokens.tolist() == one_by_one.tokens.tolist()


def test_an_empty_reference_scores_the_eos_alone_and_long_ones_are_cut(pairs, tokenizer):
    src, _ = pairs
    model = tiny_model(tokenizer)
    long_reference = "Ein Hund " * 60
    scores = sentence_nll(
        model,
        tokenizer,
        [src[0], "", src[1], src[2]],
        ["", "Ein Hund.", long_reference, long_reference],
        max_tgt_len=10,
    )
    logits, _ = logits_of_one(model, tokenizer, src[0], "")
    assert scores.tokens[0] == 1
    assert scores.nll[0] == pytest.approx(-float(torch.log_softmax(logits[0], dim=-1)[tokenizer.eos_id]), rel=1e-5)
    assert scores.tokens[1] == len(tokenizer.encode("Ein Hund.")) + 1  # a blank source is scored too
    assert scores.tokens[2:].tolist() == [11, 11]  # data.max_tgt_len tokens and the EOS
    uncut = sentence_nll(model, tokenizer, [src[2]], [long_reference])
    assert uncut.tokens.tolist() == [MAX_POSITIONS]  # max_positions - 1 tokens (BOS + them fit) and the EOS


def test_an_ensemble_scores_its_averaged_probabilities(pairs, tokenizer):
    src, tgt = pairs
    members = [tiny_model(tokenizer, seed) for seed in (1, 2)]
    scores = sentence_nll(Ensemble(members), tokenizer, src[:2], tgt[:2])
    for i in range(2):
        probs = []
        for member in members:
            logits, targets = logits_of_one(member, tokenizer, src[i], tgt[i])
            probs.append(torch.softmax(logits.double(), dim=-1)[torch.arange(len(targets)), targets])
        expected = -torch.log((probs[0] + probs[1]) / 2).sum()
        assert scores.nll[i] == pytest.approx(float(expected), rel=1e-5)


def test_the_file_reads_back_exactly_and_sums_to_the_summary(tmp_path):
    scores = SentenceNLL(np.array([12.345678901234567, 0.1 + 0.2, 3e-5, 0.0]), np.array([7, 3, 1, 2]))
    path = write_sentence_nll(tmp_path / "test_a.nll.tsv", scores)
    text = path.read_text(encoding="utf-8")
    assert text == f"{NLL_HEADER}\n12.345678901234567\t7\n0.30000000000000004\t3\n3e-05\t1\n0.0\t2\n"
    back = read_sentence_nll(path)
    assert back.nll.tolist() == scores.nll.tolist() and back.tokens.tolist() == scores.tokens.tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["test_a.nll.tsv"]  # no temporary left
    summary = likelihood_summary(back, path.name)
    assert summary["tokens"] == 13 and summary["label_smoothing"] == 0.0 and summary["file"] == "test_a.nll.tsv"
    assert summary["nll_per_token"] == pytest.approx(math.fsum(scores.nll.tolist()) / 13)
    assert summary["perplexity"] == pytest.approx(math.exp(summary["nll_per_token"]))


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r":1: expected the header 'nll\\ttokens', got ''"),
        ("nll tokens\n1.0\t2\n", r":1: expected the header"),
        (f"{NLL_HEADER}\n1.0\t2\n1.5\n", r":3: expected 2 tab-separated columns \(nll, tokens\), got 1"),
        (f"{NLL_HEADER}\n1.0\t2\t3\n", r":2: expected 2 tab-separated columns"),
        (f"{NLL_HEADER}\n1.0\t2\nnan\t2\n", r":3: nll 'nan' is not a finite number >= 0"),
        (f"{NLL_HEADER}\ninf\t2\n", r":2: nll 'inf' is not a finite number >= 0"),
        (f"{NLL_HEADER}\n-0.5\t2\n", r":2: nll '-0.5' is not a finite number >= 0"),
        (f"{NLL_HEADER}\nabc\t2\n", r":2: nll 'abc' is not a finite number >= 0"),
        (f"{NLL_HEADER}\n1.0\t0\n", r":2: tokens '0' is not a positive integer"),
        (f"{NLL_HEADER}\n1.0\t2.0\n", r":2: tokens '2.0' is not a positive integer"),
        (f"{NLL_HEADER}\n1.0\t\n", r":2: tokens '' is not a positive integer"),
        (f"{NLL_HEADER}\n1.0\t2\n\n", r":3: expected 2 tab-separated columns"),
    ],
)
def test_a_corrupt_file_is_one_line_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "test_a.nll.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ResultsError, match=str(path).replace(".", r"\.") + message) as err:
        read_sentence_nll(path)
    assert "\n" not in str(err.value)


def test_results_json_with_and_without_the_likelihood_field_is_read(tmp_path):
    scores = SentenceNLL(np.array([2.5, 4.0]), np.array([3, 5]))
    split = {**score(["Hallo Welt.", "Ja."], ["Hallo Welt.", "Ja."]), "n_sentences": 2}
    split["likelihood"] = likelihood_summary(scores, "test_a.nll.tsv")
    meta = {"checkpoint": "ck.pt", "step": 7, "data": "toy", "src_lang": "en", "tgt_lang": "de", "tokenized": False}
    written = EvaluationResults(**meta, decoding={"beam_size": 1}, splits={"test_a": split})
    path = write_results(tmp_path, {"test_a": ["Hallo Welt.", "Ja."]}, written, {"test_a": scores})
    read = read_results_json(path)
    assert read == {**written, "files": read["files"]} and sorted(read["files"]) == ["test_a.hyp.de", "test_a.nll.tsv"]
    assert read_sentence_nll(tmp_path / "test_a.nll.tsv").nll.tolist() == [2.5, 4.0]
    del split["likelihood"]["perplexity"]
    path.write_text(json.dumps(written))
    with pytest.raises(ResultsError, match=r"no splits\.test_a\.likelihood\.perplexity \("):
        read_results_json(path)
    del split["likelihood"]  # a file written before the field existed
    path.write_text(json.dumps(written))
    assert "likelihood" not in read_results_json(path)["splits"]["test_a"]
