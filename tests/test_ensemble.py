"""Ensembles (checkpoint=[a,b]): one model is the plain model, two average their probabilities at
every step, tokenizers must agree, and noamt-evaluate records every member."""

import json
import math
from pathlib import Path

import pytest
import torch
from helpers.runs import make_checkpoint, run_cli

from noamt.checkpoint import CheckpointError
from noamt.data import read_lines
from noamt.decoding import DecodingConfig, Ensemble, greedy_search, translate_texts
from noamt.decoding.beam import beam_search
from noamt.decoding.search import max_output_lengths, next_log_probs
from noamt.inference import load_models

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # trains two small models

N_SENTENCES = 20
GREEDY = DecodingConfig(beam_size=1)


@pytest.fixture(scope="module")
def runs(toy_run) -> list[Path]:
    return [toy_run(seed) for seed in (3, 4)]


@pytest.fixture(scope="module")
def sentences(toy_sources) -> list[str]:
    return toy_sources[:N_SENTENCES]


def averaged_log_probs(models, src: torch.Tensor, tokens: list[int], bos_id: int) -> torch.Tensor:
    """logsumexp_i log p_i(v) - log N after the prefix ``tokens``, each p_i from the whole prefix
    (no cache); PAD and BOS banned: (V,)."""
    with torch.inference_mode():
        lprobs = torch.stack([torch.log_softmax(m(src, torch.tensor([tokens]))[0, -1], dim=-1) for m in models])
    mean = torch.logsumexp(lprobs, dim=0) - math.log(len(models))
    mean[[models[0].pad_id, bos_id]] = -math.inf
    return mean


def reference_greedy(models, src: torch.Tensor, bos_id: int, eos_id: int) -> list[int]:
    """Greedy search on :func:`averaged_log_probs`, EOS forced at the length limit."""
    limit = int(max_output_lengths(src, models[0].pad_id, models[0].max_positions, GREEDY)[0])
    tokens = [bos_id]
    for step in range(limit + 1):
        mean = averaged_log_probs(models, src, tokens, bos_id)
        if step == limit:
            mean[torch.arange(mean.numel()) != eos_id] = -math.inf
        tokens.append(int(mean.argmax()))
        if tokens[-1] == eos_id:
            return tokens[1:-1]
    raise AssertionError("no EOS at the length limit")


def test_one_checkpoint_is_the_plain_model_and_a_one_model_ensemble_translates_alike(runs, sentences):
    loaded = load_models([runs[0]])
    assert loaded.model is loaded.members[0].model and load_models(str(runs[0])).model is not loaded.model
    one = Ensemble([loaded.model])
    for decoding in (GREEDY, DecodingConfig(beam_size=4)):
        plain = translate_texts(loaded.model, loaded.tokenizer, sentences, decoding)
        assert translate_texts(one, loaded.tokenizer, sentences, decoding) == plain


def test_two_models_decode_the_argmax_of_their_averaged_probabilities(runs, sentences):
    loaded = load_models(runs)
    tokenizer, members = loaded.tokenizer, [member.model for member in loaded.members]
    assert isinstance(loaded.model, Ensemble)
    ids = {"bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
    outputs = set()
    for source in tokenizer.encode_batch(sentences):
        src = torch.tensor([[*source, tokenizer.eos_id]])
        (got,) = greedy_search(loaded.model, src, GREEDY, **ids)
        assert got == reference_greedy(members, src, **ids)
        outputs.add(tuple(got))
    assert len(outputs) > 1

    src = torch.tensor([[*tokenizer.encode(sentences[0]), tokenizer.eos_id]])
    prefix = [tokenizer.bos_id, *reference_greedy(members, src, **ids)[:3]]
    with torch.inference_mode():
        memory, memory_mask = loaded.model.encode(src)
        step = next_log_probs(loaded.model, torch.tensor([prefix]), memory, memory_mask, None, tokenizer.bos_id)[0]
    expected = averaged_log_probs(members, src, prefix, tokenizer.bos_id)
    alone = [averaged_log_probs([m], src, prefix, tokenizer.bos_id) for m in members]
    finite = torch.isfinite(expected)
    assert torch.allclose(step[finite], expected[finite], atol=1e-5) and torch.equal(finite, torch.isfinite(step))
    assert (alone[0][finite] - alone[1][finite]).abs().max() > 0.1  # the members' distributions differ


def test_ensemble_beam_search_with_and_without_caches_agree(runs, sentences):
    loaded = load_models(runs)
    tokenizer = loaded.tokenizer
    src = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor([*ids, tokenizer.eos_id]) for ids in tokenizer.encode_batch(sentences)],
        batch_first=True, padding_value=tokenizer.pad_id,
    )  # fmt: skip
    ids = {"bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
    decoding = DecodingConfig(beam_size=4)
    cached = beam_search(loaded.model, src, decoding, **ids)
    assert cached == beam_search(loaded.model, src, decoding, **ids, use_cache=False)
    assert len({tuple(out) for out in cached}) > 1


def test_checkpoints_with_different_tokenizers_are_refused_in_one_line(runs, toy_data_dir, tmp_path):
    other = make_checkpoint(tmp_path / "checkpoint_last.pt", toy_data_dir)
    with pytest.raises(CheckpointError, match=r"^\S+checkpoint_best.pt and \S+checkpoint_last.pt have different "
                                              r"tokenizers: an ensemble needs one$"):  # fmt: skip
        load_models([runs[0], other])


def test_translate_with_one_listed_checkpoint_is_byte_identical(runs, sentences, tmp_path):
    source = tmp_path / "source.txt"
    source.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    plain = run_cli("noamt.cli.translate", f"checkpoint={runs[0]}", f"input={source}", cwd=tmp_path)
    listed = run_cli("noamt.cli.translate", f"checkpoint=[{runs[0]}]", f"input={source}", cwd=tmp_path)
    assert plain.returncode == 0 and listed.returncode == 0, listed.stderr.decode()
    assert listed.stdout == plain.stdout and plain.stdout.count(b"\n") == N_SENTENCES


def test_evaluate_an_ensemble_records_every_checkpoint(runs, tmp_path):
    listed = f"checkpoint=[{runs[0]},{runs[1]}]"
    refused = run_cli("noamt.cli.evaluate", listed, "splits=[valid]", cwd=tmp_path)
    assert refused.returncode == 1
    assert (
        refused.stderr.decode()
        .strip()
        .splitlines()[-1]
        .endswith("out_dir=...: required with more than one checkpoint (an ensemble has no run folder)")
    )
    out = tmp_path / "eval"
    result = run_cli("noamt.cli.evaluate", listed, "splits=[valid]", f"out_dir={out}", "decoding.beam_size=2",
                     cwd=tmp_path)  # fmt: skip
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    saved = json.loads((out / "results.json").read_text())
    assert [(out / path).resolve() for path in saved["checkpoint"]] == [
        (run / "checkpoints" / "checkpoint_best.pt").resolve() for run in runs
    ]
    assert saved["step"] == [400, 400] and saved["splits"]["valid"]["n_sentences"] == 100
    assert all(str(run / "checkpoints" / "checkpoint_best.pt") in stderr for run in runs)
    assert len(read_lines(out / "valid.hyp.de")) == 100
