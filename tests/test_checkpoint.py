import os

import pytest
import torch

from noamt.checkpoint import (
    Checkpointer,
    CheckpointError,
    average_checkpoints,
    load_checkpoint,
    numbered_checkpoints,
    prune_checkpoints,
    save_checkpoint,
)


def test_save_and_load_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(6.0).view(2, 3)}, "step": 7}
    save_checkpoint(state, tmp_path / "ck.pt")
    loaded = load_checkpoint(tmp_path / "ck.pt")
    assert loaded["step"] == 7
    torch.testing.assert_close(loaded["model"]["w"], state["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind


def test_failed_save_keeps_the_previous_file(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint({"model": {}, "step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"model": {}, "step": 2, "bad": Unpicklable()}, path)
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


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
    assert ckpt.resume_path("auto") is None and ckpt.resume_path("none") is None
    built = []

    def state():
        built.append(1)
        return {"step": len(built)}

    for step in range(1, 7):
        ckpt.save(state, step, epoch=step // 3 + 1, epoch_end=step % 3 == 0, best=step == 5)
    ckpt.save(state, 6, epoch=3)  # nothing new at the same update
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["checkpoint_4.pt", "checkpoint_6.pt", "checkpoint_best.pt", "checkpoint_epoch3.pt",
                     "checkpoint_last.pt"]  # fmt: skip
    assert len(built) == 6  # one serialization per update, whatever the number of files
    assert ckpt.resume_path("auto") == folder / "checkpoint_last.pt"
    assert ckpt.resume_path(str(folder / "checkpoint_4.pt")) == folder / "checkpoint_4.pt"
    with pytest.raises(FileExistsError, match="pass trainer.resume=auto to continue that run"):
        ckpt.resume_path("none")  # a folder with checkpoints is not overwritten
    silent = Checkpointer(tmp_path / "other", 1, 0, False, 0, enabled=False)
    silent.save(state, 1, 1)
    assert not (tmp_path / "other").exists()
