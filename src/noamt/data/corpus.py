"""Parallel text corpora as a `datasets.DatasetDict` of (src, tgt) string pairs.

Two sources are supported: a folder of line-aligned text files (`{split}.{lang}` or
`{split}.{lang}.gz`, the layout of the Multi30k release) and a Hugging Face hub dataset.
The result always has the splits `train`, `valid` and one split per test set, each with
the string columns `src` and `tgt`. `file_pattern` places the files of a split inside the
folder (`tok/{split}.lc.norm.tok.{lang}` reads Multi30k's official tokenized text). This
module deals with text only; tokenisation and length filtering happen later on token ids.

Text files are read with bounds (:func:`read_lines`): a file of more than ``MAX_FILE_BYTES``
(2 GiB), a line of more than ``MAX_LINE_BYTES`` (1 MiB) and a ``.gz`` that inflates past
``MAX_GZIP_RATIO`` (32) times its own size (beyond a floor of ``GZIP_FLOOR_BYTES``, 64 MiB) are
refused in one line naming the file (and the line), counted while reading, before the rest is
read. Text compresses about 3 to 4 times (Multi30k's train.de.gz: 0.6 MB to 2.1 MB) and its
longest line has 257 bytes.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from noamt.bounds import at_least, at_least_or_none, is_finite, one_of, require
from noamt.data.tokenizer import CACHE_DIR_ENV

log = logging.getLogger(__name__)

DATA_DIR_ENV = "NOAMT_DATA_DIR"
SOURCES = ("auto", "files", "hub")
MAX_FILE_BYTES = 2 << 30  # a text file (a .gz: its text) larger than this is refused
MAX_LINE_BYTES = 1 << 20  # a "sentence" longer than this is refused: the file is not one sentence per line
MAX_GZIP_RATIO = 32  # a .gz inflating to more than this many times its size (past the floor) is refused
GZIP_FLOOR_BYTES = 64 << 20  # a .gz may always inflate to this much (small, repetitive files compress far better)


class DataError(ValueError):
    """Bad input data; message is one line naming file/line."""


@dataclass
class DataConfig:
    """Where the parallel corpus comes from and how much of it to use.

    `source="auto"` reads files when a folder is known (`dir` or $NOAMT_DATA_DIR), and the
    hub dataset otherwise. `hub_split_names` maps our split names to hub split names; keys
    other than "train" and "valid" are test splits named by the key. `max_src_len`,
    `max_tgt_len` and `max_len_ratio` are applied by the caller on token ids
    (`noamt.data.batching.filter_pairs`).
    """

    name: str = "multi30k_en_de"
    """Names the corpus (and the run: run_name starts with it)."""
    source: str = "auto"
    """auto, files or hub."""
    dir: str | None = None
    """The folder of the files (null: $NOAMT_DATA_DIR, else the folder of `noamt-data fetch <release>`)."""
    src_lang: str = "en"
    """Source language: the {lang} of the source files."""
    tgt_lang: str = "de"
    """Target language: the {lang} of the target files."""
    train_split: str = "train"
    """The {split} of the training files."""
    valid_split: str = "val"
    """The {split} of the validation files."""
    test_splits: list[str] = field(
        default_factory=lambda: [
            "test_2016_flickr",
            "test_2017_flickr",
            "test_2017_mscoco",
            "test_2018_flickr",
        ]
    )
    """The {split} of each test set."""
    hub_name: str | None = "bentrevett/multi30k"
    """The Hugging Face hub dataset read by source=hub."""
    hub_config: str | None = None
    """The hub dataset's configuration, if it has several."""
    hub_split_names: dict[str, str] = field(
        default_factory=lambda: {"train": "train", "valid": "validation", "test_2016_flickr": "test"}
    )
    """Our split -> the hub's split (the hub copy's one test split is test_2016_flickr)."""
    max_train_examples: int | None = None
    """Use only the first N training pairs (null: all)."""
    max_eval_examples: int | None = None
    """Use only the first N pairs of each validation and test split (null: all)."""
    max_src_len: int = 256
    """Longest source in tokens: longer training pairs are dropped, longer evaluation sources cut."""
    max_tgt_len: int = 256
    """Longest target in tokens, as max_src_len."""
    max_len_ratio: float = 0.0
    """Drop training pairs whose longer side has more than this many times the tokens of the shorter (0: keep all)."""
    file_pattern: str = "{split}.{lang}"
    """The path of a split's file in dir, with {split} and {lang} (a .gz beside it is read too)."""
    tokenized: bool = False
    """The text is lowercased and tokenized already: hypotheses are scored as they are."""
    release: str | None = "multi30k"
    """What `noamt-data fetch <release>` writes: the default folder."""

    def __post_init__(self) -> None:
        """Check every field that has bounds; one-line ValueErrors naming the key."""
        one_of("data.source", self.source, SOURCES)
        splits = list(self.test_splits)
        require("data.test_splits", splits, len(set(splits)) == len(splits) and not {"train", "valid"} & set(splits),
                "unique names other than train and valid")  # fmt: skip
        at_least_or_none("data.max_train_examples", self.max_train_examples, 1)
        at_least_or_none("data.max_eval_examples", self.max_eval_examples, 1)
        at_least("data.max_src_len", self.max_src_len, 1)
        at_least("data.max_tgt_len", self.max_tgt_len, 1)
        ratio = self.max_len_ratio
        require("data.max_len_ratio", ratio, is_finite(ratio) and (ratio == 0 or ratio >= 1),
                "0 (keep all) or a finite number >= 1 (longer side / shorter side)")  # fmt: skip


