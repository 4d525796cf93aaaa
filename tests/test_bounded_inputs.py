"""Inputs read with bounds: corpus files (a line, a file, a gzip bomb), downloads (an endless body,
a drip, a second fetch into the folder, Ctrl-C), cached tokenizers (planted, damaged, cut short),
YAML (an alias bomb, a ``!!python`` tag) and command lines (``--experimental-rerun``, values out
of their domain). Each case asserts the exception or exit status, the one line, and that nothing
else changed. In-process where it can be; the few that run a command are marked slow."""

import gzip
import hashlib
import importlib
import json
import logging
import math
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from helpers.checkpoints import Payload
from helpers.mirror import Mirror

from noamt import yaml_files
from noamt.cli.config import mistyped_value, read_yaml_config, refuse_unsafe_options
from noamt.data import DataConfig, DataError, TokenizerConfig, load_corpus, load_or_train_tokenizer, read_lines
from noamt.data import corpus as corpus_module
from noamt.data.fetch import LOCK_NAME, RELEASES, FetchError, fetch
from noamt.data.tokenizer import train_tokenizer
from noamt.yaml_files import YamlRefused
from noamt_study.collect import CompareError, read_run_config

MULTI30K = RELEASES["multi30k"]
RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(text: str) -> str:
    assert "\n" not in text.strip() and "Traceback" not in text, text
    return text


# ----------------------------------------------------------------------------- corpus files
@pytest.mark.parametrize("name", ["train.en", "train.en.gz"])
def test_a_line_longer_than_any_sentence_is_refused_naming_file_and_line(tmp_path, name):
    text = b"a short line\n" * 3 + b"x" * (corpus_module.MAX_LINE_BYTES + 1) + b"\nafter\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(text, mtime=0) if name.endswith(".gz") else text)
    with pytest.raises(DataError) as err:
        read_lines(path)
    assert one_line(str(err.value)) == (
        f"{path}:4: a line of more than {corpus_module.MAX_LINE_BYTES} bytes (no sentence is so long); refused"
    )


def test_a_line_as_long_as_the_bound_is_read(tmp_path):
    long = b"y" * corpus_module.MAX_LINE_BYTES
    path = tmp_path / "train.en"
    path.write_bytes(b"z" * 1000 + b"\n" + long + b"\n" + long)  # the long lines cross block boundaries
    assert [len(line) for line in read_lines(path)] == [1000, len(long), len(long)]


def test_a_file_larger_than_the_bound_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "train.en"
    with path.open("wb") as f:  # sparse: the size without the bytes
        f.truncate(corpus_module.MAX_FILE_BYTES + 1)
    started = time.monotonic()
    with pytest.raises(DataError) as err:
        read_lines(path)
    assert time.monotonic() - started < 1
    assert one_line(str(err.value)) == (
        f"{path}: {corpus_module.MAX_FILE_BYTES + 1} bytes, more than the {corpus_module.MAX_FILE_BYTES} a text "
        "file may have; refused"
    )


def gzip_bomb(path: Path, blocks: int = 3000) -> int:
    """A .gz of about 1 KB per block that inflates to 1 MiB of "a\\n" per block (3 MB -> 3 GiB);
    returns the inflated size. Built from one compressed block repeated, so it is made at once (its
    trailer is not the right one: a reader that gets there has inflated it all)."""
    block = b"a\n" * (1 << 19)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    again = deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)
    path.write_bytes(head + again * (blocks - 1) + deflate.flush())
    return blocks * len(block)


