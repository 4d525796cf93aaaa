"""noamt-translate and noamt-evaluate end to end, on an untrained tiny checkpoint of the toy corpus."""

import importlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.runs import (
    CHECKPOINT_EVAL_EXAMPLES,
    CHECKPOINT_MAX_POSITIONS,
    CHECKPOINT_SPLITS,
    make_checkpoint,
    run_cli,
)
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from noamt.cli.evaluate import evaluate
from noamt.data import DataConfig, DataError, read_lines
from noamt.decoding import DecodingConfig
from noamt.device import DeviceConfig
from noamt.evaluation import AS_GIVEN_BLEU_LABEL, EvaluateConfig, evaluate_checkpoint, tokenized_bleu
from noamt.evaluation_output import output_lock
from noamt.inference import load_models
from noamt.likelihood import read_sentence_nll, sentence_nll
from noamt.results import read_results_json
from noamt.translation import TranslateConfig

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses

SPLITS = CHECKPOINT_SPLITS
N_EVAL = CHECKPOINT_EVAL_EXAMPLES
MAX_POSITIONS = CHECKPOINT_MAX_POSITIONS

AWKWARD_LINES = [
    "A man in a blue shirt is standing on a ladder.",
    "",
    "   ",
    "dog " * 400,  # far beyond max_positions: truncated
    "日本語のテキスト",
    "Ωμέγα και άλφα",
    "🙂🚀 emoji 👩‍👩‍👧",
    "<s> </s> <pad> <unk> <0x41> literal specials",
    "\ttab\tseparated",
    "line\u2028separator and next\x85line",
    "Two dogs play in the snow.",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, toy_data_dir) -> Path:
    run = tmp_path_factory.mktemp("run")
    make_checkpoint(run / "checkpoints" / "checkpoint_best.pt", toy_data_dir, step=40)
    return run


def test_translate_keeps_one_output_line_per_input_line(run_dir, tmp_path):
    src = tmp_path / "input.txt"
    src.write_text("".join(line + "\n" for line in AWKWARD_LINES), encoding="utf-8")
    ckpt = run_dir / "checkpoints" / "checkpoint_best.pt"
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("noamt.cli.translate", f"checkpoint={ckpt}", f"input={src}",
                     f"output={tmp_path / 'out.txt'}", "decoding.beam_size=2", cwd=work)  # fmt: skip
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    out = (tmp_path / "out.txt").read_text(encoding="utf-8").split("\n")
    assert out[-1] == "" and len(out) - 1 == len(AWKWARD_LINES)
    assert [out[i] for i, line in enumerate(AWKWARD_LINES) if not line.strip()] == ["", ""]
    assert stderr.count(f"exceed {MAX_POSITIONS - 1} tokens and were truncated") == 1
    assert list(work.iterdir()) == []  # no Hydra output folders or logs

    piped = run_cli("noamt.cli.translate", f"checkpoint={run_dir}", "decoding.beam_size=2", cwd=work,
                    stdin="".join(line + "\n" for line in AWKWARD_LINES))  # fmt: skip
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stdout.decode("utf-8").split("\n") == out  # stdout holds translations only