def fetched_data_dir(release: str) -> Path:
    """Where ``noamt-data fetch <release>`` puts a release by default:
    $NOAMT_CACHE_DIR/data/<release>, else ~/.cache/noamt/data/<release>."""
    cache = os.environ.get(CACHE_DIR_ENV)
    return (Path(cache).expanduser() if cache else Path.home() / ".cache" / "noamt") / "data" / release


def resolve_data_dir(cfg: DataConfig) -> Path | None:
    """The data folder: `cfg.dir`, else $NOAMT_DATA_DIR, else the fetched copy of `cfg.release`
    if it exists, else None (the first two are not checked to exist)."""
    value = cfg.dir or os.environ.get(DATA_DIR_ENV)
    if value:
        return Path(value).expanduser()
    if cfg.release and fetched_data_dir(cfg.release).is_dir():
        return fetched_data_dir(cfg.release)
    return None


def load_corpus(cfg: DataConfig, splits: Sequence[str] | None = None) -> datasets.DatasetDict:
    """Load the train, valid and test splits named in `cfg` as (src, tgt) string pairs; with
    `splits` (e.g. ["valid", "test_2016_flickr"]) only those, so no other file need exist.

    Training pairs with a whitespace-only side are dropped (the count is logged);
    evaluation splits keep every line so that every input gets a hypothesis.
    """
    data_dir = resolve_data_dir(cfg)
    if cfg.source == "auto" and data_dir is None and cfg.release:
        raise DataError(
            f"no {cfg.release} data here: run `noamt-data fetch {cfg.release}` (it writes "
            f"{fetched_data_dir(cfg.release)}), or set data.dir or ${DATA_DIR_ENV}, or read the hub copy with "
            "data.source=hub"
        )
    if cfg.source == "hub" or (cfg.source == "auto" and data_dir is None):
        corpus = _load_hub(cfg)
        missing = [s for s in splits or [] if s not in corpus]
        if missing:
            raise DataError(
                f"hub dataset {cfg.hub_name} has no split {', '.join(missing)}: it has {', '.join(corpus)} "
                "(data.hub_split_names maps them)"
            )
        return datasets.DatasetDict({k: v for k, v in corpus.items() if splits is None or k in splits})
    if data_dir is None:
        raise DataError(f"no data folder given for data.source=files (set data.dir or {DATA_DIR_ENV})")
    return _load_files(data_dir, cfg, splits)


