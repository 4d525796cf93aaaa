"""noamt-data: a release fetched from a mirror on 127.0.0.1, verified, resumed, refused when wrong."""

import gzip
import hashlib
import os
import random
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.mirror import Mirror

from noamt.data.fetch import RELEASES, FetchError, check, fetch, select_languages

MULTI30K = RELEASES["multi30k"]
FILES = {
    "raw/train.en.gz": random.Random(0).randbytes(20_000),  # large enough to be cut short
    "raw/train.de.gz": gzip.compress(b"Ein Hund rennt im Park .\n" * 2000, mtime=0),
    "raw/val.fr.gz": gzip.compress(b"Un chien court .\n", mtime=0),
    "tok/val.lc.norm.tok.en": b"a dog runs .\n",
}
MANIFEST = {path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "noamt.cli.data", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_fetch_downloads_verifies_and_skips_what_is_present(tmp_path):
    mirror = Mirror(FILES)
    with mirror.serving() as url:
        first = fetch(MULTI30K, tmp_path, url, files=MANIFEST)
        mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
        again = fetch(MULTI30K, tmp_path, url, files=MANIFEST)
    assert first == {"present": 0, "downloaded": 4} and again == {"present": 4, "downloaded": 0}
    assert (tmp_path / "train.en.gz").read_bytes() == FILES["raw/train.en.gz"]  # raw/ lands where data.dir reads
    assert (tmp_path / "tok" / "val.lc.norm.tok.en").read_bytes() == FILES["tok/val.lc.norm.tok.en"]
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == mtimes  # nothing rewritten
    assert not list(tmp_path.rglob("*.part"))


def test_a_wrong_checksum_is_refused_and_the_file_not_kept(tmp_path):
    damaged = {**FILES, "raw/train.de.gz": FILES["raw/train.de.gz"][:-10] + b"0123456789"}
    with Mirror(damaged).serving() as url, pytest.raises(FetchError) as err:
        fetch(MULTI30K, tmp_path, url, files=MANIFEST)
    expected = MANIFEST["raw/train.de.gz"]
    assert re.fullmatch(
        rf"{url}/raw/train.de.gz: SHA-256 [0-9a-f]{{64}} is not the release's {expected}; "
        "the download was deleted",
        str(err.value),
    )
    assert not (tmp_path / "train.de.gz").exists() and not (tmp_path / "train.de.gz.part").exists()
    assert [s.state for s in check(MULTI30K, tmp_path, MANIFEST)] == ["ok", "missing", "missing", "missing"]


def test_a_download_cut_short_is_kept_and_resumed(tmp_path):
    mirror = Mirror(FILES)
    with mirror.serving() as url:
        mirror.cut_after = 1000
        with pytest.raises(FetchError, match=r"raw/train.en.gz: download interrupted \(IncompleteRead\) after 1000 "):
            fetch(MULTI30K, tmp_path, url, files=MANIFEST)
        assert (tmp_path / "train.en.gz.part").stat().st_size == 1000
        mirror.cut_after = None
        assert fetch(MULTI30K, tmp_path, url, files=MANIFEST) == {"present": 0, "downloaded": 4}
    assert mirror.ranges == ["bytes=1000-"]  # it asked for the rest only
    assert (tmp_path / "train.en.gz").read_bytes() == FILES["raw/train.en.gz"]


@pytest.mark.slow
def test_offline_is_one_line_naming_the_url(tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"NOAMT_MULTI30K_URL": f"http://127.0.0.1:{port}/task1"}
    result = cli("fetch", "multi30k", "--dir", str(tmp_path), env=env)
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"noamt-data: cannot reach http://127.0.0.1:{port}/task1/raw/test_2016_flickr.cs.gz (")
    assert line.endswith("or point --url or $NOAMT_MULTI30K_URL at a mirror")
    assert not any(tmp_path.iterdir())


def test_the_package_states_a_checksum_for_every_file_of_the_multi30k_release():
    files = MULTI30K.files()
    assert len(files) == 44 and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in files.values())
    for split in ("train", "val", "test_2016_flickr", "test_2018_flickr"):
        assert {f"raw/{split}.{lang}.gz" for lang in ("en", "de", "fr", "cs")} <= files.keys()
        assert {f"tok/{split}.lc.norm.tok.{lang}" for lang in ("en", "de", "fr", "cs")} <= files.keys()
    keep = select_languages(["en", "de"])
    assert sorted(p for p in files if keep(p))[:2] == ["raw/test_2016_flickr.de.gz", "raw/test_2016_flickr.en.gz"]
    assert not any(keep(p) for p in files if p.endswith((".fr", ".fr.gz", ".cs", ".cs.gz")))


@pytest.mark.slow
def test_fetch_and_list_on_a_mirror_of_the_real_release(multi30k_dir, tmp_path):
    """The en and de raw files of the local Multi30k copy, served as the release: the checksums the
    package states are those of the real files, and `list` reports them."""
    files = {f"raw/{p.name}": p.read_bytes() for p in sorted(multi30k_dir.glob("*.gz"))}
    if len(files) < 12:
        pytest.skip(f"{multi30k_dir} lacks raw Multi30k files")
    with Mirror(files).serving() as url:
        result = cli("fetch", "multi30k", "--url", url, "--langs", "en,de", "--dir", str(tmp_path))
    assert result.returncode == 1  # the tok/ files are not on this mirror
    assert result.stderr.strip().splitlines()[-1].startswith(f"noamt-data: {url}/tok/")
    assert result.stdout.count("downloaded and verified") == 12
    listed = cli("list", "--dir", str(tmp_path))
    assert listed.returncode == 0
    assert "raw: test_2016_flickr (de en), test_2017_flickr (de en), test_2017_mscoco (de en)" in listed.stdout
    assert f"multi30k in {tmp_path}: 12 of the release's 44 files" in listed.stdout
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == sorted(p.removeprefix("raw/") for p in files)
