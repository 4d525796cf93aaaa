"""Verified folders: the SHA-256 of every file of a folder that ``noamt-export`` wrote, kept beside them.

Each folder that ``noamt-export`` writes (``format=release``, ``ctranslate2``, ``transformers``)
ends with ``noamt-manifest.json``, written last and atomically (:func:`noamt.io.write_atomic`)::

    {"format": "noamt-manifest", "files": {"config.json": "<sha256, 64 hex digits>", ...}}

listing every other file of the folder (names relative to it, ``/``-separated) with the SHA-256 of
its bytes. :func:`verify_folder` checks a folder against it before noamt loads anything from it;
each of these is a one-line :class:`~noamt.checkpoint.CheckpointError` naming the file:

- a listed file that is missing, or whose bytes hash to another SHA-256 (changed or truncated);
- a file in the folder that the manifest does not list (added after the folder was written: a
  loader of another package may read it, e.g. a ``pytorch_model.bin``);
- a manifest that is not such JSON, or that names a file outside the folder.

A folder without a manifest (written by another tool, or by a noamt before manifests) still loads,
with a one-line warning that its files are unverified. Files are hashed as a stream, in 1 MiB
chunks; those the caller needs in memory anyway (``keep``) are read once and hashed from memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from noamt.checkpoint import CheckpointError
from noamt.io import write_atomic

log = logging.getLogger(__name__)

MANIFEST_FILE = "noamt-manifest.json"
FORMAT = "noamt-manifest"
CHUNK = 1 << 20  # bytes hashed at a time
_DIGEST = re.compile(r"[0-9a-f]{64}")


def sha256_bytes(data: bytes | memoryview) -> str:
    """The SHA-256 of ``data``, as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """The SHA-256 of the file at ``path``, read in chunks of :data:`CHUNK` bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_files(folder: Path) -> list[str]:
    """The names (relative, ``/``-separated, sorted) of the files under ``folder``, its manifest excepted."""
    names = (path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())
    return sorted(name for name in names if name != MANIFEST_FILE)


def write_manifest(folder: Path, known: Mapping[str, str] | None = None) -> Path:
    """Write ``folder``'s manifest: every file under it with its SHA-256, those in ``known``
    ({name: digest}, from bytes the writer held) taken as given, the others hashed from disk.
    Call it once every other file is written; it returns the manifest's path."""
    known = known or {}
    files = {name: known.get(name) or sha256_file(folder / name) for name in folder_files(folder)}
    text = json.dumps({"format": FORMAT, "files": files}, indent=2) + "\n"
    return write_atomic(folder / MANIFEST_FILE, text)


@dataclass
class VerifiedFiles:
    """What :func:`verify_folder` found: the digest of every listed file and the bytes of those kept."""

    sha256: dict[str, str]
    data: dict[str, bytes] = field(default_factory=dict)


def _listed(manifest: Path, value: object) -> dict[str, str]:
    """The manifest's ``files`` mapping, checked: relative names inside the folder, SHA-256 values."""
    if not isinstance(value, dict):
        raise CheckpointError(f"{manifest}: files={_shown(value)}: must be a mapping of file names to SHA-256")
    for name, digest in value.items():
        parts = PurePosixPath(name).parts
        if not parts or name.startswith("/") or ".." in parts or "\\" in name or name == MANIFEST_FILE:
            raise CheckpointError(f"{manifest}: files.{name}: must name a file inside the folder")
        if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)):
            raise CheckpointError(f"{manifest}: files.{name}={_shown(digest)}: must be a SHA-256 (64 hex digits)")
    return value


def read_manifest(folder: Path) -> dict[str, str] | None:
    """{name: SHA-256} from ``folder``'s manifest; None when it has none. An unreadable manifest,
    or one that is not ``{"format": "noamt-manifest", "files": {...}}``, is a one-line CheckpointError."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or sorted(manifest) != ["files", "format"]:
        raise CheckpointError(f'{path}: must be {{"format": "{FORMAT}", "files": {{name: sha256}}}}')
    return _listed(path, manifest["files"])


def _check_file(folder: Path, name: str, digest: str, keep: bool) -> bytes | None:
    """Hash ``folder / name`` (from memory when ``keep``: its bytes are returned) against ``digest``."""
    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (listed in {MANIFEST_FILE})")
    try:
        data = path.read_bytes() if keep else None
        actual = sha256_bytes(data) if data is not None else sha256_file(path)
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from err
    if actual != digest:
        raise CheckpointError(f"{path}: changed since it was written (its SHA-256 is not the one in {MANIFEST_FILE})")
    return data


def verify_folder(folder: str | os.PathLike, keep: Iterable[str] = ()) -> VerifiedFiles | None:
    """Check ``folder`` against its manifest (module docstring) and return the digests, with the
    bytes of the listed files named in ``keep``; without a manifest, log a one-line warning and
    return None. Every refusal is a one-line CheckpointError naming the file."""
    folder = Path(folder)
    listed = read_manifest(folder)
    if listed is None:
        log.warning("%s has no %s: its files are unverified (not written by this noamt-export)", folder, MANIFEST_FILE)
        return None
    unlisted = [name for name in folder_files(folder) if name not in listed]
    if unlisted:
        raise CheckpointError(f"{folder / unlisted[0]}: not listed in {folder / MANIFEST_FILE} "
                              "(added after the folder was written)")  # fmt: skip
    kept = set(keep)
    verified = VerifiedFiles(dict(listed))
    for name, digest in sorted(listed.items()):
        data = _check_file(folder, name, digest, name in kept)
        if data is not None:
            verified.data[name] = data
    return verified


def _shown(value: object, width: int = 72) -> str:
    """``repr(value)``, cut to ``width`` characters."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
