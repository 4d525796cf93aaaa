"""Files written whole or not at all: every file noamt writes in place goes through :func:`write_atomic`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"  # the temporaries are ``.<name>.<random>.tmp`` in the target's folder


def write_atomic(path: str | os.PathLike, data: bytes | memoryview | str) -> Path:
    """Replace ``path`` by ``data`` (text is written as UTF-8) so that a crash or kill at any
    moment leaves either the old file or the new one, never a mix.

    The data goes to a unique temporary file in the same folder, which is flushed to disk
    (fsync), renamed over ``path`` (``os.replace``, atomic within a file system), and the
    folder is flushed so that the rename itself survives a power cut. When anything fails the
    temporary is removed, ``path`` is left as it was, and the error propagates.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the system lets folders be flushed."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