def _load_files(data_dir: Path, cfg: DataConfig, wanted: Sequence[str] | None = None) -> datasets.DatasetDict:
    """Read the files named by `cfg.file_pattern` (or their `.gz`; the plain file wins if both exist)."""
    if not data_dir.is_dir():
        raise DataError(f"data folder not found: {data_dir} (set data.dir or {DATA_DIR_ENV})")
    stems = {"train": cfg.train_split, "valid": cfg.valid_split}
    stems.update({stem: stem for stem in cfg.test_splits})
    splits = {}
    for split, stem in stems.items():
        if wanted is not None and split not in wanted:
            continue
        src_path = find_split_file(data_dir, cfg.file_pattern, stem, cfg.src_lang, split)
        tgt_path = find_split_file(data_dir, cfg.file_pattern, stem, cfg.tgt_lang, split)
        src, tgt = read_lines(src_path), read_lines(tgt_path)
        if len(src) != len(tgt):
            raise DataError(f"line counts differ: {src_path} has {len(src)} lines, {tgt_path} has {len(tgt)}")
        origin = f"{src_path} / {tgt_path}"
        splits[split] = _make_split(split, src, tgt, cfg, origin)
    return datasets.DatasetDict(splits)


def from_hub_dataset(dsdict: datasets.DatasetDict, cfg: DataConfig) -> datasets.DatasetDict:
    """Map a hub DatasetDict to our splits and `src`/`tgt` columns.

    The text is taken from columns named by the language codes (e.g. "en", "de") or from
    a "translation" column holding {lang: text} dicts. Of the test splits in
    `cfg.hub_split_names`, those in `cfg.test_splits` are read (a data option's mapping is
    merged into the default one, so it may hold another corpus's test set).
    """
    if "train" not in cfg.hub_split_names or "valid" not in cfg.hub_split_names:
        raise DataError(f"data.hub_split_names needs 'train' and 'valid' keys, got {cfg.hub_split_names}")
    wanted = {"train", "valid", *cfg.test_splits}
    splits = {}
    for split, hub_split in cfg.hub_split_names.items():
        if split not in wanted:
            continue
        origin = f"hub dataset {cfg.hub_name} split {hub_split!r}"
        if hub_split not in dsdict:
            raise DataError(f"{origin} not found; available: {', '.join(dsdict.keys())}")
        src, tgt = _hub_columns(dsdict[hub_split], cfg, origin)
        splits[split] = _make_split(split, src, tgt, cfg, origin)
    return datasets.DatasetDict(splits)


def read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file (gzip if the name ends in .gz), without "\\n" or "\\r\\n";
    read within the bounds of :func:`read_text_bytes`."""
    return decode_lines(read_text_bytes(path), str(path))


def read_text_bytes(path: Path) -> bytearray:
    """The bytes of a text file (inflated if the name ends in .gz), read in blocks and counted as
    they come: a file over ``MAX_FILE_BYTES``, a ``.gz`` inflating past ``MAX_GZIP_RATIO`` times
    its size (and ``GZIP_FLOOR_BYTES``), or a line over ``MAX_LINE_BYTES`` stops the reading with a
    one-line DataError naming the file (and the line), having held no more than the bound."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataError(f"{path}: {size} bytes, more than the {MAX_FILE_BYTES} a text file may have; refused")
        if path.suffix == ".gz":
            bound = min(MAX_FILE_BYTES, max(GZIP_FLOOR_BYTES, MAX_GZIP_RATIO * size))
            with gzip.open(path, "rb") as stream:
                return _read_bounded(stream, path, bound, f"its {size} bytes inflate to more than {bound}")
        with path.open("rb") as stream:
            return _read_bounded(stream, path, MAX_FILE_BYTES, f"more than the {MAX_FILE_BYTES} a text file may have")
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read ({err})") from err


