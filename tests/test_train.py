"""End-to-end training on the toy corpus: the loss falls, resuming is exact, signals save."""

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import torch
from helpers.runs import train_run as run

from noamt import pipeline, schedules
from noamt.checkpoint import TRAIN_WEIGHTS, CheckpointState, check_new_run, load_checkpoint, save_checkpoint
from noamt.device import host_description
from noamt.metrics import read_metrics
from noamt.optim import SCHEDULE_FREE, OptimConfig
from noamt.progress import BestTracker, Pace, StopRequest, duration_text
from noamt.run_dir import RunDir
from noamt.trainer import Trainer, TrainerConfig

HELPERS = Path(__file__).parent / "helpers"

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses


def test_training_lowers_validation_loss_and_writes_the_run_directory(small_run, tmp_path):
    result = run(small_run(val_bleu=True, val_bleu_max_examples=20), tmp_path)
    assert result["step"] == 30 and not result["interrupted"]
    records = read_metrics(tmp_path / "metrics.jsonl")
    valid = [r["loss"] for r in records if r["kind"] == "valid"]
    assert len(valid) == 4  # updates 0, 10, 20, 30
    assert valid[-1] < valid[0] - 1.5
    bleu = [r.get("bleu") for r in records if r["kind"] == "valid"]
    assert bleu[0] is None  # not scored before training
    assert all(0.0 <= b <= 100.0 for b in bleu[1:])
    (started,) = [r for r in records if r["kind"] == "run"]
    assert started["host"] == host_description() and started["device"].startswith("cpu (cpu), fp32")
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30]
    assert all(r["tokens_per_s"] > 0 and r["lr"] > 0 for r in train)
    ckpts = tmp_path / "checkpoints"
    assert {p.name for p in ckpts.iterdir()} == {
        "checkpoint_last.pt",
        "checkpoint_best.pt",
        "checkpoint_10.pt",
        "checkpoint_20.pt",
        "checkpoint_30.pt",
    }
    state = load_checkpoint(ckpts / "checkpoint_last.pt")
    assert state["step"] == 30
    assert {"model", "optimizer", "data", "rng", "config", "tokenizer"} <= state.keys()
    assert (tmp_path / "tokenizer.json").is_file()


def test_resumed_run_matches_an_uninterrupted_one_bit_for_bit(small_run, tmp_path):
    run(small_run(max_steps=12, val_interval=100, save_interval=0), tmp_path / "straight")
    run(small_run(max_steps=6, val_interval=100, save_interval=0), tmp_path / "resumed")
    run(
        small_run(max_steps=12, val_interval=100, save_interval=0, resume="auto"),
        tmp_path / "resumed",
    )
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "checkpoint_last.pt")
    assert a["step"] == b["step"] == 12
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    for key, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][key]["exp_avg_sq"])
    assert a["data"] == b["data"]
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "resumed" / "metrics.jsonl") if r["kind"] == "train"}
    assert lrs[10] == schedules.NoamConfig(d_model=64, warmup_steps=15)(10)


def test_existing_run_is_not_overwritten_without_resume(small_run, tmp_path, monkeypatch):
    run(small_run(max_steps=2, val_interval=100), tmp_path)
    asked = []

    def counted_check(folder, resume):
        asked.append(resume)
        check_new_run(folder, resume)

    monkeypatch.setattr(pipeline, "check_new_run", counted_check)
    with pytest.raises(FileExistsError, match="trainer.resume=auto"):
        run(small_run(max_steps=4), tmp_path)
    assert run(small_run(max_steps=4, val_interval=100, resume="auto"), tmp_path)["step"] == 4
    assert asked == ["none", "auto"]  # once per launch


def test_a_checkpoint_holds_exactly_the_keys_checkpoint_state_declares(small_run, tmp_path):
    """What ``Trainer.state_dict`` writes (read back: load_checkpoint removes only the checksum)
    is CheckpointState's required keys, the run's identity (config, tokenizer, identity), and the optional
    train_weights with schedule-free AdamW only, each value of the type declared."""
    declared = typing.get_type_hints(CheckpointState)
    assert CheckpointState.__optional_keys__ == {TRAIN_WEIGHTS, "config", "tokenizer", "identity"}
    adam = small_run(max_steps=1, val_interval=0, save_interval=0, validate_at_start=False)
    schedule_free = dataclasses.replace(
        adam, optim=OptimConfig(name=SCHEDULE_FREE), schedule=schedules.ConstantConfig(peak_lr=3e-3, warmup_steps=4)
    )
    for name, cfg, optional in (
        ("adam", adam, {"config", "tokenizer", "identity"}),
        ("schedulefree", schedule_free, {"config", "tokenizer", "identity", TRAIN_WEIGHTS}),
    ):
        run(cfg, tmp_path / name)
        state = load_checkpoint(RunDir.at(tmp_path / name).last)
        assert state.keys() == CheckpointState.__required_keys__ | optional, name
        for key, value in state.items():
            kind = typing.get_origin(declared[key]) or declared[key]
            assert isinstance(value, dict if typing.is_typeddict(kind) else kind), (name, key)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGUSR2], ids=["SIGTERM", "SIGUSR2"])