def test_a_gzip_bomb_is_refused_while_it_inflates(tmp_path):
    path = tmp_path / "train.en.gz"
    inflated = gzip_bomb(path)
    size = path.stat().st_size
    bound = max(corpus_module.GZIP_FLOOR_BYTES, corpus_module.MAX_GZIP_RATIO * size)
    assert size < 4_000_000 and inflated > 3_000_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            read_lines(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert one_line(str(err.value)) == f"{path}: its {size} bytes inflate to more than {bound}; refused"
    assert peak < 2 * bound  # it held at most the bound, not the 3 GiB


def test_load_corpus_stops_at_a_gzip_bomb_in_one_line(tmp_path):
    for split in ("train", "val"):
        for lang in ("en", "de"):
            (tmp_path / f"{split}.{lang}").write_text("a b\n")
    (tmp_path / "train.de").unlink()
    gzip_bomb(tmp_path / "train.de.gz", blocks=200)  # 200 KB: the 64 MiB floor stops it
    with pytest.raises(DataError, match=r"train\.de\.gz: its \d+ bytes inflate to more than 67108864; refused$"):
        load_corpus(DataConfig(dir=str(tmp_path), test_splits=[]))


# ----------------------------------------------------------------------------- downloads
FILES = {"raw/train.en.gz": random.Random(0).randbytes(5000), "raw/val.en.gz": b"v" * 3000}
MANIFEST = {path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()}


def test_an_endless_body_is_cut_at_the_release_s_largest_size_and_deleted(tmp_path):
    mirror = Mirror(FILES)
    mirror.endless = True
    with mirror.serving() as url, pytest.raises(FetchError) as err:
        fetch(MULTI30K, tmp_path, url, files=MANIFEST)
    assert one_line(str(err.value)) == (
        f"{url}/raw/train.en.gz: more than {MULTI30K.max_bytes} bytes, more than any file of multi30k has; "
        "the download was deleted"
    )
    assert sorted(snapshot(tmp_path)) == [LOCK_NAME]


def test_an_announced_size_past_the_bound_is_refused_before_anything_is_written(tmp_path):
    mirror = Mirror(FILES)
    mirror.announce = MULTI30K.max_bytes + 1
    with mirror.serving() as url, pytest.raises(FetchError) as err:
        fetch(MULTI30K, tmp_path, url, files=MANIFEST)
    assert one_line(str(err.value)) == (
        f"{url}/raw/train.en.gz: {MULTI30K.max_bytes + 1} bytes announced, more than the {MULTI30K.max_bytes} "
        "any file of multi30k has; nothing was written"
    )
    assert sorted(snapshot(tmp_path)) == [LOCK_NAME]


def test_a_byte_every_3_s_is_a_stall_and_what_came_is_kept(tmp_path):
    mirror = Mirror(FILES)
    mirror.drip_s = 3.0
    started = time.monotonic()
    with mirror.serving() as url, pytest.raises(FetchError) as err:
        fetch(MULTI30K, tmp_path, url, files=MANIFEST, stall_s=0.5)
    assert time.monotonic() - started < 2.5
    part = tmp_path / "train.en.gz.part"
    assert one_line(str(err.value)) == (
        f"{url}/raw/train.en.gz: no data for 0.5 s after 1 bytes, kept in {part}: run the same command again to resume"
    )
    assert part.read_bytes() == FILES["raw/train.en.gz"][:1]
    assert not (tmp_path / "train.en.gz").exists()


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_a_slow_drip_ends_at_the_deadline(tmp_path, monkeypatch, how):
    mirror = Mirror(FILES)
    mirror.drip_s = 0.05
    deadline = {"deadline_s": 0.6} if how == "argument" else {}
    if how == "environment":
        monkeypatch.setenv("NOAMT_FETCH_DEADLINE_S", "0.6")
    started = time.monotonic()
    with mirror.serving() as url, pytest.raises(FetchError) as err:
        fetch(MULTI30K, tmp_path, url, files=MANIFEST, stall_s=5, **deadline)
    assert time.monotonic() - started < 1.5
    part = tmp_path / "train.en.gz.part"
    assert one_line(str(err.value)).startswith(f"{url}/raw/train.en.gz: not received within 0.6 s (")
    assert str(err.value).endswith(f" bytes came), kept in {part}: run the same command again to resume")
    assert 0 < part.stat().st_size < len(FILES["raw/train.en.gz"])


@pytest.mark.parametrize("value", ["abc", "nan", "-1", "inf", "0"])
def test_a_stall_timeout_that_is_not_a_positive_number_is_one_line(tmp_path, monkeypatch, value):
    monkeypatch.setenv("NOAMT_FETCH_STALL_S", value)
    with pytest.raises(FetchError) as err:
        fetch(MULTI30K, tmp_path, "http://127.0.0.1:9/task1", files=MANIFEST)
    assert one_line(str(err.value)) == f"$NOAMT_FETCH_STALL_S={value}: must be a finite number of seconds > 0"
    assert not any(tmp_path.iterdir())


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_second_fetch_into_the_folder_is_refused_and_the_first_finishes(tmp_path):
    mirror = Mirror(FILES)
    mirror.hold_after = 100
    first: dict = {}
    with mirror.serving() as url:
        thread = threading.Thread(target=lambda: first.update(counts=fetch(MULTI30K, tmp_path, url, files=MANIFEST)))
        thread.start()
        wait_for(lambda: (tmp_path / "train.en.gz.part").is_file())
        with pytest.raises(FetchError) as err:
            fetch(MULTI30K, tmp_path, url, files=MANIFEST)
        assert (tmp_path / "train.en.gz.part").stat().st_size <= 100  # the second wrote nothing
        mirror.go_on.set()
        thread.join(30)
    assert one_line(str(err.value)) == (
        f"{tmp_path} is being written by another noamt-data fetch (process {os.getpid()} on {socket.gethostname()}; "
        f"it holds {tmp_path / LOCK_NAME}): let it finish, then run the command again"
    )
    assert first["counts"] == {"present": 0, "downloaded": 2}
    assert (tmp_path / "train.en.gz").read_bytes() == FILES["raw/train.en.gz"]
    assert sorted(snapshot(tmp_path)) == [LOCK_NAME, "train.en.gz", "val.en.gz"]


def noamt_data(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "noamt.cli.data", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_fetches_into_one_folder_and_ctrl_c_each_end_in_one_line(tmp_path):
    """noamt-data fetch run twice at once: the second stops in one line naming the first; Ctrl-C
    stops the first with status 130 and one line, its download kept to resume."""
    first_path = next(iter(MULTI30K.files()))  # what the real manifest asks for first
    mirror = Mirror({first_path: b"x" * 5000})
    mirror.hold_after = 1000
    part = tmp_path / (MULTI30K.local_path(first_path) + ".part")
    with mirror.serving() as url:
        first = noamt_data("fetch", "multi30k", "--url", url, "--dir", str(tmp_path))
        try:
            wait_for(part.is_file)  # the first holds the lock and is receiving
            second = noamt_data("fetch", "multi30k", "--url", url, "--dir", str(tmp_path))
            _, second_err = second.communicate(timeout=120)
            first.send_signal(signal.SIGINT)
            _, first_err = first.communicate(timeout=60)
        finally:
            first.kill()
    assert second.returncode == 1
    assert one_line(second_err.strip().splitlines()[-1]).startswith(
        f"noamt-data: {tmp_path} is being written by another noamt-data fetch (process {first.pid} on "
    )
    assert "Traceback" not in second_err + first_err
    assert first.returncode == 130
    assert first_err.strip().splitlines()[-1] == (
        "noamt-data: interrupted; a file cut short is kept as <file>.part and resumes when the command runs again"
    )
    assert part.read_bytes() == b"x" * 1000
    assert sorted(snapshot(tmp_path)) == [LOCK_NAME, part.name]


# ----------------------------------------------------------------------------- the tokenizer cache
SRC = ["a dog runs in the park .", "two men play football .", "a girl reads a book ."] * 5
TGT = ["ein hund rennt im park .", "zwei männer spielen fußball .", "ein mädchen liest ein buch ."] * 5


def damage(path: Path, how: str, other: Path) -> None:
    record = json.loads(path.read_text(encoding="utf-8"))
    if how == "planted":  # another corpus's cache file, renamed to this key
        path.write_bytes(other.read_bytes())
    elif how == "key":
        path.write_text(json.dumps({**record, "key": "0" * 64}), encoding="utf-8")
    elif how == "content":  # the tokenizer changed, the checksum not
        path.write_text(json.dumps({**record, "tokenizer": record["tokenizer"] + " "}), encoding="utf-8")
    elif how == "cut short":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "plain tokenizer":
        path.write_text(record["tokenizer"], encoding="utf-8")


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("planted", "it records another key: made from other text or settings"),
        ("key", "it records another key: made from other text or settings"),
        ("content", "its content does not match the checksum it records"),
        ("cut short", "unreadable: Unterminated string starting at: line 1 column "),
        ("plain tokenizer", "not a noamt tokenizer cache file"),
    ],
)
def test_a_cached_tokenizer_not_made_for_this_run_is_not_used(tmp_path, caplog, how, why):
    cfg = TokenizerConfig(vocab_size=280, cache_dir=str(tmp_path / "cache"))
    other_cfg = TokenizerConfig(vocab_size=280, cache_dir=str(tmp_path / "other"))
    expected = load_or_train_tokenizer(SRC, TGT, cfg).to_str()
    load_or_train_tokenizer(SRC[:3], TGT[:3], other_cfg)
    [path] = (tmp_path / "cache").iterdir()
    [other] = (tmp_path / "other").iterdir()
    damage(path, how, other)
    with caplog.at_level(logging.INFO, logger="noamt.data.tokenizer"):
        tokenizer = load_or_train_tokenizer(SRC, TGT, cfg)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and one_line(warnings[0]).startswith(f"cached tokenizer {path} not used ({why}")
    assert warnings[0].endswith("): training it again")
    assert tokenizer.to_str() == expected == train_tokenizer([*SRC, *TGT], cfg).to_str()
    assert json.loads(path.read_text(encoding="utf-8"))["tokenizer"] == expected  # cached over it
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="noamt.data.tokenizer"):
        load_or_train_tokenizer(SRC, TGT, cfg)
    assert "loaded tokenizer from cache" in caplog.text and "WARNING" not in caplog.text


