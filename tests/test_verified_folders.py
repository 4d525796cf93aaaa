"""Verified folders: each folder noamt-export writes (release, CTranslate2, transformers) ends with
its manifest, and loading one refuses a changed, missing or added file, an impossible config
(a wrong type, a size out of bounds, a vocabulary that does not fit), non-finite weights and
pickle weights, each in one line naming the file and the key; a folder without a manifest loads
with a one-line warning. Each case asserts the exception or exit status, the one line, and that
the folder is as it was. The model is an untrained tiny one (tests/helpers/runs.make_checkpoint)."""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from helpers.checkpoints import Payload
from helpers.runs import make_checkpoint, run_cli

from noamt import inference
from noamt.checkpoint import CheckpointError
from noamt.device import DeviceConfig
from noamt.engines import EngineConfig, open_engine
from noamt.export.check import ExportError
from noamt.exporter import ExportConfig, export_model
from noamt.manifest import MANIFEST_FILE, sha256_bytes, write_manifest

pytestmark = pytest.mark.usefixtures("one_thread")

CPU = DeviceConfig(device="cpu", num_threads=1)
FORMATS = ("release", "ctranslate2", "transformers")
WEIGHTS = {"release": "model.safetensors", "ctranslate2": "model.bin", "transformers": "model.safetensors"}
UNVERIFIED = f"has no {MANIFEST_FILE}: its files are unverified"
HUGE_D_FF = (
    r"(model.d_ff=1000000000: must be at most \d+"  # ModelConfig's own bound, where it has one
    r"|weights do not fit config.model \(it gives at least \d+ weights, model.safetensors holds \d+\))$"
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, toy_data_dir) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("checkpoint") / "checkpoint_last.pt", toy_data_dir, step=5)


@pytest.fixture(scope="module")
def exports(checkpoint) -> dict[str, Path]:
    """The checkpoint exported in each format, once; tests damage copies."""
    folder = checkpoint.parent
    return {fmt: export_model(ExportConfig(checkpoint, fmt, folder / fmt), sentences=["A dog runs ."])
            for fmt in FORMATS}  # fmt: skip


@pytest.fixture()
def copy_of(exports, tmp_path):
    """``copy_of(fmt)``: a copy of that export in ``tmp_path``, to damage."""
    return lambda fmt: Path(shutil.copytree(exports[fmt], tmp_path / fmt))


def load(fmt: str, folder: Path):
    """What translate and evaluate do with the folder: the release through inference.load_model,
    the others through their engine."""
    if fmt == "release":
        return inference.load_model(folder)
    return open_engine(EngineConfig(str(folder), fmt, device=CPU))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def refused(fmt: str, folder: Path, message: str, error: type[Exception] = CheckpointError) -> str:
    """Load ``folder``: it must raise ``error`` in one line that matches ``message`` (a regex,
    searched) and leave every file as it was; returns the line."""
    before = snapshot(folder)
    with pytest.raises(error) as raised:
        load(fmt, folder)
    line = str(raised.value)
    assert "\n" not in line and re.search(message, line), line
    assert snapshot(folder) == before
    return line


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def flip_middle(path: Path, count: int = 64) -> None:
    """Invert ``count`` bytes in the middle of ``path`` (tensor data in either weights format)."""
    data = bytearray(path.read_bytes())
    at = len(data) // 2
    data[at : at + count] = bytes(b ^ 0xFF for b in data[at : at + count])
    path.write_bytes(bytes(data))


def unverified_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and UNVERIFIED in r.getMessage()]


