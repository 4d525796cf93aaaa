"""Download a corpus release into the data folder, verified file by file.

A :class:`Release` names its files by their path under a base URL and states the SHA-256 of
each (a ``sha256sum``-format manifest shipped with the package). :func:`fetch` downloads every
file that is missing or wrong into ``<name>.part`` beside its target, resuming a ``.part`` left
by an interrupted download with an HTTP range request, checks the SHA-256 and only then renames
it into place, so the folder never holds a file that is not the release's. A wrong checksum is
refused and the download deleted. The base URL is a setting, so any mirror of the release layout
works.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from noamt.data.corpus import DATA_DIR_ENV, fetched_data_dir

CHUNK = 1 << 16
TIMEOUT_S = 30


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
    """Each release file's state in ``folder``."""
    statuses = []
    for path, expected in (files or release.files()).items():
        local = folder / release.local_path(path)
        state = "missing" if not local.is_file() else ("ok" if sha256_of(local) == expected else "damaged")
        statuses.append(FileStatus(path, local, state))
    return statuses


def fetch(
    release: Release,
    folder: Path,
    url: str | None = None,
    select: Callable[[str], bool] = lambda path: True,
    files: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, int]:
    """Download the files of ``release`` (those ``select`` keeps) that ``folder`` lacks or holds
    damaged; returns counts of "present" (already right) and "downloaded" files."""
    base = release_url(release, url)
    wanted = {path: sha for path, sha in (files or release.files()).items() if select(path)}
    counts = {"present": 0, "downloaded": 0}
    for status in check(release, folder, wanted):
        if status.state == "ok":
            counts["present"] += 1
            continue
        _download(f"{base}/{status.path}", status.local, wanted[status.path], release)
        counts["downloaded"] += 1
        progress(f"{status.path}: downloaded and verified -> {status.local}")
    return counts


def _download(url: str, target: Path, expected: str, release: Release) -> None:
    """``url`` into ``target`` via ``target.part`` (resumed if present), verified, then renamed."""
    part = target.with_name(target.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if not (err.code == 416 and offset):  # 416 with a .part: the range starts at its end, it is whole
            raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise FetchError(
            f"cannot reach {url} ({getattr(err, 'reason', err)}): place the release's files in {target.parent} by "
            f"hand (`noamt-data list` names them), or point --url or ${release.url_env} at a mirror"
        ) from err
    else:
        with response:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise FetchError(f"cannot write to {target.parent}: {err.strerror or err}") from err
            _receive(response, part, append=offset > 0 and response.status == 206, url=url)
    got = sha256_of(part)
    if got != expected:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: SHA-256 {got} is not the release's {expected}; the download was deleted")
    os.replace(part, target)


def _receive(response, part: Path, append: bool, url: str) -> None:
    """Write the response body to ``part`` (appending to a partial download when ``append``)."""
    try:
        f = part.open("ab" if append else "wb")
    except OSError as err:
        raise FetchError(f"cannot write {part}: {err.strerror or err}") from err
    with f:
        try:
            for block in iter(lambda: response.read(CHUNK), b""):
                f.write(block)
            if response.length:  # the connection closed before Content-Length bytes came
                raise http.client.IncompleteRead(b"", response.length)
        except (http.client.HTTPException, ConnectionError, TimeoutError) as err:
            f.flush()
            raise FetchError(
                f"{url}: download interrupted ({type(err).__name__}) after {f.tell()} bytes, kept in {part}: "
                "run the same command again to resume"
            ) from err
        except OSError as err:
            raise FetchError(f"cannot write {part}: {err.strerror or err}") from err
        f.flush()
        os.fsync(f.fileno())


def select_languages(languages: Iterable[str] | None) -> Callable[[str], bool]:
    """Keep release paths whose language suffix (``.en``, ``.en.gz``) is one of ``languages``."""
    if not languages:
        return lambda path: True
    wanted = set(languages)
    return lambda path: path.removesuffix(".gz").rsplit(".", 1)[-1] in wanted