# ----------------------------------------------------------------------------- YAML
def billion_laughs(levels: str = "abcdefghi") -> str:
    """YAML of a few hundred bytes whose last key expands to 9^9 strings: each level lists the
    level before it 9 times."""
    lines = [f"{levels[0]}: &{levels[0]} [" + ", ".join(["lol"] * 9) + "]"]
    lines += [
        f"{key}: &{key} [" + ", ".join([f"*{before}"] * 9) + "]"
        for before, key in zip(levels, levels[1:], strict=False)
    ]
    return "\n".join(lines) + "\n"


BILLION_LAUGHS = billion_laughs()


def test_an_alias_bomb_as_a_run_config_is_one_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(BILLION_LAUGHS)
    assert path.stat().st_size < 1024
    started = time.monotonic()
    with pytest.raises(CompareError) as err:
        read_run_config(path)
    assert time.monotonic() - started < 2
    assert one_line(str(err.value)) == (
        f"{path}: cannot read the run's config (more than {yaml_files.MAX_YAML_NODES} nodes once its aliases "
        "are expanded (line 6); refused)"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a: &x 1\nb: [" + ", ".join(["*x"] * 101) + "]\n", "more than 100 aliases (line 2); refused"),
        ("a: &x [1, *x]\n", "the alias *x is inside its anchor (line 1); refused"),
        ("a: !!python/object/apply:os.system ['true']\n", "line 1: could not determine a constructor for the tag"),
        ("a: 1\na: 2\n", "line 2: found duplicate key a"),
        ("'b: [1, 2]'\n", "holds a str, not a mapping or a list of settings"),
        ("a: " + "x" * yaml_files.MAX_YAML_BYTES + "\n", "more than 1048576 bytes, more than a config has; refused"),
    ],
    ids=["aliases", "recursive", "python tag", "duplicate key", "a string", "too large"],
)
def test_yaml_out_of_bounds_is_refused_naming_the_file(tmp_path, text, reason):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(YamlRefused) as err:
        read_yaml_config(path)
    assert one_line(str(err.value)).startswith(f"{path}: {reason}")


