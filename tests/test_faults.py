"""Bad input and interruptions: nothing is lost, and every refusal is one line naming the cause."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.runs import make_checkpoint, run_cli
from helpers.runs import train_run as run

from noamt import pipeline, schedules
from noamt.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from noamt.data import DataError
from noamt.decoding import DecodingConfig
from noamt.metrics import read_metrics
from noamt.trainer import TrainingDiverged

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def train_cli(tmp_path: Path, toy_data_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "NOAMT_RUNS_DIR": str(tmp_path),
        "NOAMT_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    args = [
        f"data.dir={toy_data_dir}",
        "data.max_eval_examples=20",
        "tokenizer.vocab_size=600",
        "model=tiny",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "run_name=r",
        "trainer.max_tokens=1024",
        "trainer.val_interval=1000",
        "trainer.save_interval=1000",
        "trainer.val_bleu=false",
        "device=cpu",
        "device.num_threads=1",
        "trainer.progress=false",
        "trainer.tensorboard=false",
    ]
    return subprocess.run(
        [sys.executable, "-m", "noamt.cli.train", *args, *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_new_run_over_a_finished_one_is_refused_before_anything_is_written(toy_data_dir, tmp_path):
    first = train_cli(tmp_path, toy_data_dir, "data.max_train_examples=300", "trainer.max_steps=2")
    assert first.returncode == 0, first.stderr[-2000:]
    before = snapshot(tmp_path / "r")
    assert ".hydra/config.yaml" in before and ".hydra/overrides.yaml" in before and "tokenizer.json" in before
    again = train_cli(tmp_path, toy_data_dir, "data.max_train_examples=200", "trainer.max_steps=2")
    assert again.returncode == 1
    assert (
        again.stderr.strip()
        .splitlines()[-1]
        .endswith("pass trainer.resume=auto to continue that run, or choose another run_name")
    )
    assert snapshot(tmp_path / "r") == before  # byte for byte


@pytest.mark.parametrize(
    "change, message",
    [
        ({"max_steps": -5}, "trainer.max_steps=-5: must be at least 0"),
        ({"update_freq": 0}, "trainer.update_freq=0: must be at least 1"),
        ({"label_smoothing": 1.5}, r"trainer.label_smoothing=1.5: must be in \[0, 1\)"),
    ],
)
def test_settings_that_cannot_train_name_their_key(small_run, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        run(small_run(**change), tmp_path)
    assert not tmp_path.joinpath("checkpoints").exists()


def test_an_empty_training_slice_names_the_key(small_run):
    cfg = small_run()
    with pytest.raises(ValueError, match="data.max_train_examples=0: must be at least 1"):
        dataclasses.replace(cfg.data, max_train_examples=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(toy_data_dir, tmp_path):
    result = train_cli(tmp_path, toy_data_dir, "device=cuda", "trainer.max_steps=1")
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1].startswith("noamt-train: device.device=cuda but CUDA is not available")
    )


def test_resuming_a_checkpoint_of_another_shape_names_the_settings(small_run, tmp_path):
    run(small_run(max_steps=2, val_interval=100), tmp_path)
    cfg = small_run(max_steps=4, resume="auto")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, d_model=32, d_ff=64))
    with pytest.raises(CheckpointError, match=r"does not fit this run: settings differ .*model.d_model: 64 -> 32"):
        pipeline.train(cfg, tmp_path, resolved_config=dataclasses.asdict(cfg))


def test_a_truncated_tokenizer_file_is_named_on_resume(small_run, tmp_path):
    run(small_run(max_steps=2, val_interval=100), tmp_path)
    tokenizer = tmp_path / "tokenizer.json"
    tokenizer.write_text(tokenizer.read_text()[:100])
    with pytest.raises(DataError, match=f"{tokenizer}: cannot read the run's tokenizer"):
        run(small_run(max_steps=4, resume="auto"), tmp_path)


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_why(tmp_path):
    """RLIMIT_FSIZE makes the write fail as a full disk would (EFBIG instead of ENOSPC)."""
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint({"model": {"w": torch.zeros(4)}}, path)
    code = (
        "import resource, signal, sys, torch\n"
        "from noamt.checkpoint import CheckpointError, save_checkpoint\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        f"    save_checkpoint({{'model': {{'w': torch.zeros(100_000)}}}}, {str(path)!r})\n"
        "except CheckpointError as err:\n"
        "    sys.exit(str(err))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "File too large" in result.stderr and "the previous checkpoint_last.pt is intact" in result.stderr
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.zeros(4))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]  # no temporary left


def test_stale_temporaries_are_removed_and_duplicate_records_dropped_on_resume(small_run, tmp_path):
    """What SIGKILL leaves: a half-written temporary and records of updates after the last
    checkpoint (one torn). Resuming removes both and continues exactly."""
    run(small_run(max_steps=6, val_interval=3, save_interval=0), tmp_path)
    stale = tmp_path / "checkpoints" / ".checkpoint_last.pt.x1y2z3.tmp"
    stale.write_bytes(b"\0" * 1000)
    with (tmp_path / "metrics.jsonl").open("a") as f:
        for step in (7, 8):
            f.write(json.dumps({"kind": "train", "step": step, "time": 0.0, "loss": 1.0}) + "\n")
        f.write('{"kind": "train", "st')
    run(small_run(max_steps=9, val_interval=3, save_interval=0, resume="auto"), tmp_path)
    assert not stale.exists()
    records = read_metrics(tmp_path / "metrics.jsonl")
    for kind in ("train", "valid"):
        steps = [r["step"] for r in records if r["kind"] == kind]
        assert steps == sorted(set(steps)), kind
    assert [r["step"] for r in records if r["kind"] == "valid"] == [0, 3, 6, 9]
    run(small_run(max_steps=9, val_interval=3, save_interval=0), tmp_path / "straight")
    resumed = load_checkpoint(tmp_path / "checkpoints" / "checkpoint_last.pt")["model"]
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "checkpoint_last.pt")["model"]
    assert all(torch.equal(resumed[name], straight[name]) for name in straight)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"max_len_a": -1.0, "max_len_b": -10}, r"decoding.max_len_a=-1.0: must be a finite number >= 0"),
        ({"max_len_b": -10}, "decoding.max_len_b=-10: must be at least 0"),
        ({"max_len_a": 0.0, "max_len_b": 0}, "decoding.max_len_a=0 and decoding.max_len_b=0 allow no output token"),
        ({"beam_size": 0}, "decoding.beam_size=0: must be at least 1"),
    ],
)
def test_decoding_settings_that_cannot_translate_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        DecodingConfig(**change)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, toy_data_dir) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("run") / "checkpoint_best.pt", toy_data_dir)


def test_translate_refuses_to_overwrite_its_input(checkpoint, tmp_path):
    source = tmp_path / "in.en"
    source.write_text("A dog runs.\n")
    result = run_cli(
        "noamt.cli.translate", f"checkpoint={checkpoint}", f"input={source}", f"output={tmp_path}/./in.en", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "is the input file: choose another output" in result.stderr.decode()
    assert source.read_text() == "A dog runs.\n"


def test_translate_with_negative_length_limits_fails(checkpoint, tmp_path):
    result = run_cli(
        "noamt.cli.translate",
        f"checkpoint={checkpoint}",
        "decoding.max_len_a=-1",
        "decoding.max_len_b=-10",
        cwd=tmp_path,
        stdin="A dog runs.\n",
    )
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines()[-1] == (
        "noamt-translate: decoding.max_len_a=-1.0: must be a finite number >= 0"
    )


@pytest.mark.parametrize(
    "module, program", [("noamt.cli.translate", "noamt-translate"), ("noamt.cli.evaluate", "noamt-evaluate")]
)
def test_a_missing_checkpoint_key_is_one_line(module, program, tmp_path):
    result = run_cli(module, cwd=tmp_path, stdin="")
    assert result.returncode == 1
    assert (
        result.stderr.decode().strip()
        == f"{program}: checkpoint=... is required (a checkpoint file or a run directory)"
    )


def test_a_checkpoint_holding_nan_weights_is_refused_on_resume(small_run, tmp_path):
    """A model that cannot be right is not trained on, whatever its checksum: resume=auto falls
    back to the latest checkpoint that verifies, saying why in one line."""
    run(small_run(max_steps=2, val_interval=100), tmp_path)
    last = tmp_path / "checkpoints" / "checkpoint_last.pt"
    state = load_checkpoint(last)
    name = next(iter(state["model"]))
    state["model"][name].view(-1)[0] = float("nan")
    save_checkpoint(state, last)  # its checksum recomputed, as anyone who edits the file can
    with pytest.raises(CheckpointError, match=rf"^{last}: 'model' {name} holds NaN or infinite values$"):
        load_checkpoint(last)


def test_a_loss_that_goes_nan_skips_updates_then_stops_without_writing_nan_checkpoints(small_run, tmp_path):
    """An absurd learning rate overflows the weights after the first update: every later loss is
    NaN, each such update is skipped on the device and counted, and the run stops after
    max_nonfinite_updates of them in a row, having saved no NaN model."""
    cfg = small_run(max_steps=8, val_interval=100, max_nonfinite_updates=3, validate_at_start=False)
    cfg = dataclasses.replace(cfg, schedule=schedules.ConstantConfig(peak_lr=1e30, warmup_steps=0))
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite for 3 updates in a row after update \d+"):
        run(cfg, tmp_path)
    skips = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "skip"]
    assert len(skips) >= 3 and [r["in_a_row"] for r in skips[-3:]] == [1, 2, 3]
    assert [r["step"] for r in skips[-3:]] == [skips[-3]["step"] + i for i in range(3)]  # k moves on
    for checkpoint in (tmp_path / "checkpoints").glob("*.pt"):
        load_checkpoint(checkpoint)  # each verifies: finite weights


def test_an_unwritable_run_directory_is_one_line_naming_the_cause(toy_data_dir, tmp_path):
    """/proc/self exists and takes no new files: the run directory cannot be written."""
    env = {**os.environ, "NOAMT_RUNS_DIR": "/proc", "NOAMT_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "noamt.cli.train", "run_name=self", f"data.dir={toy_data_dir}", "device=cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("noamt-train: cannot write to the run directory /proc/self: [Errno")
    assert len(result.stderr.strip().splitlines()) == 1


def test_evaluate_reads_only_the_splits_it_scores(checkpoint, toy_data_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for lang in ("en", "de"):
        name = f"test_2016_flickr.{lang}"
        (data / name).write_bytes((toy_data_dir / name).read_bytes())
    result = run_cli(
        "noamt.cli.evaluate",
        f"checkpoint={checkpoint}",
        "splits=[test_2016_flickr]",
        f"data_dir={data}",
        "decoding.beam_size=1",
        f"out_dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["splits"]["test_2016_flickr"]["n_sentences"] == 5
