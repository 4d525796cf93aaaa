"""One training process per run directory.

A trainer holds an exclusive ``flock`` on ``<run_dir>/train.lock`` (``RunDir.lock``) for as long
as it runs, taken before it writes anything else there; the file records the holder's pid and
host. The kernel drops the lock when the holder exits, however it dies, so a lock file left by a
dead process does not block anyone. (``flock`` is POSIX; on a system without ``fcntl`` runs are not locked.)
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from noamt.run_dir import RunDir

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class RunInUse(RuntimeError):
    """Another live process trains the run."""


def _holder_text(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 200).decode("utf-8", "replace").split()
    return f"process {text[0]} on {text[1]}" if len(text) >= 2 else "another process"


def _try_lock(fd: int) -> bool:
    if fcntl is None:  # no flock here: runs are not locked
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def exclusive_lock(
    path: Path, in_use: Callable[[str], Exception], check: Callable[[], None] | None = None, folder: str = "the folder"
) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``path`` (created with its folder) for the body; when
    another live process holds it, raise ``in_use(holder)`` (holder: e.g. "process 123 on host").
    A folder that cannot be written is a one-line ValueError calling it ``folder``. ``check`` runs once the lock is
    held, before the file records this process."""
    if fcntl is None:
        if check is not None:
            check()
        yield path
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ValueError(f"cannot write to {folder} {path.parent}: {err}") from err
    try:
        if not _try_lock(fd):
            raise in_use(_holder_text(fd))
        if check is not None:
            check()
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike, check: Callable[[], None] | None = None) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the body (:func:`exclusive_lock`); :class:`RunInUse` (naming
    the holder) if it is held, a one-line ValueError if the directory cannot be written.
    ``check`` runs once the lock is held, before the lock file records this process: a launch
    it refuses (by raising) leaves every file of the run as it was."""
    path = RunDir.at(run_dir).lock

    def in_use(holder: str) -> RunInUse:
        return RunInUse(f"{path.parent} is being trained by {holder} (it holds {path}): wait for it or stop it")

    with exclusive_lock(path, in_use, check, folder="the run directory") as held:
        yield held


def run_holder(run_dir: str | os.PathLike) -> str | None:
    """Who holds ``run_dir``'s lock now (e.g. "process 123 on host"), or None when no live process does."""
    path = RunDir.at(run_dir).lock
    if fcntl is None or not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        if _try_lock(fd):
            return None  # closing the descriptor below releases it again
        return _holder_text(fd)
    finally:
        os.close(fd)
