"""engine=ctranslate2: CTranslate2 translates as noamt does (greedy exactly, beam search measured),
from a checkpoint converted on the fly or from an export folder; what it cannot do is refused in
one line."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.runs import SCRIPTS, run_cli, run_script

from noamt.checkpoint import CheckpointError
from noamt.data import read_lines
from noamt.decoding import DecodingConfig, translate_texts
from noamt.device import DeviceConfig
from noamt.engines import EngineConfig, open_engine
from noamt.engines.ctranslate2 import check_compute_type, convert_to_ctranslate2, open_ctranslate2
from noamt.export.check import ExportError
from noamt.exporter import ExportConfig, export_model
from noamt.inference import load_models
from noamt.manifest import MANIFEST_FILE

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


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


@pytest.mark.slow
def test_float32_greedy_equals_noamt_and_beam_agreement_is_measured(run, sentences):
    loaded = load_models(run)
    ct2 = convert_to_ctranslate2(loaded.model, loaded.tokenizer, CPU, "float32")
    greedy = DecodingConfig(beam_size=1)
    expected = translate_texts(loaded.model, loaded.tokenizer, sentences, greedy, max_tokens=256)
    assert ct2.translate(sentences, greedy, max_tokens=256) == expected
    assert len(set(expected)) > 1
    cut = DecodingConfig(beam_size=1, max_len_a=0.5, max_len_b=2)  # most outputs reach their limit L
    assert ct2.translate(sentences, cut) == translate_texts(loaded.model, loaded.tokenizer,
                                                                               sentences, cut)  # fmt: skip

    beam = DecodingConfig(beam_size=5)
    expected = translate_texts(loaded.model, loaded.tokenizer, sentences, beam)
    share = agreement(ct2.translate(sentences, beam), expected)
    log.info("beam 5: %.0f%% of %d sentences as with noamt", 100 * share, len(sentences))
    assert share >= 0.95


@pytest.mark.slow
def test_int8_translates(run, sentences):
    loaded = load_models(run)
    ct2 = convert_to_ctranslate2(loaded.model, loaded.tokenizer, CPU, "int8")
    outputs = ct2.translate(sentences, DecodingConfig(beam_size=1))
    expected = translate_texts(loaded.model, loaded.tokenizer, sentences, DecodingConfig(beam_size=1))
    log.info("int8 greedy: %.0f%% of %d sentences as with noamt", 100 * agreement(outputs, expected), len(outputs))
    assert len(outputs) == N_SENTENCES and all(outputs)


@pytest.mark.slow
def test_translate_from_an_export_folder_or_a_checkpoint(run, sentences, tmp_path):
    folder = export_model(ExportConfig(run, "ctranslate2", tmp_path / "ct2"), sentences=sentences[:4])
    source = tmp_path / "source.txt"
    source.write_text("".join(s + "\n" for s in ["", *sentences[:20]]), encoding="utf-8")
    outputs = [
        run_cli(
            "noamt.cli.translate", f"checkpoint={model}", f"input={source}", *engine, "decoding=greedy", cwd=tmp_path
        )  # fmt: skip
        for model, engine in ((run, ()), (run, ("engine=ctranslate2",)), (folder, ("engine=ctranslate2",)))
    ]
    assert all(o.returncode == 0 for o in outputs), [o.stderr.decode() for o in outputs]
    assert outputs[0].stdout == outputs[1].stdout == outputs[2].stdout
    assert outputs[0].stdout.startswith(b"\n") and outputs[0].stdout.count(b"\n") == 21

    (folder / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"ct2/tokenizer.json: missing \(listed in noamt-manifest.json\)$"):
        open_engine(EngineConfig(folder, "ctranslate2", device=CPU))
    (folder / MANIFEST_FILE).unlink()  # a folder not written by noamt-export
    with pytest.raises(ExportError, match=r"ct2: no readable tokenizer.json and noamt.json beside the CTranslate2"):
        open_engine(EngineConfig(folder, "ctranslate2", device=CPU))


@pytest.mark.slow
def test_evaluate_records_the_engine_and_compute_type(run, tmp_path):
    out = tmp_path / "eval"
    result = run_cli("noamt.cli.evaluate", f"checkpoint={run}", "splits=[test_2016_flickr]", f"out_dir={out}",
                     "engine=ctranslate2", "compute_type=int8", "decoding.beam_size=2", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    saved = json.loads((out / "results.json").read_text())
    assert saved["engine"] == "ctranslate2" and saved["compute_type"] == "int8"
    assert saved["splits"]["test_2016_flickr"]["n_sentences"] == 60
    assert len(read_lines(out / "test_2016_flickr.hyp.de")) == 60


@pytest.mark.parametrize(
    "checkpoint, engine, compute_type, message",
    [
        ("ck.pt", "onnx", "float32", r"^engine=onnx: choose one of noamt, ctranslate2, transformers$"),
        ("ck.pt", "noamt", "int8", r"^compute_type=int8: applies to engine=ctranslate2 only"),
        (["a.pt", "b.pt"], "ctranslate2", "float32", r"^engine=ctranslate2 decodes one model, checkpoint= names 2: "),
    ],
)
def test_settings_an_engine_cannot_honour_are_refused_in_one_line(checkpoint, engine, compute_type, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(checkpoint, engine, compute_type)


@pytest.mark.slow
def test_a_compute_type_the_device_lacks_is_refused_in_one_line(run):
    with pytest.raises(ValueError, match=r"^compute_type=int4: cpu supports .*float32"):
        open_engine(EngineConfig(run, "ctranslate2", "int4", device=CPU))


def test_a_missing_ctranslate2_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # what `import ctranslate2` meets when it is absent
    with pytest.raises(ExportError, match=r"^engine=ctranslate2 needs the ctranslate2 package: pip install "):
        check_compute_type("float32", "cpu")


@pytest.mark.slow
def test_the_standalone_check_script_translates_as_the_engine_without_noamt_or_torch(run, sentences, tmp_path):
    folder = export_model(ExportConfig(run, "ctranslate2", tmp_path / "ct2"), sentences=sentences[:4])
    loaded = load_models(run)
    ct2 = open_ctranslate2(folder, CPU, "float32")
    lines = ["", *sentences[:30], " ".join(sentences[:12])]  # a blank line; one past max_positions, cut
    assert len(loaded.tokenizer.encode(lines[-1])) > loaded.model.cfg.max_positions
    source, engine_hyps = tmp_path / "source.en", tmp_path / "engine.de"
    source.write_text("".join(s + "\n" for s in lines), encoding="utf-8")
    for beam, max_len_b, min_len in ((5, 10, 0), (1, 2, 0), (2, 10, 14)):  # most reach L; >= 14 tokens
        decoding = DecodingConfig(beam_size=beam, max_len_b=max_len_b, min_len=min_len)
        expected = ct2.translate(lines, decoding)
        assert expected[0] == "" and len(set(expected)) > 2
        if beam == 1:
            assert expected == translate_texts(loaded.model, loaded.tokenizer, lines, decoding)
        if min_len:  # it changes outputs: a script that dropped --min-len would differ
            assert expected != ct2.translate(lines, DecodingConfig(beam_size=beam))
        engine_hyps.write_text("".join(s + "\n" for s in expected), encoding="utf-8")
        blocked = "import runpy, sys; sys.modules.update(torch=None, noamt=None); sys.argv = sys.argv[1:]; "
        proc = subprocess.run(
            [sys.executable, "-c", blocked + "runpy.run_path(sys.argv[0], run_name='__main__')",
             str(SCRIPTS / "check_ctranslate2_export.py"), "--model", str(folder), "--source", str(source),
             "--noamt", str(engine_hyps), "--reference", str(engine_hyps), "--beam", str(beam),
             "--max-len-b", str(max_len_b), "--min-len", str(min_len), "--out", str(tmp_path / "script.de")],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads(proc.stdout)
        assert report["identical_to_noamt"] == report["lines"] == len(lines)
        assert report["bleu"] == report["bleu_noamt"] == 100.0
        assert read_lines(tmp_path / "script.de") == expected


def test_the_standalone_check_script_names_a_folder_that_is_not_an_export(tmp_path):
    proc = run_script("check_ctranslate2_export.py", "--model", str(tmp_path), "--source", str(tmp_path / "x.en"))
    assert proc.returncode == 1
    message = f"{tmp_path}: no config.json; is it a folder written by noamt-export format=ctranslate2?"
    assert proc.stderr.strip() == message
