"""noamt-export: a release folder loads back to the same weights and translations, a CTranslate2
export translates as noamt does (post-norm and pre-norm), a transformers export (post-norm) loads
offline with the Auto classes and translates as noamt does, and what cannot be exported is
refused in one line."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.runs import make_checkpoint, small_train_config, train_run

from noamt import schedules
from noamt.checkpoint import CheckpointError
from noamt.decoding import DecodingConfig, translate_texts
from noamt.export.check import ExportError, check_outputs, greedy_reference
from noamt.export.ctranslate2_spec import ctranslate2_greedy, transformer_spec, write_ctranslate2
from noamt.export.marian import PRE_NORM_REFUSAL, marian_model
from noamt.export.release import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE
from noamt.export.transformers_folder import check_position_table
from noamt.exporter import ExportConfig, export_model
from noamt.inference import load_model
from noamt.manifest import MANIFEST_FILE, write_manifest
from noamt.model import build_model
from noamt.results import write_results_json
from noamt.run_dir import TOKENIZER_FILE

N_SENTENCES = 20


def trained_run(run_dir: Path, data_dir: Path, pre_norm: bool) -> Path:
    """The small toy-corpus model (max_positions 64) trained for 400 updates: enough for its
    greedy outputs to depend on the source and to end in EOS."""
    cfg = small_train_config(data_dir, run_dir.parent / "tokenizers", max_steps=400, val_interval=400,
                             save_interval=400, log_interval=200)  # fmt: skip
    model = dataclasses.replace(cfg.model, pre_norm=pre_norm, max_positions=64)
    schedule = schedules.NoamConfig(d_model=64, warmup_steps=40, factor=1.0)
    train_run(dataclasses.replace(cfg, model=model, schedule=schedule), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def post_norm_run(tmp_path_factory, toy_data_dir) -> Path:
    return trained_run(tmp_path_factory.mktemp("post_norm") / "run", toy_data_dir, pre_norm=False)


@pytest.fixture(scope="module")
def pre_norm_run(tmp_path_factory, toy_data_dir) -> Path:
    return trained_run(tmp_path_factory.mktemp("pre_norm") / "run", toy_data_dir, pre_norm=True)


@pytest.fixture(scope="module")
def sentences(toy_sources) -> list[str]:
    return toy_sources[:N_SENTENCES]


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, toy_data_dir) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("untrained") / "checkpoint_last.pt", toy_data_dir, step=5)


def run_export(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "noamt.cli.export", *overrides]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300, check=False)


@pytest.mark.slow
def test_a_release_loads_back_to_the_same_weights_and_translations(post_norm_run, sentences, tmp_path):
    checkpoint = post_norm_run / "checkpoints" / "checkpoint_best.pt"
    results = {"checkpoint": "../checkpoints/checkpoint_best.pt", "step": 400, "data": "multi30k_en_de",
               "src_lang": "en", "tgt_lang": "de", "tokenized": False, "decoding": {"beam_size": 5},
               "splits": {"test_2016_flickr": {"n_sentences": 60, "bleu": 12.34, "chrf": 40.0, "ter": 70.0,
                                               "signatures": {"bleu": "nrefs:1|case:mixed"}}}}  # fmt: skip
    write_results_json(post_norm_run / "eval" / "results.json", results)
    out = tmp_path / "release"
    result = run_export(f"checkpoint={post_norm_run}", "format=release", f"out={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files = [CARD_FILE, CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, MANIFEST_FILE]
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    for path in out.iterdir():  # no pickle (protocol 2+ starts with 0x80) and no torch zip archive
        assert path.read_bytes()[:2] not in (b"\x80\x02", b"\x80\x04", b"PK")
    card = (out / CARD_FILE).read_text(encoding="utf-8")
    assert "12.34" in card and "multi30k_en_de" in card and "warmup_steps=40" in card

    original, released = load_model(checkpoint), load_model(out)
    assert released.step == 400 and released.config["data"] == original.config["data"]
    weights = released.model.state_dict()
    assert all(torch.equal(tensor, weights[name]) for name, tensor in original.model.state_dict().items())
    assert released.model.src_embed is released.model.tgt_embed  # shared embeddings stay tied
    for decoding in (DecodingConfig(beam_size=1), DecodingConfig(beam_size=4)):
        expected = translate_texts(original.model, original.tokenizer, sentences, decoding)
        assert translate_texts(released.model, released.tokenizer, sentences, decoding) == expected
        assert len(set(expected)) > 1

    source = tmp_path / "source.txt"
    source.write_text("".join(s + "\n" for s in sentences), encoding="utf-8")
    outputs = []
    for model in (checkpoint, out):
        translated = subprocess.run(
            [sys.executable, "-m", "noamt.cli.translate", f"checkpoint={model}", f"input={source}",
             "device=cpu", "device.num_threads=1", "decoding.beam_size=2"],
            capture_output=True, cwd=tmp_path, timeout=120, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        assert translated.returncode == 0, translated.stderr.decode()
        outputs.append(translated.stdout)
    assert outputs[0] == outputs[1] and outputs[0].count(b"\n") == N_SENTENCES


def tampered(release: Path, folder: Path, change) -> Path:
    """A copy of ``release`` with its config changed and its manifest written again (else the
    manifest would refuse the changed config first)."""
    copy = shutil.copytree(release, folder)
    config = json.loads((copy / CONFIG_FILE).read_text())
    change(config)
    (copy / CONFIG_FILE).write_text(json.dumps(config))
    write_manifest(copy)
    return copy


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["model"].update(d_model=48), r"weights do not fit config.model"),
        (lambda c: c["model"].update(activation="gelu"), r"model is not a ModelConfig .*activation"),
        (lambda c: c["vocab"].update(pad_id=5), r"vocab.pad_id=5 but tokenizer.json has 0"),
        (lambda c: c["sha256"].update({WEIGHTS_FILE: "0" * 64}), r"model.safetensors does not match sha256"),
        (lambda c: c.update(format_version=2), r"format_version=2, this noamt reads 1"),
        (lambda c: c.update(pickle="x"), r"keys .* are not the release's"),
    ],
    ids=["d_model", "unknown-key", "pad-id", "checksum", "version", "extra-key"],
)
def test_a_tampered_release_config_is_refused_in_one_line(untrained, tmp_path, change, message):
    release = export_model(ExportConfig(untrained, "release", tmp_path / "release"), sentences=["A man sleeps ."])
    with pytest.raises(CheckpointError, match=message) as err:
        load_model(tampered(release, tmp_path / "tampered", change))
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["post_norm_run", "pre_norm_run"])
def test_ctranslate2_translates_as_noamt(norm, request, sentences, tmp_path):
    run = request.getfixturevalue(norm)
    out = export_model(ExportConfig(run, "ctranslate2", tmp_path / "ct2"), sentences=sentences)
    assert {"model.bin", "config.json", "shared_vocabulary.json", TOKENIZER_FILE} <= {p.name for p in out.iterdir()}
    loaded = load_model(run)
    reference = greedy_reference(loaded.model, loaded.tokenizer, sentences)
    assert ctranslate2_greedy(out, loaded.tokenizer, reference) == reference.outputs
    assert len({tuple(ids) for ids in reference.outputs}) > 1  # the output depends on the source
    assert any(len(ids) < limit for ids, limit in zip(reference.outputs, reference.limits, strict=True))  # EOS


@pytest.mark.slow
def test_a_quantized_ctranslate2_export_is_written(untrained, tmp_path):
    out = export_model(
        ExportConfig(untrained, "ctranslate2", tmp_path / "int8", quantization="int8"), sentences=["A man ."]
    )
    assert json.loads((out / "config.json").read_text())["add_source_eos"] is True
    assert (out / "model.bin").stat().st_size < (untrained.stat().st_size)


@pytest.mark.parametrize(
    "fmt, quantization, message",
    [
        ("onnx", None, r"^format=onnx: choose one of release, ctranslate2, transformers$"),
        ("release", "int8", r"^quantization=int8: applies to format=ctranslate2 only$"),
        ("ctranslate2", "float16", r"^quantization=float16: choose one of int8, int16, float32$"),
    ],
)
def test_unsupported_settings_are_refused_in_one_line(fmt, quantization, message):
    with pytest.raises(ExportError, match=message):
        ExportConfig("ck.pt", fmt, "out", quantization=quantization)


def test_an_existing_out_folder_is_refused(untrained, tmp_path):
    with pytest.raises(ExportError, match=r"^out=.* exists: choose a new folder$"):
        export_model(ExportConfig(untrained, "release", tmp_path))


def test_a_quantized_conversion_leaves_the_models_weights_alone(untrained, tmp_path):
    """CTranslate2 quantizes the spec's arrays in place: they must be copies of the weights."""
    loaded = load_model(untrained)
    before = {name: tensor.clone() for name, tensor in loaded.model.state_dict().items()}
    write_ctranslate2(loaded.model, loaded.tokenizer, tmp_path, "int8")
    after = loaded.model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_a_weight_without_a_ctranslate2_place_is_refused(untrained):
    loaded = load_model(untrained)
    loaded.model.register_parameter("output_scale", torch.nn.Parameter(torch.ones(1)))
    with pytest.raises(ExportError, match=r"model weights \['output_scale'\] have no place in a CTranslate2"):
        transformer_spec(loaded.model, loaded.tokenizer)