def test_noamt_train_saves_on_a_stop_signal_and_resumes(toy_data_dir, tmp_path, stop_signal):
    """The console entry point: SIGTERM (a kill) or SIGUSR2 (SLURM's warning before its time
    limit) mid-run saves a checkpoint; resume=auto continues it."""
    env = {
        **os.environ,
        "NOAMT_RUNS_DIR": str(tmp_path),
        "NOAMT_CACHE_DIR": str(tmp_path / "cache"),
    }
    args = [
        sys.executable,
        "-m",
        "noamt.cli.train",
        f"data.dir={toy_data_dir}",
        "data.max_train_examples=2000",
        "data.max_eval_examples=50",
        "tokenizer.vocab_size=1000",
        "model=tiny",
        "run_name=sig",
        "trainer.max_tokens=1024",
        "trainer.log_interval=1",
        "trainer.val_interval=1000",
        "trainer.save_interval=1000",
        "device=cpu",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.val_bleu=false",
    ]
    proc = subprocess.Popen(
        [*args, "trainer.max_steps=100000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = tmp_path / "sig" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and '"train"' in metrics.read_text()):
        time.sleep(0.2)
    proc.send_signal(stop_signal)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + stop_signal, output[-2000:]
    assert f"received {stop_signal.name}: saving a checkpoint" in output
    stopped = load_checkpoint(tmp_path / "sig" / "checkpoints" / "checkpoint_last.pt")
    assert stopped["step"] >= 1
    end = read_metrics(metrics)[-1]
    assert end["kind"] == "end" and end["interrupted"] is True

    target = stopped["step"] + 2
    done = subprocess.run(
        [*args, f"trainer.max_steps={target}", "trainer.resume=auto"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert f"at update {stopped['step']} (epoch" in done.stdout
    records = read_metrics(metrics)
    assert [r["step"] for r in records if r["kind"] == "train"][-2:] == [target - 1, target]
    assert records[-1]["kind"] == "end" and records[-1]["interrupted"] is False


def test_two_process_ddp_equals_one_process_accumulating_two_batches(small_run, toy_data_dir, tmp_path):
    """torchrun with 2 CPU processes (gloo): rank r takes batches r, r+2, ... so each update sees
    the same two batches as one process with update_freq=2; without dropout the weights agree."""
    single = small_run(max_steps=4, update_freq=2, val_interval=100, save_interval=0)
    single.model.dropout = 0.0
    run(single, tmp_path / "single")
    env = {
        **os.environ,
        "NOAMT_RUNS_DIR": str(tmp_path),
        "NOAMT_CACHE_DIR": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "noamt.cli.train",
        f"data.dir={toy_data_dir}",
        "data.max_train_examples=1500",
        "data.max_eval_examples=100",
        "tokenizer.vocab_size=1000",
        "model.encoder_layers=2",
        "model.decoder_layers=2",
        "model.d_model=64",
        "model.d_ff=128",
        "model.dropout=0.0",
        "schedule.warmup_steps=15",
        "trainer.max_steps=4",
        "trainer.max_tokens=1024",
        "trainer.seed=3",
        "trainer.val_interval=100",
        "trainer.save_interval=0",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.val_bleu=false",
        "device=cpu",
        "device.num_threads=1",
        "run_name=ddp",
    ]
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    a = load_checkpoint(tmp_path / "single" / "checkpoints" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "checkpoint_last.pt")
    assert a["step"] == b["step"] == 4
    for name, tensor in a["model"].items():
        torch.testing.assert_close(
            without_key_bias(name, b["model"][name]),
            without_key_bias(name, tensor),
            rtol=1e-4,
            atol=1e-5,
            msg=name,
        )


@pytest.mark.slow
def test_two_srun_tasks_train_as_one_job(toy_data_dir, tmp_path):
    """Two processes with SLURM's variables only (no torchrun's), as srun starts them: they join
    one gloo process group, train on disjoint batches and end with the same parameters."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    launcher_variables = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    base_env = {k: v for k, v in os.environ.items() if k not in launcher_variables and not k.startswith("SLURM_")}
    overrides = [
        f"data.dir={toy_data_dir}",
        "data.max_train_examples=1500",
        "data.max_eval_examples=50",
        "tokenizer.vocab_size=1000",
        "model=tiny",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "trainer.max_steps=3",
        "trainer.max_tokens=1024",
        "trainer.val_interval=100",
        "trainer.save_interval=0",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "trainer.val_bleu=false",
        "device=cpu",
        "device.num_threads=1",
        "run_name=srun",
    ]
    tasks = []
    for rank in range(2):
        env = {
            **base_env,
            "NOAMT_RUNS_DIR": str(tmp_path),
            "NOAMT_CACHE_DIR": str(tmp_path / "cache"),
            "OMP_NUM_THREADS": "1",
            "SLURM_PROCID": str(rank),
            "SLURM_NTASKS": "2",
            "SLURM_LOCALID": str(rank),
            "SLURM_STEP_NODELIST": "localhost",
            "SLURM_JOB_ID": "4242",
            "MASTER_PORT": str(port),
        }
        command = [sys.executable, str(HELPERS / "slurm_rank.py"), str(tmp_path / f"rank{rank}.pt"), *overrides]
        tasks.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [task.communicate(timeout=300)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    assert "rank 0/2 (slurm)" in outputs[0]
    first, second = (torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2))
    assert len(first["batches"]) == len(second["batches"]) == 3
    assert not {str(b) for b in first["batches"]} & {str(b) for b in second["batches"]}
    for name, tensor in first["parameters"].items():
        torch.testing.assert_close(second["parameters"][name], tensor, rtol=0, atol=0, msg=name)
    assert load_checkpoint(tmp_path / "srun" / "checkpoints" / "checkpoint_last.pt")["step"] == 3


def without_key_bias(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Drop the key-projection bias: softmax ignores it, so its gradient is pure rounding noise,
    which Adam scales up to +-lr per update whatever the summation order."""
    d = 64
    if name.endswith("qkv.bias"):
        return torch.cat([tensor[:d], tensor[2 * d :]])
    if name.endswith("kv.bias"):
        return tensor[d:]
    return tensor


def test_epoch_checkpoints_and_validation_at_epoch_ends(small_run, tmp_path):
    """save_every_epoch/val_every_epoch: one checkpoint and one validation per epoch, the last
    keep_last_epochs kept, each holding the state at the end of its epoch."""
    cfg = small_run(
        max_steps=0,
        max_epochs=3,
        val_interval=0,
        val_every_epoch=True,
        validate_at_start=False,
        save_interval=0,
        save_every_epoch=True,
        keep_last_epochs=2,
    )
    result = run(cfg, tmp_path)
    records = read_metrics(tmp_path / "metrics.jsonl")
    valid_steps = [r["step"] for r in records if r["kind"] == "valid"]
    per_epoch = valid_steps[0]
    assert per_epoch > 1 and valid_steps == [per_epoch, 2 * per_epoch, 3 * per_epoch] == [
        *valid_steps[:2],
        result["step"],
    ]
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("checkpoint_epoch*.pt")) == [
        "checkpoint_epoch2.pt",
        "checkpoint_epoch3.pt",
    ]
    for epoch in (2, 3):
        state = load_checkpoint(ckpts / f"checkpoint_epoch{epoch}.pt")
        assert state["step"] == epoch * per_epoch and state["epoch"] == epoch
        assert state["data"]["position"] == per_epoch  # the whole epoch consumed
    assert not list(ckpts.glob("checkpoint_[0-9]*.pt"))  # save_interval=0 writes no update checkpoints


def test_a_stop_signal_cuts_a_validation_short_and_resuming_runs_it_first(small_run, tmp_path, monkeypatch, caplog):
    """SIGUSR2 as the epoch-end validation begins: it stops at its next batch, the epoch
    checkpoint is saved without it, and the resumed run validates that update before training
    on, so the validations are those of an uninterrupted run."""
    cfg = small_run(
        max_steps=0,
        max_epochs=2,
        val_interval=0,
        val_every_epoch=True,
        validate_at_start=False,
        save_interval=0,
        save_every_epoch=True,
        keep_last_epochs=5,
    )
    validate, calls = Trainer.validate, []

    def signalled_validate(trainer):
        calls.append(trainer.step)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGUSR2)
        return validate(trainer)

    monkeypatch.setattr(Trainer, "validate", signalled_validate)
    result = run(cfg, tmp_path)
    assert result["interrupted"] == signal.SIGUSR2 and "cut short by SIGUSR2" in caplog.text
    per_epoch = calls[0]
    assert result["step"] == per_epoch  # no update after the signal
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert not [r for r in records if r["kind"] == "valid"] and records[-1]["interrupted"] is True
    state = load_checkpoint(tmp_path / "checkpoints" / "checkpoint_epoch1.pt")
    assert state["step"] == per_epoch and state["validation_pending"] is True and state["validated_step"] == -1

    monkeypatch.setattr(Trainer, "validate", validate)
    resumed = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, resume="auto"))
    result = run(resumed, tmp_path)
    assert result["interrupted"] is None and result["step"] == 2 * per_epoch
    valid_steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "valid"]
    assert valid_steps == [per_epoch, 2 * per_epoch]
    assert load_checkpoint(tmp_path / "checkpoints" / "checkpoint_best.pt")["validation_pending"] is False


