"""engine=transformers: HF transformers' ``generate`` translates as noamt does (greedy exactly, with
its length limits and min_len; beam search measured), from a checkpoint converted in memory or
from an export folder; what it cannot do is refused in one line."""

import json
import logging
import sys
from pathlib import Path

import pytest
from helpers.runs import make_checkpoint, run_cli, run_script

from noamt.checkpoint import CheckpointError
from noamt.data import read_lines
from noamt.decoding import DecodingConfig, translate_texts
from noamt.device import DeviceConfig
from noamt.engines import EngineConfig, open_engine
from noamt.engines.transformers import (
    PRE_NORM_REFUSAL,
    convert_to_transformers,
    is_transformers_model,
    token_budget_chunks,
)
from noamt.export.check import ExportError
from noamt.exporter import ExportConfig, export_model
from noamt.inference import load_models
from noamt.manifest import MANIFEST_FILE

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

N_SENTENCES = 60
CPU = DeviceConfig(device="cpu", num_threads=1)
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def run(toy_model) -> Path:
    return toy_model


@pytest.fixture(scope="module")
def sentences(toy_sources) -> list[str]:
    return toy_sources[:N_SENTENCES]


@pytest.mark.slow
def test_greedy_equals_noamt_with_its_limits_and_beam_agreement_is_measured(run, sentences):
    loaded = load_models(run)
    hf = convert_to_transformers(loaded.model, loaded.tokenizer, loaded.model.positions.device)
    for greedy in (
        DecodingConfig(beam_size=1),
        DecodingConfig(beam_size=1, max_len_a=0.5, max_len_b=2),  # most outputs reach their limit L
        DecodingConfig(beam_size=1, max_len_a=0.0, max_len_b=6, min_len=6),  # every output exactly 6 tokens
    ):
        expected = translate_texts(loaded.model, loaded.tokenizer, sentences, greedy, max_tokens=256)
        assert hf.translate(sentences, greedy, max_tokens=256) == expected, greedy
        assert len(set(expected)) > 1

    beam = DecodingConfig(beam_size=5, length_penalty=0.6)
    expected = translate_texts(loaded.model, loaded.tokenizer, sentences, beam)
    outputs = hf.translate(sentences, beam)
    share = sum(a == b for a, b in zip(outputs, expected, strict=True)) / len(outputs)
    log.info("beam 5: %.0f%% of %d sentences as with noamt", 100 * share, len(outputs))
    assert share >= 0.95


@pytest.mark.slow
def test_translate_from_an_export_folder_or_a_checkpoint(run, sentences, tmp_path):
    folder = export_model(ExportConfig(run, "transformers", tmp_path / "hf"), sentences=sentences[:4])
    assert is_transformers_model(folder)
    source = tmp_path / "source.txt"
    source.write_text("".join(s + "\n" for s in ["", *sentences[:20]]), encoding="utf-8")
    common = (f"input={source}", "decoding.beam_size=3")
    outputs = [
        run_cli("noamt.cli.translate", f"checkpoint={model}", *common, *engine, cwd=tmp_path)
        for model, engine in ((run, ()), (run, ("engine=transformers",)), (folder, ("engine=transformers",)))
    ]
    assert all(o.returncode == 0 for o in outputs), [o.stderr.decode() for o in outputs]
    assert outputs[1].stdout == outputs[2].stdout
    assert outputs[0].stdout.startswith(b"\n") and outputs[1].stdout.count(b"\n") == 21
    noamt_lines, hf_lines = outputs[0].stdout.splitlines(), outputs[1].stdout.splitlines()
    assert sum(a == b for a, b in zip(noamt_lines, hf_lines, strict=True)) >= 19

    (folder / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"hf/tokenizer.json: missing \(listed in noamt-manifest.json\)$"):
        open_engine(EngineConfig(folder, "transformers", device=CPU))
    (folder / MANIFEST_FILE).unlink()  # a folder not written by noamt-export
    with pytest.raises(ExportError, match=r"hf: no readable config.json and tokenizer.json \(write the folder"):
        open_engine(EngineConfig(folder, "transformers", device=CPU))


