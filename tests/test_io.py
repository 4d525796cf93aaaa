"""write_atomic: the new contents or the old ones, never a mix, and no temporary left behind."""

import os

import pytest

import noamt.io
from noamt.io import write_atomic


def test_write_atomic_replaces_the_file_and_leaves_nothing_else(tmp_path):
    path = tmp_path / "deep" / "results.json"
    assert write_atomic(path, "first\n") == path
    write_atomic(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_write_atomic_keeps_the_old_file_when_the_writer_raises(tmp_path, monkeypatch, error):
    path = tmp_path / "tokenizer.json"
    path.write_text("old", encoding="utf-8")

    def failing_fsync(fd):
        raise error

    monkeypatch.setattr(noamt.io.os, "fsync", failing_fsync)
    with pytest.raises(type(error)):
        write_atomic(path, "new " * 1000)
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == "old"
    assert os.listdir(tmp_path) == ["tokenizer.json"]