def test_a_run_config_reads_as_omegaconf_reads_it():
    from omegaconf import OmegaConf

    [path, *_] = sorted(RESULTS.glob("*/runs/*/.hydra/config.yaml"))
    assert read_yaml_config(path) == OmegaConf.load(path)


@pytest.mark.slow
def test_compare_dry_run_on_an_alias_bomb_ends_in_one_line(toy_data_dir, tmp_path):
    run_dir = tmp_path / "bench" / "runs" / "noam-seed1"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(BILLION_LAUGHS)
    before = snapshot(run_dir)
    command = [sys.executable, "-m", "noamt_study.cli", "--profile", "smoke", "--schedules", "noam", "--seeds", "1"]
    command += ["--out", str(tmp_path / "bench"), "--dry-run", "data.max_train_examples=300"]
    env = {**os.environ, "NOAMT_DATA_DIR": str(toy_data_dir), "NOAMT_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(command, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    assert one_line(result.stderr.strip().splitlines()[-1]) == (
        f"noamt-compare: {run_dir}/.hydra/config.yaml: cannot read the run's config (more than "
        f"{yaml_files.MAX_YAML_NODES} nodes once its aliases are expanded (line 6); refused)"
    )
    assert snapshot(run_dir) == before


# ----------------------------------------------------------------------------- command lines
@pytest.mark.parametrize(
    "argv",
    [
        ["--experimental-rerun", "{pickle}"],
        ["--experimental-rerun={pickle}"],
        ["--exp", "{pickle}"],
        ["trainer.max_steps=3", "--experimental-rerun", "{pickle}"],
    ],
)
def test_experimental_rerun_is_refused_before_hydra_reads_the_pickle(tmp_path, argv):
    marker = tmp_path / "payload-ran"
    rerun = tmp_path / "config.pickle"
    rerun.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(SystemExit) as exit_:
        refuse_unsafe_options("noamt-train", [arg.format(pickle=rerun) for arg in argv])
    assert one_line(str(exit_.value.code)) == (
        "noamt-train: --experimental-rerun is not supported: it would load a pickle, which can run code; give "
        "the settings as overrides instead (a training run's are in its .hydra/overrides.yaml)"
    )
    assert not marker.exists()


