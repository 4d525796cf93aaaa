"""Checkpoints that cannot run code, damage detected, one trainer per run, consistent files
after a kill or a relaunch: each case asserts the exit status, the one line, and that nothing
else changed. All on the synthetic corpus (tests/helpers/toy_corpus.py)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers.checkpoints import Payload, flip_bytes

from noamt.checkpoint import load_checkpoint
from noamt.metrics import read_metrics
from noamt.run_lock import run_holder, run_lock

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TRAIN = [
    "data.max_eval_examples=20",
    "tokenizer.vocab_size=300",
    "model=tiny",
    "model.encoder_layers=1",
    "model.decoder_layers=1",
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_ff=64",
    "run_name=r",
    "trainer.max_tokens=512",
    "trainer.val_interval=2",
    "trainer.save_interval=2",
    "trainer.keep_last=0",
    "trainer.log_interval=1",
    "trainer.val_bleu=false",
    "device=cpu",
    "device.num_threads=1",
    "trainer.progress=false",
    "trainer.tensorboard=false",
]


def env_for(tmp_path: Path, data_dir: Path) -> dict:
    return {
        **os.environ,
        "NOAMT_RUNS_DIR": str(tmp_path),
        "NOAMT_CACHE_DIR": str(tmp_path.parent / "cache"),
        "NOAMT_DATA_DIR": str(data_dir),
        "OMP_NUM_THREADS": "1",
    }


def cli(module: str, *args: str, env: dict, stdin=None, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, env=env, stdin=stdin, capture_output=True, text=True, timeout=timeout)


def script(name: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args], env=env, capture_output=True, text=True, timeout=300
    )


def train(tmp_path: Path, data_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return cli("noamt.cli.train", *TRAIN, *overrides, env=env_for(tmp_path, data_dir))


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


def logged(result: subprocess.CompletedProcess) -> str:
    """What a command logged: Hydra's console handler writes to stdout, errors go to stderr."""
    return result.stdout + result.stderr


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Relative path -> contents of every file under ``folder`` (except those named in ``skip``)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