def test_best_tracker_follows_its_metric_and_counts_patience():
    tracker = BestTracker("bleu", patience=2)
    assert tracker.update({"loss": 5.0, "bleu": 10.0}, step=10) and tracker.best_step == 10
    assert not tracker.update({"loss": 4.0, "bleu": 9.0}, step=20)  # lower loss, but BLEU decides
    assert tracker.best == {"loss": 4.0, "bleu": 10.0} and not tracker.out_of_patience()
    assert not tracker.update({"loss": 4.5, "bleu": 10.0}, step=30) and tracker.out_of_patience()
    assert tracker.best_step == 10
    assert tracker.update({"loss": 4.4, "bleu": 11.0}, step=40) and tracker.without_improvement == 0
    assert tracker.best_step == 40
    assert BestTracker("loss", 0).finite() == {}
    with pytest.raises(ValueError, match="trainer.best_metric='ppl': must be one of loss, bleu"):
        TrainerConfig(best_metric="ppl")


def test_the_first_updates_give_one_time_estimate_for_the_rest():
    pace = Pace(first_step=200, total=100_200, count=10)
    assert all(pace.after_update(step) is None for step in range(201, 210))
    time.sleep(0.05)
    line = pace.after_update(210)
    assert re.fullmatch(r"\d+\.\d\d s per update: about [\d.]+ (min|h|days) for the 99990 updates left", line)
    assert pace.after_update(211) is None  # once per launch
    assert "runs until stopped" in Pace(0, None, 1).after_update(1)
    assert [duration_text(s) for s in (20, 600, 7200, 3 * 86400)] == ["1 min", "10 min", "2.0 h", "3.0 days"]