def test_evaluate_writes_hypotheses_results_and_a_table(run_dir, tmp_path):
    result = run_cli("noamt.cli.evaluate", f"checkpoint={run_dir}", f"splits=[{','.join(SPLITS)}]",
                     "decoding.beam_size=2", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    eval_dir = run_dir / "eval"
    saved = json.loads((eval_dir / "results.json").read_text())
    assert saved["checkpoint"].endswith("checkpoint_best.pt") and saved["step"] == 40
    assert saved["decoding"] == {
        "beam_size": 2,
        "length_penalty": 1.0,
        "max_len_a": 1.2,
        "max_len_b": 10,
        "min_len": 0,
    }
    for split in SPLITS:
        scores = saved["splits"][split]
        assert scores["n_sentences"] == N_EVAL
        assert 0.0 <= scores["bleu"] <= 100.0 and scores["signatures"]["bleu"].startswith("nrefs:1")
        hyps = (eval_dir / f"{split}.hyp.de").read_text(encoding="utf-8").split("\n")
        assert len(hyps) == N_EVAL + 1
    assert "tokenized_bleu" in saved["splits"]["test_2016_flickr"]
    assert "tokenized_bleu" not in saved["splits"]["test_2018_flickr"]
    assert saved["splits"]["test_2018_flickr"]["likelihood"]["file"] == "test_2018_flickr.nll.tsv"
    assert len(read_sentence_nll(eval_dir / "test_2018_flickr.nll.tsv").nll) == N_EVAL
    table = result.stdout.decode()
    assert "test_2016_flickr" in table and "tok-BLEU" in table and "NLL/tok" in table
    assert saved["splits"]["test_2016_flickr"]["signatures"]["bleu"] in table


def test_evaluate_rejects_an_unknown_split(run_dir):
    cfg = EvaluateConfig(checkpoint=str(run_dir), splits=["test_2099"], device=DeviceConfig("cpu"))
    with pytest.raises(DataError, match=r"splits: \['test_2099'\] not in data config multi30k_en_de"):
        evaluate(cfg)


def test_evaluate_checkpoint_is_a_library_call(run_dir, tmp_path):
    path, results = evaluate_checkpoint(
        EvaluateConfig(checkpoint=run_dir, device=DeviceConfig("cpu"), decoding=DecodingConfig(beam_size=1),
                       splits=["valid"], out_dir=str(tmp_path), progress=False)
    )  # fmt: skip
    saved = json.loads(path.read_text())
    assert path == tmp_path / "results.json" and saved["decoding"]["beam_size"] == 1
    assert saved["splits"]["valid"]["bleu"] == results["valid"]["bleu"]
    assert len(read_lines(tmp_path / "valid.hyp.de")) == results["valid"]["n_sentences"]


def test_evaluate_writes_each_splits_sentence_nll_and_its_summary(run_dir, tmp_path, capsys, toy_data_dir):
    """noamt-evaluate's likelihood: the file per split, its sums in results.json, the value the
    library gives for the same pairs, the same with another engine, and off with likelihood=false."""
    out = tmp_path / "eval"
    common = {"checkpoint": str(run_dir), "splits": ["valid", "test_2016_flickr"], "device": DeviceConfig("cpu"),
              "decoding": DecodingConfig(beam_size=1)}  # fmt: skip
    evaluate(EvaluateConfig(**common, out_dir=str(out)))
    assert "NLL/tok" in capsys.readouterr().out
    saved = read_results_json(out / "results.json")
    for split in ("valid", "test_2016_flickr"):
        entry = saved["splits"][split]["likelihood"]
        scores = read_sentence_nll(out / entry["file"])
        assert entry["file"] == f"{split}.nll.tsv" and len(scores.nll) == saved["splits"][split]["n_sentences"]
        assert entry["tokens"] == scores.tokens.sum() and entry["label_smoothing"] == 0.0
        assert entry["nll_per_token"] == pytest.approx(scores.nll.sum() / scores.tokens.sum(), rel=1e-12)
        assert entry["perplexity"] == pytest.approx(np.exp(entry["nll_per_token"]), rel=1e-12)
    loaded = load_models([run_dir])
    src, tgt = (read_lines(toy_data_dir / f"test_2016_flickr.{lang}")[:N_EVAL] for lang in ("en", "de"))
    expected = sentence_nll(loaded.model, loaded.tokenizer, src, tgt, max_src_len=256, max_tgt_len=256)
    np.testing.assert_allclose(read_sentence_nll(out / "test_2016_flickr.nll.tsv").nll, expected.nll, rtol=1e-6)

    other = tmp_path / "ct2"
    evaluate(EvaluateConfig(**common, out_dir=str(other), engine="ctranslate2"))
    for split in ("valid", "test_2016_flickr"):
        ours, theirs = read_sentence_nll(out / f"{split}.nll.tsv"), read_sentence_nll(other / f"{split}.nll.tsv")
        np.testing.assert_allclose(theirs.nll, ours.nll, rtol=1e-6)  # noamt's model scores, whatever decodes

    off = tmp_path / "off"
    evaluate(EvaluateConfig(**common, out_dir=str(off), likelihood=False))
    assert not list(off.glob("*.nll.tsv"))
    assert all("likelihood" not in scores for scores in read_results_json(off / "results.json")["splits"].values())


def test_evaluate_scores_an_ensembles_averaged_probabilities(run_dir, tmp_path, toy_data_dir):
    second = make_checkpoint(tmp_path / "second.pt", toy_data_dir, seed=1)
    members = [run_dir, second]
    path, results = evaluate_checkpoint(
        EvaluateConfig(checkpoint=members, device=DeviceConfig("cpu"), decoding=DecodingConfig(beam_size=1),
                       splits=["test_2016_flickr"], out_dir=str(tmp_path), progress=False)
    )  # fmt: skip
    loaded = load_models(members)
    src, tgt = (read_lines(toy_data_dir / f"test_2016_flickr.{lang}")[:N_EVAL] for lang in ("en", "de"))
    expected = sentence_nll(loaded.model, loaded.tokenizer, src, tgt, max_src_len=256, max_tgt_len=256)
    written = read_sentence_nll(path.parent / results["test_2016_flickr"]["likelihood"]["file"])
    np.testing.assert_allclose(written.nll, expected.nll, rtol=1e-6)
    alone = sentence_nll(load_models([run_dir]).model, loaded.tokenizer, src, tgt)
    assert not np.allclose(written.nll, alone.nll)  # not the first member's


def compose_app(name: str, overrides: list[str]):
    importlib.import_module(f"noamt.cli.{name}")  # stores the command's schema
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        return compose(config_name=name, overrides=overrides)


@pytest.mark.parametrize("name, schema", [("translate", TranslateConfig), ("evaluate", EvaluateConfig)])
def test_configs_compose_and_reject_misspelt_keys(name, schema):
    cfg = OmegaConf.to_object(compose_app(name, ["checkpoint=ck.pt", "decoding.beam_size=3"]))
    assert isinstance(cfg, schema) and cfg.decoding == DecodingConfig(beam_size=3)
    greedy = OmegaConf.to_object(compose_app(name, ["checkpoint=ck.pt", "decoding=greedy"]))
    assert greedy.decoding == DecodingConfig(beam_size=1)
    with pytest.raises(ConfigCompositionException) as err:
        compose_app(name, ["checkpoint=ck.pt", "decoding.beam_sise=3"])
    assert "Key 'beam_sise' not in 'DecodingConfig'" in str(err.value.__cause__ or err.value)
    with pytest.raises(ConfigCompositionException) as err:
        compose_app(name, ["checkpoint=ck.pt", "beam_size=3"])
    assert f"Key 'beam_size' not in '{schema.__name__}'" in str(err.value.__cause__ or err.value)


@pytest.mark.parametrize("name", ["translate", "evaluate"])
def test_the_default_decoding_is_the_dataclass_default(name):
    assert OmegaConf.to_object(compose_app(name, ["checkpoint=ck.pt"])).decoding == DecodingConfig()


def test_evaluate_scores_tokenized_text_as_given(toy_data_dir, tmp_path):
    """A run on data=multi30k_en_de_tok: hypotheses scored against the tok references as they are."""
    data_cfg = DataConfig(dir=str(toy_data_dir), file_pattern="tok/{split}.lc.norm.tok.{lang}", tokenized=True,
                          test_splits=["test_2016_flickr"], max_eval_examples=N_EVAL)  # fmt: skip
    checkpoint = make_checkpoint(tmp_path / "ckpt.pt", toy_data_dir, data_cfg=data_cfg)
    result = run_cli("noamt.cli.evaluate", f"checkpoint={checkpoint}", "decoding.beam_size=1", f"out_dir={tmp_path}",
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert "scored as they are against the tokenized references" in result.stderr.decode()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["tokenized"] is True
    scores = saved["splits"]["test_2016_flickr"]
    assert scores["tokenized_bleu"]["label"] == AS_GIVEN_BLEU_LABEL and "tok:none" in scores["signatures"]["bleu"]
    hyps = (tmp_path / "test_2016_flickr.hyp.de").read_text(encoding="utf-8").splitlines()
    refs = read_lines(toy_data_dir / "tok" / "test_2016_flickr.lc.norm.tok.de")[:N_EVAL]
    rescored = tokenized_bleu(hyps, refs, "de", retokenize=False)["score"]
    assert scores["tokenized_bleu"]["score"] == pytest.approx(rescored)


def test_a_split_the_hub_copy_lacks_is_one_line_listing_those_it_has(toy_data_dir, tmp_path):
    """The hub's layout (train/validation/test.jsonl): its one test split is test_2016_flickr."""
    hub = tmp_path / "hub"
    hub.mkdir()
    for name, rows in {"train": 4, "validation": 2, "test": 3}.items():
        lines = [json.dumps({"en": f"A dog runs {i} .", "de": f"Ein Hund rennt {i} ."}) for i in range(rows)]
        (hub / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data_cfg = DataConfig(source="hub", hub_name=str(hub), test_splits=["test_2016_flickr", "test_2017_flickr"])
    make_checkpoint(tmp_path / "ck.pt", toy_data_dir, data_cfg=data_cfg)
    env_run = run_cli("noamt.cli.evaluate", f"checkpoint={tmp_path / 'ck.pt'}", f"out_dir={tmp_path / 'eval'}",
                      "splits=[test_2017_flickr]", cwd=tmp_path)  # fmt: skip
    assert env_run.returncode == 1
    assert env_run.stderr.decode().strip().splitlines()[-1] == (
        f"noamt-evaluate: hub dataset {hub} has no split test_2017_flickr: it has train, valid, test_2016_flickr "
        "(data.hub_split_names maps them)"
    )
    ok = run_cli("noamt.cli.evaluate", f"checkpoint={tmp_path / 'ck.pt'}", f"out_dir={tmp_path / 'eval'}",
                 "splits=[test_2016_flickr]", "decoding.beam_size=1", cwd=tmp_path)  # fmt: skip
    assert ok.returncode == 0, ok.stderr.decode()[-2000:]
    scored = json.loads((tmp_path / "eval" / "results.json").read_text())["splits"]
    assert list(scored) == ["test_2016_flickr"] and scored["test_2016_flickr"]["n_sentences"] == 3


def test_a_second_evaluation_into_the_same_folder_is_one_line_and_changes_nothing(run_dir, tmp_path):
    out = tmp_path / "eval"
    with output_lock(out):
        result = run_cli("noamt.cli.evaluate", f"checkpoint={run_dir}", f"out_dir={out}", cwd=tmp_path)
    assert result.returncode == 1
    stderr = result.stderr.decode().strip()
    assert "Traceback" not in stderr
    assert re.fullmatch(
        rf"noamt-evaluate: out_dir={out} is being written by process \d+ on .+", stderr.splitlines()[-1]
    )
    assert sorted(p.name for p in out.iterdir()) == [".evaluate.lock"]


def test_ctrl_c_during_an_evaluation_is_one_line_and_keeps_the_previous_results(run_dir, tmp_path):
    out = tmp_path / "eval"
    assert run_cli("noamt.cli.evaluate", f"checkpoint={run_dir}", f"out_dir={out}", cwd=tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".evaluate.lock"}
    command = [sys.executable, "-m", "noamt.cli.evaluate", f"checkpoint={run_dir}", f"out_dir={out}",
               "decoding.beam_size=4", "device=cpu", "device.num_threads=1"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert process.stderr is not None
    for line in process.stderr:  # interrupt once it translates
        if b"evaluate.lock" in line or b"data:" in line:
            break
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read().decode()
    assert process.wait(timeout=60) == 130
    assert "Traceback" not in rest
    expected = "noamt-evaluate: interrupted; the previous results in out_dir are as they were"
    assert rest.strip().splitlines()[-1] == expected
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".evaluate.lock"} == before
    assert not (out / ".staging").exists()
