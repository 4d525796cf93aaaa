"""Download a corpus release into the data folder, verified file by file.

A :class:`Release` names its files by their path under a base URL and states the SHA-256 of
each (a ``sha256sum``-format manifest shipped with the package). :func:`fetch` downloads every
file that is missing or wrong into ``<name>.part`` beside its target, resuming a ``.part`` left
by an interrupted download with an HTTP range request, checks the SHA-256 and only then renames
it into place, so the folder never holds a file that is not the release's. A wrong checksum is
refused and the download deleted. The base URL is a setting, so any mirror of the release layout
works.

Every download is bounded. A file may have at most the release's ``max_bytes`` (Multi30k: 4 MiB,
its largest file having 2.2 MB): a larger announced size is refused before anything is written, a
body that runs past it is cut and deleted. A connection that sends no byte for ``stall_s``
(default 60 s, $NOAMT_FETCH_STALL_S) gives up, and so does a file not received within its
deadline, ``deadline_s`` ($NOAMT_FETCH_DEADLINE_S), by default ``DEADLINE_BASE_S`` (60 s) plus
its size at ``MIN_RATE`` (16 KiB/s); both keep what came in the ``.part`` for the next run to
resume. Each ends in a one-line :class:`FetchError` naming the URL. One fetch at a time writes a
folder: it holds an exclusive lock on ``<folder>/.noamt-data.lock`` (taken once the first download
is under way, so a fetch that finds everything in place, or cannot connect, leaves the folder as
it was); another fetch into the same folder meanwhile stops in one line naming the holder.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import math
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import ModuleType

from noamt.data.corpus import DATA_DIR_ENV, fetched_data_dir

CHUNK = 1 << 16
STALL_S = 60.0  # no byte for this long: the download gives up
DEADLINE_BASE_S = 60.0  # a file's deadline: this much, plus its size at MIN_RATE
MIN_RATE = 16 << 10  # bytes per second
STALL_ENV = "NOAMT_FETCH_STALL_S"
DEADLINE_ENV = "NOAMT_FETCH_DEADLINE_S"
LOCK_NAME = ".noamt-data.lock"  # in the data folder, held while a fetch writes there

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: fetches are not locked
    fcntl = None


class FetchError(RuntimeError):
    """A download or a check that failed; the message is one line naming the URL or file."""


@dataclass(frozen=True)
class Release:
    """A corpus release: where it is, what it holds, and where each file goes locally."""

    name: str
    url: str  # the folder under which the manifest's paths are found
    url_env: str  # environment variable that replaces ``url`` (a mirror)
    manifest: str  # package resource (noamt.data) in sha256sum format: "<sha256>  <path>"
    local_path: Callable[[str], str]  # release path -> path inside the data folder
    max_bytes: int  # no file of the release is larger: a download past it is refused

    def files(self) -> dict[str, str]:
        """Release path -> SHA-256, in manifest order."""
        text = resources.files("noamt.data").joinpath(self.manifest).read_text(encoding="utf-8")
        entries = (line.split(maxsplit=1) for line in text.splitlines() if line.strip())
        return {path: digest for digest, path in entries}


def _multi30k_local_path(path: str) -> str:
    """raw/train.en.gz -> train.en.gz (the layout data.dir reads); tok/... stays under tok/."""
    return path.removeprefix("raw/")


RELEASES = {
    "multi30k": Release(
        name="multi30k",
        # github.com/multi30k/dataset, data/task1, at the commit whose files the manifest states
        url="https://raw.githubusercontent.com/multi30k/dataset/a3d2e0d26b56f3846f66a952536ffed4e401d05a/data/task1",
        url_env="NOAMT_MULTI30K_URL",
        manifest="multi30k_task1.sha256",
        local_path=_multi30k_local_path,
        max_bytes=4 << 20,  # its largest file, tok/train.lc.norm.tok.fr, has 2,235,588 bytes
    ),
}


def default_data_dir(name: str) -> Path:
    """$NOAMT_DATA_DIR, else the fetched folder of ``name`` (``noamt.data.corpus.fetched_data_dir``)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return fetched_data_dir(name)


def release_url(release: Release, url: str | None = None) -> str:
    """``url``, else $<release.url_env>, else the release's own URL (no trailing slash)."""
    return (url or os.environ.get(release.url_env) or release.url).rstrip("/")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileStatus:
    path: str  # in the release
    local: Path
    state: str  # "ok", "missing" or "damaged" (present, wrong SHA-256)