@pytest.mark.slow
def test_evaluate_records_the_engine(run, tmp_path):
    out = tmp_path / "eval"
    result = run_cli("noamt.cli.evaluate", f"checkpoint={run}", "splits=[test_2016_flickr]", f"out_dir={out}",
                     "engine=transformers", "decoding=greedy", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    saved = json.loads((out / "results.json").read_text())
    assert saved["engine"] == "transformers" and "compute_type" not in saved
    assert saved["splits"]["test_2016_flickr"]["n_sentences"] == 60
    assert len(read_lines(out / "test_2016_flickr.hyp.de")) == 60


def test_a_release_folder_is_not_taken_for_a_transformers_folder(toy_data_dir, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ck.pt", toy_data_dir)
    release = export_model(ExportConfig(checkpoint, "release", tmp_path / "release"), sentences=["A dog runs."])
    assert (release / "config.json").is_file() and not is_transformers_model(release)
    assert not is_transformers_model(tmp_path / "missing")


@pytest.mark.parametrize(
    "checkpoint, compute_type, message",
    [
        ("ck.pt", "int8", r"^compute_type=int8: applies to engine=ctranslate2 only \(transformers: device.precision\)"),
        (["a.pt", "b.pt"], "float32", r"^engine=transformers decodes one model, checkpoint= names 2: "),
    ],
)
def test_settings_the_engine_cannot_honour_are_refused_in_one_line(checkpoint, compute_type, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(checkpoint, "transformers", compute_type)


def test_a_pre_norm_checkpoint_is_refused_in_one_line_in_the_words_of_the_engine(toy_data_dir, tmp_path):
    checkpoint = make_checkpoint(tmp_path / "ck.pt", toy_data_dir, pre_norm=True)
    with pytest.raises(ValueError) as err:
        open_engine(EngineConfig(checkpoint, "transformers", device=CPU))
    assert str(err.value) == PRE_NORM_REFUSAL and str(err.value).startswith("engine=transformers: ")
    assert "engine=noamt" in str(err.value) and "format=" not in str(err.value)


def test_a_missing_transformers_package_names_the_extra_in_the_words_of_the_engine(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what Python does when a package is absent
    with pytest.raises(ExportError) as err:
        open_engine(EngineConfig(str(tmp_path / "ck.pt"), "transformers", device=CPU))
    assert str(err.value) == "engine=transformers needs the transformers package: pip install 'noamt[transformers]'"


def test_token_budget_chunks_sort_by_length_and_keep_the_padded_size_within_the_budget():
    lengths = [5, 2, 9, 3, 2, 30]
    chunks = token_budget_chunks([0, 1, 2, 3, 4, 5], lengths, max_tokens=10)
    assert chunks == [[1, 4, 3], [0], [2], [5]]  # 3 x 3 <= 10; 5; 9; 30 > 10 still gets its own chunk
    assert sorted(i for chunk in chunks for i in chunk) == list(range(6))


@pytest.mark.slow
def test_the_pipeline_check_script_translates_as_noamt_or_names_the_missing_pipeline(run, sentences, tmp_path):
    import transformers

    folder = export_model(ExportConfig(run, "transformers", tmp_path / "hf"), sentences=sentences[:4])
    loaded = load_models(run)
    source, noamt_hyps = tmp_path / "source.en", tmp_path / "noamt.de"
    source.write_text("".join(s + "\n" for s in sentences[:12]), encoding="utf-8")
    expected = translate_texts(loaded.model, loaded.tokenizer, sentences[:12], DecodingConfig(beam_size=1))
    noamt_hyps.write_text("".join(s + "\n" for s in expected), encoding="utf-8")
    proc = run_script("check_transformers_pipeline.py", "--model", str(folder), "--source", str(source),
                      "--noamt", str(noamt_hyps), "--reference", str(noamt_hyps), "--beam", "1")  # fmt: skip
    if "translation" not in transformers.pipelines.get_supported_tasks():  # transformers 5
        assert proc.returncode == 1 and "has no translation pipeline (5.0 removed it): use 4.x" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["identical_to_noamt"] == report["lines"] == 12
    assert report["bleu_pipeline"] == report["bleu_noamt"] == 100.0