def test_ordinary_command_lines_pass(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "mine.yaml").write_text("defaults:\n  - train\n  - _self_\ntrainer:\n  max_steps: 3\n")
    for argv in (
        [],
        ["trainer.max_steps=3", "-m", "--cfg", "job"],
        ["--config-dir", str(folder), "--config-name", "mine"],
        ["--", "--experimental-rerun"],  # after --, a value, not the option
    ):
        refuse_unsafe_options("noamt-train", argv)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("checkpoint: !!python/object/apply:os.system ['touch {marker}']\n", "could not determine a constructor"),
        (BILLION_LAUGHS, "more than 100000 nodes once its aliases are expanded"),
    ],
    ids=["python tag", "alias bomb"],
)
@pytest.mark.parametrize("option", ["--config-dir", "-cd", "--config-dir=", "--config-path"])
def test_a_config_folder_with_unsafe_yaml_is_one_line(tmp_path, text, reason, option):
    marker = tmp_path / "payload-ran"
    folder = tmp_path / "configs" / "group"
    folder.mkdir(parents=True)
    (folder / "evil.yaml").write_text(text.format(marker=marker))
    given = [f"{option}{folder.parent}"] if option.endswith("=") else [option, str(folder.parent)]
    with pytest.raises(SystemExit) as exit_:
        refuse_unsafe_options("noamt-translate", [*given, "--config-name", "evil"])
    message = one_line(str(exit_.value.code))
    named = "--config-path" if option == "--config-path" else "--config-dir"
    assert message.startswith(f"noamt-translate: {named} {folder.parent}: {folder / 'evil.yaml'}: ")
    assert reason in message and not marker.exists()