@pytest.fixture(scope="module")
def trained(toy_data_dir, tmp_path_factory) -> Path:
    """A finished 4-update run: checkpoints 2 and 4, last and best, validated at 0, 2 and 4."""
    root = tmp_path_factory.mktemp("trained")
    result = train(root, toy_data_dir, "trainer.max_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "r"


@pytest.fixture()
def run_copy(trained, tmp_path) -> Path:
    """A copy of the trained run in ``tmp_path / 'r'``, to damage."""
    return Path(shutil.copytree(trained, tmp_path / "r"))


def plant_payload(path: Path, marker: Path) -> None:
    """Replace the checkpoint at ``path`` by the same state with a code-running object inside."""
    state = load_checkpoint(path)
    torch.save({**state, "extra": Payload(marker)}, path)


def flip_weights(path: Path) -> None:
    """Invert 64 bytes inside the source embedding of the checkpoint at ``path``."""
    weights = load_checkpoint(path)["model"]["src_embed.weight"]
    flip_bytes(path, weights[5].numpy().tobytes())


# ----------------------------------------------------------------------------- loading never runs code
@pytest.mark.parametrize("target", ["file", "run directory"])
def test_translate_refuses_a_payload_checkpoint(run_copy, toy_data_dir, tmp_path, target):
    marker = tmp_path / "payload-ran"
    plant_payload(run_copy / "checkpoints" / "checkpoint_best.pt", marker)
    checkpoint = run_copy / "checkpoints" / "checkpoint_best.pt" if target == "file" else run_copy
    result = subprocess.run(
        [sys.executable, "-m", "noamt.cli.translate", f"checkpoint={checkpoint}", "device=cpu"],
        input="A dog runs .\n",
        env=env_for(tmp_path, toy_data_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert last_line(result).startswith("noamt-translate: refused to load ")
    assert "checkpoint_best.pt: it holds objects other than tensors" in last_line(result)
    assert not marker.exists()


def test_evaluate_refuses_a_payload_checkpoint(run_copy, toy_data_dir, tmp_path):
    marker = tmp_path / "payload-ran"
    plant_payload(run_copy / "checkpoints" / "checkpoint_best.pt", marker)
    result = cli("noamt.cli.evaluate", f"checkpoint={run_copy}", "device=cpu", env=env_for(tmp_path, toy_data_dir))
    assert result.returncode == 1
    assert last_line(result).startswith("noamt-evaluate: refused to load ") and not marker.exists()
    assert not (run_copy / "eval").exists()


def test_train_resume_refuses_a_payload_checkpoint(run_copy, toy_data_dir, tmp_path):
    marker = tmp_path / "payload-ran"
    for path in (run_copy / "checkpoints").iterdir():
        plant_payload(path, marker)
    before = snapshot(run_copy)
    named = train(
        tmp_path, toy_data_dir, "trainer.max_steps=6", f"trainer.resume={run_copy}/checkpoints/checkpoint_4.pt"
    )
    auto = train(tmp_path, toy_data_dir, "trainer.max_steps=6", "trainer.resume=auto")
    assert named.returncode == auto.returncode == 1
    assert last_line(named).startswith("noamt-train: refused to load ") and "checkpoint_4.pt" in last_line(named)
    assert last_line(auto).startswith(f"noamt-train: no checkpoint in {run_copy}/checkpoints can be resumed: refused")
    assert not marker.exists()
    assert snapshot(run_copy, skip=("train.log", "train.lock")) == {
        k: v for k, v in before.items() if not k.endswith(("train.log", "train.lock"))
    }


def test_averaging_refuses_a_payload_checkpoint(run_copy, toy_data_dir, tmp_path):
    marker = tmp_path / "payload-ran"
    plant_payload(run_copy / "checkpoints" / "checkpoint_2.pt", marker)
    result = script(
        "average_checkpoints.py", "--run-dir", str(run_copy), "--last", "2", env=env_for(tmp_path, toy_data_dir)
    )
    assert result.returncode == 1
    assert last_line(result).startswith("average_checkpoints: refused to load ") and not marker.exists()
    assert not (run_copy / "checkpoints" / "checkpoint_avg.pt").exists()


def test_compare_dry_run_does_not_run_a_payload_checkpoint(trained, toy_data_dir, tmp_path):
    out = tmp_path / "bench"
    env = env_for(tmp_path, toy_data_dir)
    first = subprocess.run(compare_command(out, "--dry-run"), env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoints = out / "runs" / "noam-seed1" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(trained / "checkpoints" / "checkpoint_last.pt", checkpoints / "checkpoint_last.pt")
    marker = tmp_path / "payload-ran"
    plant_payload(checkpoints / "checkpoint_last.pt", marker)
    result = subprocess.run(compare_command(out, "--dry-run"), env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    refused = [line for line in result.stderr.splitlines() if line.startswith("refused to load")]
    assert len(refused) == 1 and f"{checkpoints}/checkpoint_last.pt" in refused[0]
    assert refused[0].endswith("its trainer resumes from the latest checkpoint that verifies")
    assert not marker.exists()


# ----------------------------------------------------------------------------- integrity
def test_a_damaged_checkpoint_last_resumes_from_the_latest_checkpoint_that_verifies(run_copy, toy_data_dir, tmp_path):
    checkpoints = run_copy / "checkpoints"
    flip_weights(checkpoints / "checkpoint_last.pt")
    flip_weights(checkpoints / "checkpoint_4.pt")
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=6", "trainer.resume=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    warning = [line for line in logged(result).splitlines() if "the latest checkpoint that verifies" in line]
    assert len(warning) == 1 and "checkpoint_last.pt is damaged" in warning[0]
    assert "resuming from checkpoint_best.pt (update 4)" in warning[0] or "checkpoint_2.pt (update 2)" in warning[0]
    assert load_checkpoint(checkpoints / "checkpoint_last.pt")["step"] == 6
    steps = [r["step"] for r in read_metrics(run_copy / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 6  # every update recorded once


def test_a_run_without_a_checkpoint_that_verifies_stops_in_one_line(run_copy, toy_data_dir, tmp_path):
    for path in (run_copy / "checkpoints").iterdir():
        flip_weights(path)
    before = snapshot(run_copy, skip=("train.log", "train.lock"))
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=6", "trainer.resume=auto")
    assert result.returncode == 1
    assert last_line(result).startswith(f"noamt-train: no checkpoint in {run_copy}/checkpoints can be resumed: ")
    assert "checkpoint_last.pt is damaged" in last_line(result)
    assert snapshot(run_copy, skip=("train.log", "train.lock")) == before


@pytest.mark.parametrize("tool", ["translate", "evaluate", "average"])
def test_tools_refuse_a_damaged_checkpoint_in_one_line(run_copy, toy_data_dir, tmp_path, tool):
    best = run_copy / "checkpoints" / "checkpoint_best.pt"
    flip_weights(best)
    env = env_for(tmp_path, toy_data_dir)
    other = str(run_copy / "checkpoints" / "checkpoint_2.pt")
    if tool == "average":
        result = script(
            "average_checkpoints.py", "--inputs", str(best), other, "--output", str(tmp_path / "avg.pt"), env=env
        )
    elif tool == "translate":
        result = cli("noamt.cli.translate", f"checkpoint={best}", "device=cpu", "input=/dev/null", env=env)
    else:
        result = cli("noamt.cli.evaluate", f"checkpoint={best}", "device=cpu", env=env)
    assert result.returncode == 1
    assert last_line(result).endswith(f"{best} is damaged: its contents do not match the checksum written with them")
    assert not (tmp_path / "avg.pt").exists() and not (run_copy / "eval").exists()


# ----------------------------------------------------------------------------- one process per run
def test_a_second_trainer_on_a_run_in_training_is_refused_and_changes_nothing(run_copy, toy_data_dir, tmp_path):
    before = snapshot(run_copy)
    with run_lock(run_copy):  # this process trains the run, as far as anyone can tell
        result = train(tmp_path, toy_data_dir, "trainer.max_steps=6", "trainer.resume=auto")
    assert result.returncode == 1
    assert last_line(result).startswith(f"noamt-train: {run_copy} is being trained by process {os.getpid()} on ")
    after = snapshot(run_copy)
    after.pop("train.lock")
    assert after == {k: v for k, v in before.items() if k != "train.lock"}


def test_a_lock_left_by_a_dead_process_does_not_block(run_copy, toy_data_dir, tmp_path):
    (run_copy / "train.lock").write_text("999999 gone-host\n")
    assert run_holder(run_copy) is None
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=6", "trainer.resume=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(run_copy / "checkpoints" / "checkpoint_last.pt")["step"] == 6
    assert (run_copy / "train.lock").read_text().split()[0] != "999999"


def compare_command(out: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "noamt_study.cli",
        "--profile",
        "smoke",
        "--schedules",
        "noam",
        "--seeds",
        "1",
        "--out",
        str(out),
        *args,
        "data.max_train_examples=300",
    ]


def test_compare_refuses_to_train_a_run_another_process_holds(toy_data_dir, tmp_path):
    run_dir = tmp_path / "bench" / "runs" / "noam-seed1"
    with run_lock(run_dir):
        result = subprocess.run(
            compare_command(tmp_path / "bench", "--dry-run"),
            env=env_for(tmp_path, toy_data_dir),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 1
    assert last_line(result).startswith(
        f"noamt-compare: runs in training by other processes: noam-seed1 (process {os.getpid()} on "
    )
    assert not (run_dir / "metrics.jsonl").exists()


def test_killing_the_comparison_stops_its_trainers(toy_data_dir, tmp_path):
    out = tmp_path / "bench"
    env = env_for(tmp_path, toy_data_dir)
    command = compare_command(out, "trainer.max_steps=100000", "trainer.val_interval=0", "trainer.save_interval=0")
    compare = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = out / "runs" / "noam-seed1"
    deadline = time.monotonic() + 240
    while not any(r["kind"] == "train" for r in _records(run_dir)):
        assert compare.poll() is None and time.monotonic() < deadline, "the trainer did not start"
        time.sleep(0.5)
    assert run_holder(run_dir) is not None
    compare.send_signal(signal.SIGKILL)
    compare.wait()
    deadline = time.monotonic() + 60
    while run_holder(run_dir) is not None:
        assert time.monotonic() < deadline, "the trainer outlived the comparison"
        time.sleep(0.5)
    end = _records(run_dir)[-1]
    assert end["kind"] == "end" and end["interrupted"]  # it stopped as on SIGTERM: saved, then exited
    assert load_checkpoint(run_dir / "checkpoints" / "checkpoint_last.pt")["step"] == end["step"]


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return read_metrics(path) if path.is_file() else []


# ----------------------------------------------------------------------------- consistent files
def test_relaunching_a_finished_run_changes_nothing(run_copy, toy_data_dir, tmp_path):
    """Only the log and the lock (which names the last process that held the run) see the relaunch."""
    before = snapshot(run_copy, skip=("train.log", "train.lock"))
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=4", "trainer.resume=auto", "trainer.patience=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the run finished at update 4 already: nothing to do" in logged(result)
    assert snapshot(run_copy, skip=("train.log", "train.lock")) == before  # no validation, checkpoint, record, config


def test_a_fresh_start_drops_the_records_of_a_launch_killed_before_its_first_checkpoint(toy_data_dir, tmp_path):
    env = env_for(tmp_path, toy_data_dir)
    slow = [*TRAIN, "trainer.max_steps=100000", "trainer.val_interval=0", "trainer.save_interval=0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "noamt.cli.train", *slow], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    run_dir = tmp_path / "r"
    deadline = time.monotonic() + 240
    while len([r for r in _records(run_dir) if r["kind"] == "train"]) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert not (run_dir / "checkpoints" / "checkpoint_last.pt").exists()
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=4", "trainer.resume=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
    assert [r["kind"] for r in records].count("run") == 1


def test_a_missing_checkpoint_best_is_rewritten_from_a_resumed_best_state(run_copy, toy_data_dir, tmp_path):
    checkpoints = run_copy / "checkpoints"
    last = load_checkpoint(checkpoints / "checkpoint_last.pt")
    assert last["best_step"] == last["step"] == 4  # the loss still falls: update 4 is the best
    before = snapshot(run_copy, skip=("train.log", "train.lock"))
    (checkpoints / "checkpoint_best.pt").unlink()
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=4", "trainer.resume=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checkpoint_best.pt is missing: rewritten from the resumed checkpoint (update 4)" in logged(result)
    best = load_checkpoint(checkpoints / "checkpoint_best.pt")
    assert best["step"] == 4 and best["best"] == last["best"]
    torch.testing.assert_close(best["model"], last["model"], rtol=0, atol=0)
    after = snapshot(run_copy, skip=("train.log", "train.lock"))
    assert {k: v for k, v in after.items() if k != "checkpoints/checkpoint_best.pt"} == {
        k: v for k, v in before.items() if k != "checkpoints/checkpoint_best.pt"
    }


# ----------------------------------------------------------------------------- other checks
def test_another_runs_tokenizer_is_refused_on_resume(run_copy, toy_data_dir, tmp_path):
    """Another tokenizer of the same vocabulary size: here the run's own with two token ids swapped."""
    path = run_copy / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[-2:]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    path.write_text(json.dumps(spec), encoding="utf-8")
    before = snapshot(run_copy, skip=("train.log", "train.lock"))
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=6", "trainer.resume=auto")
    assert result.returncode == 1
    assert last_line(result).startswith("noamt-train: the run's tokenizer.json is not the tokenizer ")
    assert "checkpoint_last.pt was trained with" in last_line(result)
    assert snapshot(run_copy, skip=("train.log", "train.lock")) == before


def test_negative_num_threads_names_the_key(toy_data_dir, tmp_path):
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=1", "device.num_threads=-1")
    assert result.returncode == 1
    assert last_line(result) == "noamt-train: device.num_threads=-1: must be at least 0 (0: one per free core)"


def test_damaged_metrics_lines_are_set_aside_on_resume_not_deleted(run_copy, toy_data_dir, tmp_path):
    metrics = run_copy / "metrics.jsonl"
    damaged = [
        b'{"kind": "train", "step": "four", "time": 1.0}',
        b'{"step": Infinity, "kind": "x", "time": 1}',
        b"\xa6\xff not utf-8",
        b'{"kind": "valid", "st',
    ]
    lines = metrics.read_bytes().splitlines()
    metrics.write_bytes(b"\n".join(lines[:3] + damaged[:3] + lines[3:] + damaged[3:]) + b"\n")
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=6", "trainer.resume=auto")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "metrics.jsonl: 4 damaged lines moved to metrics.jsonl.damaged" in logged(result)
    assert (run_copy / "metrics.jsonl.damaged").read_bytes() == b"".join(line + b"\n" for line in damaged)
    records = read_metrics(metrics)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_a_metrics_file_that_is_a_folder_is_one_line(toy_data_dir, tmp_path):
    (tmp_path / "r" / "metrics.jsonl").mkdir(parents=True)
    result = train(tmp_path, toy_data_dir, "trainer.max_steps=1")
    assert result.returncode == 1
    assert last_line(result) == f"noamt-train: cannot read {tmp_path}/r/metrics.jsonl: Is a directory"


def test_translate_with_stdin_closed_is_one_line(trained, toy_data_dir, tmp_path):
    command = f"exec 0<&-; {sys.executable} -m noamt.cli.translate checkpoint={trained} device=cpu"
    closed = subprocess.run(
        ["bash", "-c", command], env=env_for(tmp_path, toy_data_dir), capture_output=True, text=True, timeout=300
    )
    assert closed.returncode == 1 and closed.stdout == ""
    assert last_line(closed) == "noamt-translate: input=-: standard input is closed; pass input=<file> or pipe text in"


@pytest.mark.parametrize("output, reason", [("/dev/full", "No space left on device"), ("folder", "Is a directory")])
def test_translate_write_errors_name_the_output(trained, toy_data_dir, tmp_path, output, reason):
    if output == "/dev/full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    output = output if output.startswith("/") else str(tmp_path)
    source = tmp_path / "in.txt"
    source.write_text("A dog runs .\n")
    result = cli(
        "noamt.cli.translate",
        f"checkpoint={trained}",
        "device=cpu",
        f"input={source}",
        f"output={output}",
        env=env_for(tmp_path, toy_data_dir),
    )
    assert result.returncode == 1
    assert last_line(result) == f"noamt-translate: output={output}: cannot write the translations: {reason}"


def test_compare_input_errors_name_their_file_or_option(trained, toy_data_dir, tmp_path):
    env = env_for(tmp_path, toy_data_dir)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    out_is_file = subprocess.run(compare_command(a_file, "--dry-run"), env=env, capture_output=True, text=True)
    assert out_is_file.returncode == 2 and last_line(out_is_file).endswith(f"--out {a_file}: is a file, not a folder")
    command = compare_command(tmp_path / "b", "--dry-run")
    command[command.index("--seeds") + 1] = "0,-1"
    seeds = subprocess.run(command, env=env, capture_output=True, text=True)
    assert seeds.returncode == 2
    assert last_line(seeds).endswith("argument --seeds: -1: must be at least 0")
    run_dir = tmp_path / "c" / "runs" / "noam-seed1"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("trainer: !!python/object/apply:os.system ['touch /tmp/x']\n")
    tagged = subprocess.run(compare_command(tmp_path / "c", "--dry-run"), env=env, capture_output=True, text=True)
    assert tagged.returncode == 1
    assert last_line(tagged).startswith(f"noamt-compare: {run_dir}/.hydra/config.yaml: cannot read the run's config (")


def test_compare_reads_past_damaged_metrics_records(trained, toy_data_dir, tmp_path):
    """A record with an infinite step, a torn line and non-UTF-8 bytes are not records: the
    comparison reads the others (the trainer sets them aside when it resumes)."""
    run_dir = tmp_path / "bench" / "runs" / "noam-seed1"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_bytes(
        json.dumps({"kind": "run", "step": 0, "time": 1.0}).encode() + b'\n{"kind": "end", "step": Infinity, '
        b'"time": 2}\n\xa6\xa6\n{"kind": "tra'
    )
    result = subprocess.run(
        compare_command(tmp_path / "bench", "--dry-run"),
        env=env_for(tmp_path, toy_data_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 run, 0 finished (skipped), 1 to train" in result.stderr