def test_a_differing_output_is_one_line_naming_the_sentence(untrained):
    loaded = load_model(untrained)
    reference = greedy_reference(loaded.model, loaded.tokenizer, ["A man .", "A dog ."])
    wrong = [reference.outputs[0], [*reference.outputs[1], 7]]
    with pytest.raises(ExportError, match=r"^format=x: greedy output differs from noamt's on 1 of 2 .*sentence 1"):
        check_outputs(reference, wrong, "format=x")
    check_outputs(reference, reference.outputs, "format=x")


@pytest.mark.slow
def test_the_export_command_requires_its_keys(tmp_path):
    result = run_export("checkpoint=x", "out=y", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().endswith(
        "format=... is required (release, ctranslate2 or transformers)"
    )


def transformers_translations(folder: Path, texts: list[str], max_lengths: list[int], num_beams: int) -> list[str]:
    """Each text translated by the transformers export in ``folder``, loaded offline, with its
    own ``max_length``: by ``pipeline("translation")`` where this transformers has it (5.0
    removed it), else by what that pipeline runs: tokenizer, ``generate``, ``decode`` without
    special tokens."""
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    if "translation" in transformers.pipelines.get_supported_tasks():
        translator = transformers.pipeline("translation", model=model, tokenizer=tokenizer)
        return [translator(text, max_length=length, num_beams=num_beams)[0]["translation_text"]
                for text, length in zip(texts, max_lengths, strict=True)]  # fmt: skip
    outputs = []
    for text, length in zip(texts, max_lengths, strict=True):
        generated = model.generate(**tokenizer(text, return_tensors="pt"), max_length=length, num_beams=num_beams)
        outputs.append(tokenizer.decode(generated[0], skip_special_tokens=True))
    return outputs


@pytest.mark.slow
def test_transformers_translates_as_noamt(post_norm_run, sentences, tmp_path, monkeypatch):
    """Held-out sentences, greedy and beam 5. noamt's limit L = floor(1.2 |x| + 10) per sentence
    is given to ``generate`` as max_length = L + 2 (start token, L tokens, EOS). Beam search is
    compared because both define it alike: hypotheses ranked by sum log p / |y|^alpha with |y|
    counting EOS (alpha = 1), a sentence done once it has 5 finished hypotheses
    (``early_stopping=True``)."""
    out = export_model(ExportConfig(post_norm_run, "transformers", tmp_path / "hf"))
    assert {"config.json", "generation_config.json", "model.safetensors", TOKENIZER_FILE,
            "tokenizer_config.json"} <= {p.name for p in out.iterdir()}  # fmt: skip
    loaded = load_model(post_norm_run)
    max_lengths = [limit + 2 for limit in greedy_reference(loaded.model, loaded.tokenizer, sentences).limits]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for beam_size in (1, 5):
        expected = translate_texts(loaded.model, loaded.tokenizer, sentences, DecodingConfig(beam_size=beam_size))
        assert transformers_translations(out, sentences, max_lengths, beam_size) == expected
        assert len(set(expected)) > 1


@pytest.mark.parametrize("share_embeddings", [True, False], ids=["shared", "separate"])
def test_marian_computes_noamt_logits(untrained, share_embeddings):
    loaded = load_model(untrained)
    cfg = dataclasses.replace(loaded.model.cfg, share_embeddings=share_embeddings)
    torch.manual_seed(0)
    model = build_model(cfg, loaded.tokenizer).eval()
    marian = marian_model(model, loaded.tokenizer)
    src = torch.tensor([loaded.tokenizer.encode("A man sleeps .") + [loaded.tokenizer.eos_id]])
    tgt = torch.tensor([[loaded.tokenizer.bos_id, *loaded.tokenizer.encode("Ein Mann")]])
    with torch.no_grad():
        torch.testing.assert_close(marian(input_ids=src, decoder_input_ids=tgt).logits, model(src, tgt))


def test_a_pre_norm_model_is_refused_for_transformers(untrained, tmp_path):
    loaded = load_model(untrained)
    model = build_model(dataclasses.replace(loaded.model.cfg, pre_norm=True), loaded.tokenizer)
    with pytest.raises(ExportError) as err:
        marian_model(model, loaded.tokenizer)
    assert str(err.value) == PRE_NORM_REFUSAL


def test_the_position_check_allows_rounding_but_not_another_layout(untrained):
    """Marian's table as transformers 4 computes it (float64, cast to float32: up to 6e-5 from
    noamt's float32 table at 1,024 positions) passes; noamt's own interleaved layout does not."""
    loaded = load_model(untrained)
    model = build_model(dataclasses.replace(loaded.model.cfg, max_positions=1024, d_model=128), loaded.tokenizer)
    d = model.cfg.d_model
    angles = torch.arange(1024, dtype=torch.float64)[:, None] * 10000.0 ** (-torch.arange(0, d, 2) / d)
    halves = torch.cat([angles.sin(), angles.cos()], dim=1).float()  # sines, then cosines
    assert (halves - model.positions[:, torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])]).abs().max() > 1e-5
    check_position_table(halves, model, "encoder")
    with pytest.raises(ExportError, match=r"^format=transformers: the encoder position table is not noamt's"):
        check_position_table(model.positions.clone(), model, "encoder")


def test_a_weight_without_a_marian_place_is_refused(untrained):
    loaded = load_model(untrained)
    loaded.model.register_parameter("output_scale", torch.nn.Parameter(torch.ones(1)))
    with pytest.raises(ExportError, match=r"^format=transformers: model weights \['output_scale'\] have no place"):
        marian_model(loaded.model, loaded.tokenizer)
