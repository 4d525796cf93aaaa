import os

import pytest
import torch
from helpers.checkpoints import Payload, flip_bytes

from noamt.checkpoint import (
    Checkpointer,
    CheckpointError,
    average_checkpoints,
    check_new_run,
    content_digest,
    load_checkpoint,
    numbered_checkpoints,
    prune_checkpoints,
    save_checkpoint,
)
from noamt.run_dir import RunDir
from noamt.run_lock import run_lock


def test_save_and_load_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "step": 7}
    save_checkpoint(state, tmp_path / "ck.pt")
    loaded = load_checkpoint(tmp_path / "ck.pt")
    assert loaded["step"] == 7
    torch.testing.assert_close(loaded["model"]["w"], state["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_a_state_that_is_not_tensors_and_plain_values_is_refused_and_the_previous_file_kept(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"model": {}, "step": 1}, path)

    class Custom:
        pass

    with pytest.raises(CheckpointError, match="tensors and plain values only, not Custom"):
        save_checkpoint({"model": {}, "step": 2, "bad": Custom()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_a_checkpoint_carrying_a_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "payload-ran"
    torch.save({"model": {"w": torch.zeros(2)}, "step": 1, "extra": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refused to load .*evil.pt: .*GLOBAL posix.system"):
        load_checkpoint(tmp_path / "evil.pt")
    torch.save(Payload(marker), tmp_path / "only.pt")  # a file that is nothing but the payload
    with pytest.raises(CheckpointError, match="refused to load .*only.pt"):
        load_checkpoint(tmp_path / "only.pt")
    assert not marker.exists()


def test_the_checksum_catches_flipped_bytes_in_weights_and_optimizer_state(tmp_path):
    weights, moments = torch.arange(1000, dtype=torch.float32), torch.linspace(1, 2, 500, dtype=torch.float64)
    state = {"model": {"w": weights}, "optimizer": {"state": {0: {"exp_avg": moments}}}, "step": 3}
    for i, needle in enumerate([weights.numpy().tobytes(), moments.numpy().tobytes()]):
        path = save_checkpoint(state, tmp_path / f"ck{i}.pt")
        flip_bytes(path, needle)
        with pytest.raises(CheckpointError, match=f"ck{i}.pt is damaged: its contents do not match the checksum"):
            load_checkpoint(path)
    path = save_checkpoint(state, tmp_path / "intact.pt")
    torch.testing.assert_close(load_checkpoint(path)["model"]["w"], weights)


def test_a_checkpoint_without_a_checksum_is_refused(tmp_path):
    torch.save({"model": {"w": torch.zeros(2)}, "step": 1}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="plain.pt has no sha256 entry"):
        load_checkpoint(tmp_path / "plain.pt")


def test_the_digest_tells_structures_and_values_apart():
    base = {"model": {"w": torch.zeros(4)}, "step": 1}
    variants = [
        {"model": {"w": torch.zeros(2, 2)}, "step": 1},  # same bytes, other shape
        {"model": {"w": torch.zeros(4, dtype=torch.float64)[:4].float()}, "step": 1.0},  # int -> float
        {"model": {"w": torch.zeros(4)}, "step": "1"},
        {"model": {"w": torch.zeros(4)}, "step": [1]},
        {"model": {"w": torch.zeros(4)}, "step": (1,)},
    ]
    digests = {content_digest(base)} | {content_digest(v) for v in variants}
    assert len(digests) == 1 + len(variants)
    assert content_digest(base) == content_digest({"model": {"w": torch.zeros(4)}, "step": 1, "sha256": "x"})


def test_broken_or_missing_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*broken.pt"):
        load_checkpoint(tmp_path / "broken.pt")


def test_prune_keeps_the_newest_numbered_checkpoints(tmp_path):
    for step in (5, 100, 20, 40):
        save_checkpoint({"model": {}}, tmp_path / f"checkpoint_{step}.pt")
    save_checkpoint({"model": {}}, tmp_path / "checkpoint_last.pt")
    prune_checkpoints(tmp_path, keep_last=2)
    assert [p.name for p in numbered_checkpoints(tmp_path)] == [
        "checkpoint_40.pt",
        "checkpoint_100.pt",
    ]
    assert (tmp_path / "checkpoint_last.pt").exists()


def test_average_of_two_checkpoints_is_the_mean(tmp_path):
    a = {
        "model": {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5])},
        "step": 1,
        "optimizer": {},
    }
    b = {
        "model": {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor([1.5])},
        "step": 2,
        "optimizer": {},
    }
    paths = [save_checkpoint(a, tmp_path / "a.pt"), save_checkpoint(b, tmp_path / "b.pt")]
    avg = average_checkpoints(paths)
    torch.testing.assert_close(avg["model"]["w"], torch.tensor([2.0, 4.0]))
    torch.testing.assert_close(avg["model"]["b"], torch.tensor([1.0]))
    assert avg["step"] == 2 and "optimizer" not in avg
    assert avg["averaged_from"] == [os.fspath(p) for p in paths]


def test_checkpointer_writes_what_is_due_rotates_and_names_the_run_to_resume(tmp_path):
    folder = tmp_path / "checkpoints"
    ckpt = Checkpointer(folder, save_interval=2, keep_last=2, save_every_epoch=True, keep_last_epochs=1)
    assert ckpt.resume_state("auto") is None and ckpt.resume_state("none") is None
    built = []

    def state():
        built.append(1)
        return {"model": {}, "step": len(built)}

    for step in range(1, 7):
        ckpt.save(state, step, epoch=step // 3 + 1, epoch_end=step % 3 == 0, best=step == 5)
    ckpt.save(state, 6, epoch=3)  # nothing new at the same update
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "checkpoint_4.pt",
        "checkpoint_6.pt",
        "checkpoint_best.pt",
        "checkpoint_epoch3.pt",
        "checkpoint_last.pt",
    ]
    assert len(built) == 6  # one serialization per update, whatever the number of files
    ckpt.save(state, 6, epoch=3, validated=True)  # a validation after the save: checkpoint_last.pt again
    assert len(built) == 7 and load_checkpoint(folder / "checkpoint_last.pt")["step"] == 7
    path, resumed = ckpt.resume_state("auto")
    assert path == folder / "checkpoint_last.pt" and resumed["step"] == 7
    path, resumed = ckpt.resume_state(str(folder / "checkpoint_4.pt"))
    assert path == folder / "checkpoint_4.pt" and resumed["step"] == 4
    assert ckpt.resume_state("none") is None  # the launch has refused a new run over these (check_new_run)
    silent = Checkpointer(tmp_path / "other", 1, 0, False, 0, enabled=False)
    silent.save(state, 1, 1)
    assert not (tmp_path / "other").exists()


def test_a_new_run_over_checkpoints_is_refused_holding_the_lock_before_anything_is_written(tmp_path):
    run = RunDir.at(tmp_path)
    save_checkpoint({"model": {}, "step": 2}, run.last)
    run.lock.write_text("123 a-host-that-trained-it\n")

    def refuse_a_new_run():
        check_new_run(run.checkpoints, "none")

    with pytest.raises(FileExistsError, match=r"checkpoint_last.pt exists: pass trainer.resume=auto to continue"):
        with run_lock(run.path, check=refuse_a_new_run):
            pass
    assert run.lock.read_text() == "123 a-host-that-trained-it\n"  # the lock file too is as it was
    check_new_run(run.checkpoints, "auto")  # resuming the run is no new run
    check_new_run(tmp_path / "elsewhere", "none")  # a new run where no checkpoints are is fine
    with run_lock(run.path, check=lambda: check_new_run(run.checkpoints, "auto")):
        assert run.lock.read_text().split()[0] == str(os.getpid())


def test_checkpoint_last_is_written_after_every_other_file_of_its_update(tmp_path):
    """A kill between the writes then leaves checkpoint_last.pt behind, never another file."""
    ckpt = Checkpointer(tmp_path, save_interval=1, keep_last=0, save_every_epoch=True, keep_last_epochs=0)
    ckpt.save(lambda: {"model": {"w": torch.zeros(1000)}, "step": 1}, 1, 1, best=True, epoch_end=True)
    written = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert sorted(written) == ["checkpoint_1.pt", "checkpoint_best.pt", "checkpoint_epoch1.pt", "checkpoint_last.pt"]
    assert max(written.values()) == written["checkpoint_last.pt"]


def test_auto_resume_falls_back_to_the_latest_checkpoint_that_verifies(tmp_path, caplog):
    ckpt = Checkpointer(tmp_path, save_interval=2, keep_last=0, save_every_epoch=False, keep_last_epochs=0)
    weights = torch.arange(300, dtype=torch.float32)
    for step in range(1, 7):
        ckpt.save(lambda step=step: {"model": {"w": weights + step}, "step": step}, step, 1, best=step == 3)
    flip_bytes(tmp_path / "checkpoint_last.pt", (weights + 6).numpy().tobytes())
    flip_bytes(tmp_path / "checkpoint_6.pt", (weights + 6).numpy().tobytes())
    with caplog.at_level("WARNING"):
        path, state = ckpt.resume_state("auto")
    assert path.name == "checkpoint_4.pt" and state["step"] == 4
    assert "checkpoint_last.pt is damaged" in caplog.text and "resuming from checkpoint_4.pt (update 4)" in caplog.text
    for name in ("checkpoint_4.pt", "checkpoint_2.pt", "checkpoint_best.pt"):
        (tmp_path / name).write_bytes(b"junk")
    with pytest.raises(
        CheckpointError, match=f"no checkpoint in {tmp_path} can be resumed: .*checkpoint_last.pt is dam"
    ):
        ckpt.resume_state("auto")