def check(release: Release, folder: Path, files: dict[str, str] | None = None) -> list[FileStatus]:
    """Each release file's state in ``folder`` (a file larger than the release's ``max_bytes`` is
    damaged without being read)."""
    statuses = []
    for path, expected in (files or release.files()).items():
        local = folder / release.local_path(path)
        if not local.is_file():
            state = "missing"
        elif local.stat().st_size > release.max_bytes:
            state = "damaged"
        else:
            state = "ok" if sha256_of(local) == expected else "damaged"
        statuses.append(FileStatus(path, local, state))
    return statuses


@dataclass(frozen=True)
class Limits:
    """How long a download may take: ``stall_s`` without a byte, ``deadline_s`` for a whole file
    (None: ``DEADLINE_BASE_S`` plus the file's size, announced or else ``max_bytes``, at ``MIN_RATE``)."""

    max_bytes: int
    stall_s: float = STALL_S
    deadline_s: float | None = None

    def deadline_for(self, size: int) -> float:
        return self.deadline_s if self.deadline_s is not None else DEADLINE_BASE_S + size / MIN_RATE


def _seconds(value: float | None, env: str, default: float | None) -> float | None:
    """``value``, else the number in $``env``, else ``default``; a value that is not a finite number
    of seconds > 0 is a one-line FetchError naming where it came from."""
    where, text = "the argument", repr(value)
    if value is None and os.environ.get(env):
        where, text = f"${env}", os.environ[env]
        try:
            value = float(text)
        except ValueError:
            value = math.nan
    if value is None:
        return default
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise FetchError(f"{where}={text}: must be a finite number of seconds > 0")
    return float(value)


def fetch(
    release: Release,
    folder: Path,
    url: str | None = None,
    select: Callable[[str], bool] = lambda path: True,
    files: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda line: None,
    stall_s: float | None = None,
    deadline_s: float | None = None,
) -> dict[str, int]:
    """Download the files of ``release`` (those ``select`` keeps) that ``folder`` lacks or holds
    damaged; returns counts of "present" (already right) and "downloaded" files. ``stall_s`` and
    ``deadline_s`` (per file) default to $NOAMT_FETCH_STALL_S and $NOAMT_FETCH_DEADLINE_S, else
    ``STALL_S`` and a deadline scaled by the file's size (:class:`Limits`)."""
    base = release_url(release, url)
    limits = Limits(
        release.max_bytes,
        _seconds(stall_s, STALL_ENV, STALL_S) or STALL_S,
        _seconds(deadline_s, DEADLINE_ENV, None),
    )
    wanted = {path: sha for path, sha in (files or release.files()).items() if select(path)}
    counts = {"present": 0, "downloaded": 0}
    with contextlib.ExitStack() as held:
        locked = False

        def hold() -> None:
            """Take the folder's lock, once: before the first byte is written there."""
            nonlocal locked
            if not locked:
                held.enter_context(_folder_lock(folder))
                locked = True

        for status in check(release, folder, wanted):
            if status.state == "ok":
                counts["present"] += 1
                continue
            _download(f"{base}/{status.path}", status.local, wanted[status.path], release, limits, hold)
            counts["downloaded"] += 1
            progress(f"{status.path}: downloaded and verified -> {status.local}")
    return counts


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``<folder>/.noamt-data.lock`` (created with the folder) for the
    body; the file records the holder's pid and host. Another live holder, or a folder that cannot be
    written, is a one-line FetchError. The kernel drops the lock however its holder ends. (Without
    ``fcntl``, as on Windows, fetches are not locked.)"""
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise FetchError(f"cannot write to the data folder {folder}: {err.strerror or err}") from err
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode("utf-8", "replace").split()
                who = f"process {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
                raise FetchError(
                    f"{folder} is being written by another noamt-data fetch ({who}; it holds {path}): "
                    "let it finish, then run the command again"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield path
    finally:
        os.close(fd)  # releases the lock


def _size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _download(
    url: str, target: Path, expected: str, release: Release, limits: Limits, hold: Callable[[], None]
) -> None:
    """``url`` into ``target`` via ``target.part`` (resumed if present), verified, then renamed;
    ``hold()`` takes the folder's lock before anything is written."""
    part = target.with_name(target.name + ".part")
    offset = _size_of(part)
    if offset > limits.max_bytes:  # not from this release: start again
        offset = 0
    started = time.monotonic()
    response = _open(url, offset, target, release, limits)
    with response if response is not None else contextlib.nullcontext():
        hold()
        if _size_of(part) != offset and offset:  # another fetch finished it or went on meanwhile
            raise FetchError(f"{part} changed while {url} was asked for: run the command again")
        if response is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise FetchError(f"cannot write to {target.parent}: {err.strerror or err}") from err
            _receive(response, part, offset, url, release, limits, started)
    got = sha256_of(part)
    if got != expected:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: SHA-256 {got} is not the release's {expected}; the download was deleted")
    os.replace(part, target)