@pytest.mark.parametrize("command", ["train", "translate", "evaluate", "export"])
def test_every_hydra_command_refuses_experimental_rerun(tmp_path, monkeypatch, command):
    """Each command's entry point (what its console script and ``python -m`` run) refuses before
    Hydra parses the command line."""
    module = importlib.import_module(f"noamt.cli.{command}")
    marker = tmp_path / "payload-ran"
    rerun = tmp_path / "config.pickle"
    rerun.write_bytes(pickle.dumps(Payload(marker)))
    monkeypatch.setattr(sys, "argv", [f"noamt-{command}", "--experimental-rerun", str(rerun)])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        module.entry()
    assert one_line(str(exit_.value.code)).startswith(f"noamt-{command}: --experimental-rerun is not supported: ")
    assert not marker.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["config.pickle"]


@pytest.mark.slow
def test_python_m_runs_the_entry_point_that_refuses_experimental_rerun(tmp_path):
    marker = tmp_path / "payload-ran"
    rerun = tmp_path / "config.pickle"
    rerun.write_bytes(pickle.dumps(Payload(marker)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NOAMT_RUNS_DIR": str(tmp_path / "runs")}
    result = subprocess.run(
        [sys.executable, "-m", "noamt.cli.translate", "--experimental-rerun", str(rerun)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert one_line(result.stderr.strip()).startswith("noamt-translate: --experimental-rerun is not supported: ")
    assert not marker.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["config.pickle"]


# ----------------------------------------------------------------------------- values out of their domain
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DataConfig(max_len_ratio=math.nan), "data.max_len_ratio=nan: must be 0 (keep all) or a finite"),
        (lambda: DataConfig(max_len_ratio=math.inf), "data.max_len_ratio=inf: must be 0 (keep all) or a finite"),
        (lambda: DataConfig(max_len_ratio=0.5), "data.max_len_ratio=0.5: must be 0 (keep all) or a finite"),
        (lambda: DataConfig(max_src_len=0), "data.max_src_len=0: must be at least 1"),
        (lambda: DataConfig(max_tgt_len=1.5), "data.max_tgt_len=1.5: must be an integer"),
        (lambda: DataConfig(max_train_examples=0), "data.max_train_examples=0: must be at least 1 or null"),
        (lambda: TokenizerConfig(min_frequency=-1), "tokenizer.min_frequency=-1: must be at least 0"),
        (lambda: TokenizerConfig(min_frequency=10**10), "tokenizer.min_frequency=10000000000: must be at most"),
        (lambda: TokenizerConfig(vocab_size=2**64), "tokenizer.vocab_size=18446744073709551616: must be at most"),
        (lambda: TokenizerConfig(vocab_size=math.nan), "tokenizer.vocab_size=nan: must be an integer"),
    ],
)
def test_data_and_tokenizer_values_out_of_their_domain_name_the_key(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert one_line(str(err.value)).startswith(message)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tokenizer.vocab_size=nan", "tokenizer.vocab_size=nan: must be an integer"),
        ("tokenizer.vocab_size=1e400", "tokenizer.vocab_size=1e400: must be an integer"),
        ("tokenizer.min_frequency=1.5", "tokenizer.min_frequency=1.5: must be an integer"),
        ("data.max_train_examples=true", "data.max_train_examples=true: must be an integer or null"),
        ("data.max_len_ratio=abc", "data.max_len_ratio=abc: must be a number"),
        ("data.max_len_ratio=nan", None),  # a number: DataConfig refuses it, naming the key
        ("tokenizer.vocab_size=8000,16000", None),  # a sweep: each value is checked as it runs
        ("tokenizer.vocab_size=${oc.env:VOCAB}", None),
        ("data.max_train_examples=null", None),
    ],
)
def test_an_override_of_the_wrong_type_is_one_line_naming_the_key(override, message):
    assert mistyped_value(["model=tiny", override]) == message