# ----------------------------------------------------------------------------- the manifest
def test_every_export_lists_each_file_with_its_sha256(exports):
    for folder in exports.values():
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = {p.name: sha256_bytes(p.read_bytes()) for p in folder.iterdir() if p.name != MANIFEST_FILE}
        assert manifest == {"format": "noamt-manifest", "files": files}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_verified_folder_loads_without_a_warning(fmt, copy_of, caplog):
    caplog.set_level(logging.WARNING)
    assert load(fmt, copy_of(fmt)) is not None
    assert unverified_warnings(caplog) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_flipped_bytes_in_the_weights_are_refused(fmt, copy_of):
    folder = copy_of(fmt)
    flip_middle(folder / WEIGHTS[fmt])
    path = re.escape(str(folder / WEIGHTS[fmt]))
    refused(fmt, folder, rf"^{path}: changed since it was written \(its SHA-256 is not the one in {MANIFEST_FILE}\)$")


@pytest.mark.parametrize(
    "fmt, name, change",
    [
        ("release", "config.json", lambda c: c["model"].update(n_heads=4)),  # 2 -> 4: the weights still fit
        ("transformers", "generation_config.json", lambda c: c.update(repetition_penalty=1.3)),
        ("ctranslate2", "config.json", lambda c: c.update(add_source_eos=False)),
    ],
)
def test_a_config_edit_is_caught_by_the_manifest(fmt, name, change, copy_of):
    folder = copy_of(fmt)
    edit_json(folder / name, change)
    refused(fmt, folder, rf"^{re.escape(str(folder / name))}: changed since it was written")


@pytest.mark.parametrize(
    "fmt, damage, message",
    [
        ("release", lambda f: (f / "README.md").unlink(), r"README.md: missing \(listed in noamt-manifest.json\)$"),
        ("ctranslate2", lambda f: (f / "notes.txt").write_text("x"), r"notes.txt: not listed in .*noamt-manifest"),
        ("release", lambda f: (f / MANIFEST_FILE).write_text("{"), r"^cannot read .*noamt-manifest.json: "),
        ("release", lambda f: edit_json(f / MANIFEST_FILE, lambda m: m["files"].update({"README.md": "0" * 63})),
         r"noamt-manifest.json: files.README.md='0{63}': must be a SHA-256 \(64 hex digits\)$"),
        ("release", lambda f: edit_json(f / MANIFEST_FILE, lambda m: m["files"].update({"../x": "0" * 64})),
         r"noamt-manifest.json: files.../x: must name a file inside the folder$"),
    ],
    ids=["missing", "unlisted", "manifest-truncated", "manifest-digest", "manifest-outside"],
)  # fmt: skip
def test_a_missing_or_added_file_or_a_bad_manifest_is_refused(fmt, damage, message, copy_of):
    folder = copy_of(fmt)
    damage(folder)
    refused(fmt, folder, message)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_folder_without_a_manifest_loads_with_a_one_line_warning(fmt, copy_of, caplog):
    folder = copy_of(fmt)
    (folder / MANIFEST_FILE).unlink()
    caplog.set_level(logging.WARNING)
    assert load(fmt, folder) is not None
    assert unverified_warnings(caplog) == [f"{folder} {UNVERIFIED} (not written by this noamt-export)"]


# ----------------------------------------------------------------------------- impossible models
def recompute_release_checksums(folder: Path) -> None:
    """The config's sha256 and the manifest made to match the files again, as a crafted folder would."""
    digests = {name: sha256_bytes((folder / name).read_bytes()) for name in ("model.safetensors", "tokenizer.json")}
    edit_json(folder / "config.json", lambda c: c["sha256"].update(digests))
    write_manifest(folder)


