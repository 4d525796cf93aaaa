"""Joint source/target BPE tokenizer (Hugging Face `tokenizers`), trained once and cached.

Text is NFC-normalised and split SentencePiece-style: every space becomes "▁" and starts
a new piece, so decoding restores the spacing exactly (runs of spaces, tabs and trailing
spaces included), except that one leading space of a sentence is dropped: the first word
gets a "▁" prefixed so that it is encoded like any other word. Characters not seen in
training are encoded as their UTF-8 bytes (`<0x00>`..`<0xFF>` tokens), so any text
round-trips (in NFC form) and `<unk>` is never produced.

Vocabulary layout: ids 0-3 are `<pad>`, `<s>`, `</s>`, `<unk>`, ids 4-259 the byte
tokens, then the learned pieces. None of these are registered as "added tokens", so a
literal "<s>" in the input is ordinary text and never becomes a control id.

A trained tokenizer is cached as `<key>.json`, the key a SHA-256 of the training text and the
settings. The file records its key and the SHA-256 of the tokenizer it holds; a cached file whose
recorded key is not the one asked for, whose content does not match its checksum, or that cannot
be read (cut short, not JSON) or loaded is not used: a one-line warning names it, and the
tokenizer is trained again and cached over it. (The checks catch a file made for other data,
renamed or damaged; like the code, the cache folder must be one that only its user writes.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from noamt.bounds import at_least, require
from noamt.io import write_atomic

log = logging.getLogger(__name__)

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
SPECIAL_IDS = (0, 1, 2, 3)
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))
CACHE_DIR_ENV = "NOAMT_CACHE_DIR"
FORMAT_VERSION = 2  # part of the cache key; bump when the pipeline below or the cache file changes
CACHE_FORMAT = "noamt-tokenizer-cache"  # the "format" of a cache file: {format, key, sha256, tokenizer}
MAX_CACHE_BYTES = 1 << 30  # a cache file larger than this is not read
MAX_VOCAB_SIZE = 1 << 20  # tokenizer.vocab_size: an embedding row per token; MT vocabularies have 8k-64k
MAX_MIN_FREQUENCY = 10**9  # tokenizer.min_frequency: beyond any corpus's pair counts
_SPACE = "▁"


@dataclass
class TokenizerConfig:
    """BPE settings. `vocab_size` counts the 4 specials and the 256 byte tokens.

    `cache_dir` defaults to `$NOAMT_CACHE_DIR/tokenizers`, else `~/.cache/noamt/tokenizers`.
    """

    vocab_size: int = 8000
    """Size of the joint vocabulary, the 4 specials and the 256 byte tokens included."""
    min_frequency: int = 2
    """A merge needs a pair seen at least this often."""
    cache_dir: str | None = None
    """Where trained BPE models are cached (null: $NOAMT_CACHE_DIR/tokenizers, else ~/.cache/noamt/tokenizers)."""

    def __post_init__(self) -> None:
        """Check every field that has bounds; one-line ValueErrors naming the key."""
        reserved = len(SPECIAL_TOKENS) + len(BYTE_TOKENS)
        at_least("tokenizer.vocab_size", self.vocab_size, reserved + 1, " (4 specials, 256 byte tokens, 1 piece)")
        require("tokenizer.vocab_size", self.vocab_size, self.vocab_size <= MAX_VOCAB_SIZE, f"at most {MAX_VOCAB_SIZE}")
        at_least("tokenizer.min_frequency", self.min_frequency, 0)
        frequency = self.min_frequency
        require("tokenizer.min_frequency", frequency, frequency <= MAX_MIN_FREQUENCY, f"at most {MAX_MIN_FREQUENCY}")


class Tokenizer:
    """Joint BPE over source and target text (HF tokenizers)."""

    def __init__(self, hf: tokenizers.Tokenizer):
        ids = [hf.token_to_id(tok) for tok in SPECIAL_TOKENS]
        if ids != list(SPECIAL_IDS):
            raise ValueError(f"tokenizer must have {', '.join(SPECIAL_TOKENS)} at ids 0-3, got {ids}")
        self._hf = hf
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = SPECIAL_IDS
        self._special_ids = frozenset(SPECIAL_IDS)

    @property
    def vocab_size(self) -> int:
        """Number of token ids (the embedding table size)."""
        return self._hf.get_vocab_size()

    def vocabulary(self) -> list[str]:
        """Every token, the one of id i at index i."""
        by_id = sorted(self._hf.get_vocab(with_added_tokens=False).items(), key=lambda item: item[1])
        return [token for token, _ in by_id]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS/EOS."""
        return self._hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of many texts, encoded in parallel by the Rust library."""
        return [enc.ids for enc in self._hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` with the special ids removed; truncating at EOS is the caller's job.

        Byte tokens that do not form valid UTF-8 decode to U+FFFD.
        """
        return self._hf.decode(self._strip_specials(ids), skip_special_tokens=False)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        """`decode` for many id sequences."""
        return self._hf.decode_batch([self._strip_specials(ids) for ids in batch], skip_special_tokens=False)

    def to_str(self) -> str:
        """JSON serialisation, e.g. to store inside a checkpoint."""
        return self._hf.to_str()

    @classmethod
    def from_str(cls, s: str) -> Tokenizer:
        """Inverse of `to_str`."""
        return cls(tokenizers.Tokenizer.from_str(s))

    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON serialisation to `path` atomically (:func:`noamt.io.write_atomic`)."""
        write_atomic(path, self.to_str())

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Tokenizer:
        """Load a tokenizer written by `save`."""
        return cls(tokenizers.Tokenizer.from_file(str(path)))

    def _strip_specials(self, ids: Sequence[int]) -> list[int]:
        return [i for i in map(int, ids) if i not in self._special_ids]


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig) -> Tokenizer:
    """Train a BPE tokenizer with byte fallback on `texts`."""
    hf = tokenizers.Tokenizer(models.BPE(unk_token=UNK, byte_fallback=True))
    hf.normalizer = normalizers.NFC()
    hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always")
    hf.decoder = decoders.Sequence(
        [
            decoders.Replace(_SPACE, " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *BYTE_TOKENS],
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer)
    # The trainer registers its special tokens as "added tokens", which would match
    # literal "<s>" or "<0x41>" in input text; keep them as plain vocabulary entries only.
    spec = json.loads(hf.to_str())
    spec["added_tokens"] = []
    return Tokenizer(tokenizers.Tokenizer.from_str(json.dumps(spec)))


def load_or_train_tokenizer(train_src: Sequence[str], train_tgt: Sequence[str], cfg: TokenizerConfig) -> Tokenizer:
    """Load the cached tokenizer for this training text and settings, or train and cache it.

    The cache key is a sha256 over the format version, the settings and the text, so a
    different corpus, slice or vocabulary size trains a new tokenizer. A cached file is used only
    when it records this key and its content matches the checksum it records
    (:func:`read_cached_tokenizer`); else a one-line warning names it and it is trained again.
    """
    key = _cache_key(train_src, train_tgt, cfg)
    path = cache_dir(cfg) / f"{key}.json"
    if path.exists():
        tokenizer, problem = read_cached_tokenizer(path, key)
        if tokenizer is not None:
            log.info("loaded tokenizer from cache %s", path)
            return tokenizer
        log.warning("cached tokenizer %s not used (%s): training it again", path, problem)
    tokenizer = train_tokenizer([*train_src, *train_tgt], cfg)
    try:
        write_cached_tokenizer(path, key, tokenizer)
    except OSError as err:  # a cache that cannot be written costs a retraining next time, nothing else
        log.warning("trained tokenizer (vocab %d), not cached: cannot write %s (%s)", tokenizer.vocab_size, path, err)
        return tokenizer
    log.info("trained tokenizer (vocab %d) and cached it at %s", tokenizer.vocab_size, path)
    return tokenizer


def write_cached_tokenizer(path: Path, key: str, tokenizer: Tokenizer) -> None:
    """Cache ``tokenizer`` at ``path`` (atomically) with its ``key`` and the SHA-256 of its JSON."""
    text = tokenizer.to_str()
    record = {"format": CACHE_FORMAT, "key": key, "sha256": _sha256(text), "tokenizer": text}
    write_atomic(path, json.dumps(record, ensure_ascii=False))


def read_cached_tokenizer(path: Path, key: str) -> tuple[Tokenizer | None, str]:
    """The tokenizer cached at ``path`` if the file records ``key`` and its content matches the
    SHA-256 it records; else None and why not (a few words, one line)."""
    try:
        size = path.stat().st_size
        if size > MAX_CACHE_BYTES:
            return None, f"{size} bytes, more than a cache file has"
        record = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:  # ValueError: not UTF-8 or not JSON (e.g. cut short)
        return None, f"unreadable: {_first_line(err)}"
    if not isinstance(record, dict) or record.get("format") != CACHE_FORMAT:
        return None, "not a noamt tokenizer cache file"
    if record.get("key") != key:
        return None, "it records another key: made from other text or settings"
    text = record.get("tokenizer")
    if not isinstance(text, str) or record.get("sha256") != _sha256(text):
        return None, "its content does not match the checksum it records"
    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as err:  # the tokenizers library raises plain Exceptions
        return None, f"not a tokenizer: {_first_line(err)}"
    return tokenizer, ""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def cache_dir(cfg: TokenizerConfig) -> Path:
    """Folder holding cached tokenizers."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    root = os.environ.get(CACHE_DIR_ENV)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "noamt") / "tokenizers"


def _cache_key(train_src: Sequence[str], train_tgt: Sequence[str], cfg: TokenizerConfig) -> str:
    h = hashlib.sha256()
    h.update(f"noamt-bpe v{FORMAT_VERSION} vocab={cfg.vocab_size} minfreq={cfg.min_frequency}".encode())
    for texts in (train_src, train_tgt):
        h.update(len(texts).to_bytes(8, "little"))
        for text in texts:
            data = text.encode("utf-8")
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
    return h.hexdigest()