def _open(url: str, offset: int, target: Path, release: Release, limits: Limits):
    """The response to a GET of ``url`` (from byte ``offset``); None when the range starts at the
    end of a ``.part`` (HTTP 416), which is then whole."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        return urllib.request.urlopen(request, timeout=limits.stall_s)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return None
        raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise FetchError(
            f"cannot reach {url} ({getattr(err, 'reason', err)}): place the release's files in {target.parent} by "
            f"hand (`noamt-data list` names them), or point --url or ${release.url_env} at a mirror"
        ) from err
    except ValueError as err:  # not a URL urllib can open
        raise FetchError(f"{url}: {err} (--url or ${release.url_env} names the release's folder)") from err


def _receive(response, part: Path, offset: int, url: str, release: Release, limits: Limits, started: float) -> None:
    """Write the response body to ``part`` (appending to the ``offset`` bytes of a partial download
    when the server sent the rest), within ``limits``: more than ``max_bytes`` in all is deleted;
    a stall or the deadline keeps what came for the next run to resume."""
    append = offset > 0 and response.status == 206
    have = offset if append else 0
    announced = response.length  # Content-Length, None when the server does not say
    if announced is not None and have + announced > limits.max_bytes:
        raise FetchError(
            f"{url}: {have + announced} bytes announced, more than the {limits.max_bytes} any file of "
            f"{release.name} has; nothing was written"
        )
    deadline = limits.deadline_for(announced if announced is not None else limits.max_bytes - have)
    sock = _socket_of(response)
    try:
        f = part.open("ab" if append else "wb")
    except OSError as err:
        raise FetchError(f"cannot write {part}: {err.strerror or err}") from err
    resume = f"kept in {part}: run the same command again to resume"
    with f:
        try:
            while True:
                if sock is not None:  # wait no longer than the stall timeout and the deadline allow
                    sock.settimeout(max(0.001, min(limits.stall_s, deadline - (time.monotonic() - started))))
                block = response.read1(CHUNK)
                if not block:
                    break
                have += len(block)
                if have > limits.max_bytes:
                    f.close()
                    part.unlink(missing_ok=True)
                    raise FetchError(
                        f"{url}: more than {limits.max_bytes} bytes, more than any file of {release.name} has; "
                        "the download was deleted"
                    )
                f.write(block)
                if time.monotonic() - started > deadline:
                    f.flush()
                    raise FetchError(f"{url}: not received within {deadline:g} s ({f.tell()} bytes came), {resume}")
            if response.length:  # the connection closed before Content-Length bytes came
                raise http.client.IncompleteRead(b"", response.length)
        except TimeoutError as err:
            f.flush()
            if time.monotonic() - started >= deadline:
                raise FetchError(
                    f"{url}: not received within {deadline:g} s ({f.tell()} bytes came), {resume}"
                ) from err
            raise FetchError(f"{url}: no data for {limits.stall_s:g} s after {f.tell()} bytes, {resume}") from err
        except (http.client.HTTPException, ConnectionError) as err:
            f.flush()
            raise FetchError(
                f"{url}: download interrupted ({type(err).__name__}) after {f.tell()} bytes, {resume}"
            ) from err
        except OSError as err:
            raise FetchError(f"cannot write {part}: {err.strerror or err}") from err
        f.flush()
        os.fsync(f.fileno())


def _socket_of(response) -> socket.socket | None:
    """The socket an http.client response reads from, where it can be found (to set its timeout)."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


def select_languages(languages: Iterable[str] | None) -> Callable[[str], bool]:
    """Keep release paths whose language suffix (``.en``, ``.en.gz``) is one of ``languages``."""
    if not languages:
        return lambda path: True
    wanted = set(languages)
    return lambda path: path.removesuffix(".gz").rsplit(".", 1)[-1] in wanted