@pytest.mark.parametrize("fmt", ["release", "transformers"])
def test_nan_weights_are_refused_even_with_recomputed_checksums(fmt, copy_of):
    folder = copy_of(fmt)
    path = folder / "model.safetensors"
    weights = safetensors.torch.load_file(path)
    name = sorted(weights)[0]
    weights[name].view(-1)[0] = float("nan")
    safetensors.torch.save_file(weights, path, metadata={"format": "pt"})
    recompute_release_checksums(folder) if fmt == "release" else write_manifest(folder)
    refused(fmt, folder, rf"^{re.escape(str(path))}: .*holds NaN or infinite values$")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["model"].update(d_model="32"), r"model.d_model='32': must be an integer$"),
        (lambda c: c.update(vocab=[500, 0, 1, 2, 3]), r"vocab=\[500, 0, 1, 2, 3\]: must be a mapping$"),
        (lambda c: c.update(sha256=None), r"sha256=None: must be a mapping of model.safetensors and tokenizer"),
        (lambda c: c.update(run=[]), r"run=\[\]: must be a mapping$"),
        (lambda c: c.update(step="5"), r"step='5': must be null or an integer >= 0$"),
        (lambda c: c["model"].update(max_positions=-1), r"model.max_positions=-1: must be at least 1$"),
        (lambda c: c["model"].update(max_positions=10**9), r"model.max_positions=1000000000: must be at most 65536$"),
        (lambda c: c["model"].update(d_ff=10**9), HUGE_D_FF),
        (lambda c: c["model"].update(d_ff=65536, encoder_layers=64, max_positions=65536),
         r"weights do not fit config.model \(it gives at least \d+ weights, model.safetensors holds \d+\)$"),
        (lambda c: c["model"].update(pre_norm="no"), r"model.pre_norm='no': must be true or false$"),
        (lambda c: c["model"].update(dropout=2), r"model.dropout=2: must be in \[0, 1\)$"),
    ],
    ids=["d_model-string", "vocab-list", "sha256-null", "run-list", "step-string", "max_positions-negative",
         "max_positions-huge", "d_ff-huge", "more-weights-than-held", "pre_norm-string",
         "dropout"],
)  # fmt: skip
def test_an_impossible_release_config_is_refused_before_a_model_is_built(change, message, copy_of, monkeypatch):
    folder = copy_of("release")
    edit_json(folder / "config.json", change)
    write_manifest(folder)
    monkeypatch.setattr(inference, "build_model", lambda *args: pytest.fail("a model was built"))
    line = refused("release", folder, message)
    assert line.startswith(f"{folder / 'config.json'}: ")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(vocab_size=400), r"config.json: vocab_size=400: must be 500, the size of tokenizer.json"),
        (lambda c: c.update(decoder_vocab_size=501), r"config.json: decoder_vocab_size=501: must be 500"),
        (lambda c: c.update(max_position_embeddings=10**9),
         r"config.json: max_position_embeddings=1000000000: must be at most 65536$"),
        (lambda c: c.update(d_model="32"), r"config.json: d_model='32': must be an integer$"),
        (lambda c: c.update(encoder_ffn_dim=10**9),
         r"config.json: the weights do not fit its sizes \(they give at least \d+ weights, model.safetensors holds"),
    ],
    ids=["vocab_size", "decoder_vocab_size", "max_position_embeddings", "d_model-string", "ffn-huge"],
)  # fmt: skip
def test_an_impossible_transformers_config_is_refused(change, message, copy_of):
    folder = copy_of("transformers")
    edit_json(folder / "config.json", change)
    write_manifest(folder)
    refused("transformers", folder, message)


def test_transformers_weights_of_another_vocabulary_are_refused(copy_of):
    folder = copy_of("transformers")
    path = folder / "model.safetensors"
    weights = safetensors.torch.load_file(path)
    weights["model.shared.weight"] = weights["model.shared.weight"][:400].clone()
    safetensors.torch.save_file(weights, path, metadata={"format": "pt"})
    write_manifest(folder)
    refused("transformers", folder, r"config.json: vocab_size=500 but model.safetensors has model.shared.weight "
                                    r"of shape \[400, 32\]$")  # fmt: skip


