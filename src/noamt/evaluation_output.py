"""An evaluation's files written as one unit: the hypotheses, the per-sentence NLLs and
``results.json`` of one ``noamt-evaluate`` replace the previous ones together or not at all.

Writing goes in three steps, each of which a kill may interrupt:

1. every file is written into ``<out_dir>/.staging/``, ``results.json`` last; results.json
   lists the files it belongs to with their SHA-256 (``files``);
2. the commit: ``<out_dir>/results.json`` is removed, then each staged file is renamed into
   ``<out_dir>`` and ``results.json`` last of all;
3. ``.staging/`` is removed.

A kill in step 1 leaves ``.staging/`` without results.json and the previous evaluation whole:
the next evaluation into the folder discards it (:func:`recover`). A kill in step 2 leaves a
staged results.json: the next evaluation (or :func:`recover`) finishes the commit. So the folder
holds one complete evaluation at all times, apart from the moment of the commit, which is always
finished. One process writes into a folder at a time (:func:`output_lock`): a second is refused
in one line naming the holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from noamt.io import write_atomic
from noamt.results import RESULTS_FILE, EvaluationResults, dump_results
from noamt.run_lock import exclusive_lock

STAGING = ".staging"
LOCK = ".evaluate.lock"
RESULTS_NAME = RESULTS_FILE


class OutputInUse(RuntimeError):
    """Another live process writes an evaluation into the same folder."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def output_lock(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``<out_dir>/.evaluate.lock`` for the body (``flock``, dropped however the holder
    dies); :class:`OutputInUse` naming the holder if another process holds it. Stale files of
    an interrupted evaluation are recovered once the lock is held (:func:`recover`)."""
    out = Path(out_dir)
    message = f"out_dir={out} is being written by {{holder}}: wait for it or choose another out_dir"
    with exclusive_lock(out / LOCK, lambda holder: OutputInUse(message.format(holder=holder))) as path:
        recover(out)
        yield path


def write_evaluation(out_dir: str | os.PathLike, files: Mapping[str, bytes], results: EvaluationResults) -> Path:
    """Replace the evaluation in ``out_dir`` by ``files`` (name -> contents) and ``results``
    (which gains ``files``: each name's SHA-256) as one unit (the module's three steps); returns
    the path of results.json. A failed write (a full disk, a file-size limit) is an OSError
    naming the file, and leaves the previous evaluation as it was."""
    out = Path(out_dir)
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    results = {**results, "files": {name: sha256_hex(data) for name, data in files.items()}}
    for name, data in [*files.items(), (RESULTS_NAME, dump_results(results).encode("utf-8"))]:
        target = staging / name
        try:
            write_atomic(target, data)
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            raise OSError(err.errno, f"cannot write {out / name}: {err.strerror or err}") from err
    _commit(out)
    return out / RESULTS_NAME


def recover(out_dir: str | os.PathLike) -> None:
    """Finish or discard an evaluation a kill interrupted in ``out_dir``: a staged results.json
    means the commit had begun, so it is finished; otherwise the staging folder is removed."""
    out = Path(out_dir)
    staging = out / STAGING
    if not staging.is_dir():
        return
    if (staging / RESULTS_NAME).is_file():
        _commit(out)
    else:
        shutil.rmtree(staging, ignore_errors=True)


def _commit(out: Path) -> None:
    staging = out / STAGING
    (out / RESULTS_NAME).unlink(missing_ok=True)
    for path in sorted(staging.iterdir()):
        if path.name != RESULTS_NAME and not path.name.startswith("."):
            os.replace(path, out / path.name)
    os.replace(staging / RESULTS_NAME, out / RESULTS_NAME)
    shutil.rmtree(staging, ignore_errors=True)