def test_a_launchers_handler_of_the_stop_signal_runs_after_the_stop_request():
    """submitit requeues a job from its SIGUSR2 handler: it must still run, once the loop has saved."""
    received = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
    try:
        with StopRequest().installed() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert stop.signum == signal.SIGUSR2 and received == []
        assert received == [signal.SIGUSR2]
        with StopRequest().installed():  # Python's SIGINT handler would raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_resume_whose_best_is_the_initial_model_warns_of_no_missing_checkpoint(small_run, tmp_path, caplog):
    """Stopped before any validation improved on the one before update 1: the best model is the
    initialisation, which no checkpoint keeps, and resuming says nothing about checkpoint_best.pt."""
    run(small_run(max_steps=2, val_interval=100, save_interval=0), tmp_path)
    folder = RunDir.at(tmp_path)
    state = load_checkpoint(folder.last)  # made the state of a Ctrl-C at update 2: best still update 0's
    save_checkpoint({**state, "best_step": 0}, folder.last)
    folder.best.unlink()
    with caplog.at_level("WARNING"):
        run(small_run(max_steps=3, val_interval=100, save_interval=0, resume="auto"), tmp_path)
    assert "checkpoint_best.pt" not in caplog.text


def test_the_same_signal_delivered_twice_at_once_is_one_stop_request_and_a_later_one_gives_up():
    """Linux sends the parent-death signal once per thread of the child (the batch-building
    thread makes two): a repeat within REPEAT_WINDOW_S is the same request; a later one gives up."""
    stop = StopRequest()
    with stop.installed():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        time.sleep(0.3)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler runs at the next bytecode boundary