@pytest.mark.parametrize("name", ["model.bin", "config.json"])
@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "no-manifest"])
def test_a_truncated_ctranslate2_file_is_refused(name, manifest, copy_of):
    folder = copy_of("ctranslate2")
    path = folder / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    if not manifest:
        (folder / MANIFEST_FILE).unlink()
    expected = {
        True: rf"^{re.escape(str(path))}: changed since it was written",
        False: rf"^{re.escape(str(path))}: CTranslate2 cannot load it \(Variable .* has an invalid payload size\)$"
        if name == "model.bin"
        else rf"^cannot read {re.escape(str(path))}: ",
    }[manifest]
    refused("ctranslate2", folder, expected)


def test_an_unverified_ctranslate2_config_that_is_not_noamts_is_refused(copy_of):
    folder = copy_of("ctranslate2")
    (folder / MANIFEST_FILE).unlink()
    edit_json(folder / "config.json", lambda c: c.update(add_source_eos=False))
    refused("ctranslate2", folder, r"config.json: add_source_eos=false: must be true, as noamt-export")


def test_an_unverified_folder_without_its_tokenizer_names_it(copy_of):
    folder = copy_of("ctranslate2")
    (folder / MANIFEST_FILE).unlink()
    (folder / "tokenizer.json").unlink()
    refused("ctranslate2", folder, r"ctranslate2: no readable tokenizer.json and noamt.json beside", ExportError)


@pytest.mark.parametrize("manifest", [True, False], ids=["manifest", "no-manifest"])
def test_pickle_weights_in_a_transformers_folder_are_refused_and_never_run(manifest, copy_of, tmp_path):
    folder = copy_of("transformers")
    marker = tmp_path / "payload-ran"
    torch.save({"model.shared.weight": Payload(marker)}, folder / "pytorch_model.bin")
    if not manifest:
        (folder / MANIFEST_FILE).unlink()
        (folder / "model.safetensors").unlink()
    path = re.escape(str(folder / "pytorch_model.bin"))
    message = rf"^{path}: not listed in " if manifest else rf"^{path}: a pickle file, which loading could run code"
    refused("transformers", folder, message)
    assert not marker.exists()


# ----------------------------------------------------------------------------- the commands
@pytest.mark.slow
def test_translate_refuses_a_changed_release_in_one_line(copy_of, tmp_path):
    folder = copy_of("release")
    edit_json(folder / "config.json", lambda c: c["model"].update(n_heads=4))
    result = run_cli("noamt.cli.translate", f"checkpoint={folder}", cwd=tmp_path, stdin="A dog runs .\n")
    stderr = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b"" and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == (
        f"noamt-translate: {folder / 'config.json'}: changed since it was written "
        f"(its SHA-256 is not the one in {MANIFEST_FILE})"
    )


@pytest.mark.slow
def test_translate_refuses_pickle_weights_in_one_line(copy_of, tmp_path):
    folder = copy_of("transformers")
    marker = tmp_path / "payload-ran"
    torch.save({"x": Payload(marker)}, folder / "pytorch_model.bin")
    result = run_cli("noamt.cli.translate", f"checkpoint={folder}", "engine=transformers", cwd=tmp_path,
                     stdin="A dog runs .\n")  # fmt: skip
    stderr = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b"" and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith(f"noamt-translate: {folder / 'pytorch_model.bin'}: not listed")
    assert not marker.exists()


@pytest.mark.slow
def test_ctrl_c_during_export_leaves_nothing_and_exits_130(checkpoint, tmp_path):
    """SIGINT once the temporary folder exists (the transformers export then imports transformers,
    which takes seconds): one line, exit status 130, no ``out`` and no temporary folder."""
    out = tmp_path / "exports" / "hf"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "noamt.cli.export", f"checkpoint={checkpoint}", "format=transformers",
               f"out={out}"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out.parent.is_dir() and any(out.parent.glob(".hf.*"))):
        assert process.poll() is None and time.monotonic() < deadline, "no temporary folder appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    lines = stderr.decode().strip().splitlines()
    assert process.returncode == 130 and "Traceback" not in stderr.decode()
    assert lines[-1] == f"noamt-export: interrupted; nothing was written to {out}"
    assert list(out.parent.iterdir()) == []