def _read_bounded(stream: io.BufferedIOBase, path: Path, bound: int, beyond: str) -> bytearray:
    """Read ``stream`` whole, refusing more than ``bound`` bytes (``beyond`` says why) or a line of
    more than ``MAX_LINE_BYTES``. A block is no longer than that bound, so of its lines only the
    one that runs on from the block before needs counting."""
    data = bytearray()
    block_size = min(1 << 20, MAX_LINE_BYTES)
    line, current = 1, 0  # the 1-based line being read and its bytes so far
    while block := stream.read(block_size):
        if len(data) + len(block) > bound:
            raise DataError(f"{path}: {beyond}; refused")
        first = block.find(b"\n")
        current += len(block) if first < 0 else first
        if current > MAX_LINE_BYTES:
            too_long = f"a line of more than {MAX_LINE_BYTES} bytes (no sentence is so long)"
            raise DataError(f"{path}:{line}: {too_long}; refused")
        if first >= 0:
            line += block.count(b"\n")
            current = len(block) - block.rfind(b"\n") - 1
        data += block
    return data


def decode_lines(data: bytes | bytearray, origin: str) -> list[str]:
    """Split UTF-8 bytes into lines; a decoding error names ``origin`` and the 1-based line.

    Only "\\n" separates lines (a trailing "\\r" is dropped), so other Unicode line
    separators stay inside a line.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{origin}:{line}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _load_hub(cfg: DataConfig) -> datasets.DatasetDict:
    if not cfg.hub_name:
        raise DataError(f"no data folder and no hub dataset given (set data.dir, {DATA_DIR_ENV} or data.hub_name)")
    try:
        dsdict = datasets.load_dataset(cfg.hub_name, cfg.hub_config)
    except (ConnectionError, OSError, ValueError) as err:  # offline, unknown name, bad config
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"cannot load hub dataset {cfg.hub_name!r}: {first_line} (set data.dir or {DATA_DIR_ENV} for local files)"
        ) from err
    return from_hub_dataset(dsdict, cfg)


def split_file_name(pattern: str, stem: str, lang: str) -> str:
    """`pattern` with `{split}` and `{lang}` filled in; an unknown field names the key."""
    try:
        return pattern.format(split=stem, lang=lang)
    except (KeyError, IndexError, ValueError) as err:
        raise DataError(f"data.file_pattern={pattern!r}: only {{split}} and {{lang}} may be used ({err!r})") from err


def find_split_file(data_dir: Path, pattern: str, stem: str, lang: str, split: str) -> Path:
    """The file of split `stem` in language `lang`: `pattern` filled in, plain or gzipped."""
    name = split_file_name(pattern, stem, lang)
    candidates = [data_dir / name, data_dir / f"{name}.gz"]
    for path in candidates:
        if path.is_file():
            return path
    tried = " or ".join(str(p) for p in candidates)
    raise DataError(f"file for split {split!r} not found: tried {tried}")


def _hub_columns(ds: datasets.Dataset, cfg: DataConfig, origin: str) -> tuple[list[str], list[str]]:
    langs = (cfg.src_lang, cfg.tgt_lang)
    if all(lang in ds.column_names for lang in langs):
        return list(ds[cfg.src_lang]), list(ds[cfg.tgt_lang])
    if "translation" in ds.column_names:
        pairs = list(ds["translation"])
        if not pairs or all(lang in pairs[0] for lang in langs):
            return [p[cfg.src_lang] for p in pairs], [p[cfg.tgt_lang] for p in pairs]
    raise DataError(
        f"{origin}: expected columns {cfg.src_lang!r} and {cfg.tgt_lang!r} or a 'translation' "
        f"column with those keys, got {ds.column_names}"
    )


def _make_split(split: str, src: Sequence[str], tgt: Sequence[str], cfg: DataConfig, origin: str) -> datasets.Dataset:
    """Apply the training-only empty-pair filter and the example limits, then build a Dataset."""
    if split == "train":
        kept = [(s, t) for s, t in zip(src, tgt, strict=True) if s.strip() and t.strip()]
        dropped = len(src) - len(kept)
        if dropped:
            log.info("dropped %d of %d training pairs with an empty side (%s)", dropped, len(src), origin)
        if not kept:
            raise DataError(f"{origin}: training set is empty after dropping {dropped} pairs with an empty side")
        src, tgt = [s for s, _ in kept], [t for _, t in kept]
        limit = cfg.max_train_examples
    else:
        limit = cfg.max_eval_examples
    if limit is not None:
        src, tgt = src[:limit], tgt[:limit]
    return datasets.Dataset.from_dict({"src": list(src), "tgt": list(tgt)})
