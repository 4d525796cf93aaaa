"""Tests of noamt.data.tokenizer: the joint BPE model, lossless round trips, and its cache."""

import logging
import unicodedata
from pathlib import Path

import pytest

from noamt.data import (
    BOS,
    EOS,
    PAD,
    UNK,
    Tokenizer,
    TokenizerConfig,
    load_or_train_tokenizer,
    train_tokenizer,
)
from noamt.data.corpus import read_lines

SMALL_SRC = [f"the {w} dog number {i} runs." for i, w in enumerate(["big", "small", "red", "old"] * 10)]
SMALL_TGT = [f"der {w} Hund Nummer {i} läuft." for i, w in enumerate(["große", "kleine", "rote", "alte"] * 10)]


@pytest.fixture(scope="module")
def multi30k_train(multi30k_dir: Path) -> tuple[list[str], list[str]]:
    return read_lines(multi30k_dir / "train.en.gz"), read_lines(multi30k_dir / "train.de.gz")


@pytest.fixture(scope="module")
def tokenizer(multi30k_train) -> Tokenizer:
    """BPE with a small vocabulary, trained on the full Multi30k training text."""
    src, tgt = multi30k_train
    return train_tokenizer([*src, *tgt], TokenizerConfig(vocab_size=1000))


@pytest.fixture(scope="module")
def small_tokenizer() -> Tokenizer:
    """A tokenizer trained on a tiny synthetic corpus; needs no data files."""
    return train_tokenizer([*SMALL_SRC, *SMALL_TGT], TokenizerConfig(vocab_size=300))


@pytest.mark.slow
def test_special_ids_and_vocab_size(tokenizer: Tokenizer) -> None:
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2, 3)
    hf_vocab = tokenizer._hf.get_vocab()
    assert [hf_vocab[t] for t in (PAD, BOS, EOS, UNK)] == [0, 1, 2, 3]
    assert hf_vocab["<0x00>"] == 4 and hf_vocab["<0xFF>"] == 259
    assert tokenizer.vocab_size == 1000


def test_round_trip_real_sentences(tokenizer: Tokenizer, multi30k_train) -> None:
    src, tgt = multi30k_train
    sentences = src[:200] + tgt[:200]
    encoded = tokenizer.encode_batch(sentences)
    assert tokenizer.decode_batch(encoded) == sentences
    assert all(min(ids) > tokenizer.unk_id for ids in encoded)
    assert encoded[0] == tokenizer.encode(sentences[0])
    assert tokenizer.decode(encoded[-1]) == sentences[-1]
    assert any(ch in "äöüß" for s in tgt[:200] for ch in s)


@pytest.mark.parametrize(
    "text",
    ["日本語 😀 Ωmega", "a  b", "trailing ", "tab\tinside", "<s> </s> <pad> <unk> <0x41>", "Łódź"],
)
def test_round_trip_unseen_characters_and_spacing(small_tokenizer: Tokenizer, text: str) -> None:
    ids = small_tokenizer.encode(text)
    assert min(ids) > small_tokenizer.unk_id
    assert small_tokenizer.decode(ids) == text


def test_one_leading_space_is_dropped(small_tokenizer: Tokenizer) -> None:
    assert small_tokenizer.decode(small_tokenizer.encode(" the dog")) == "the dog"
    assert small_tokenizer.decode(small_tokenizer.encode("   the dog")) == "  the dog"


def test_nfc_normalisation(small_tokenizer: Tokenizer) -> None:
    composed = "läuft"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert small_tokenizer.encode(decomposed) == small_tokenizer.encode(composed)


def test_decode_strips_specials(small_tokenizer: Tokenizer) -> None:
    tok = small_tokenizer
    ids = tok.encode("the big dog")
    assert tok.decode([tok.bos_id, *ids, tok.unk_id, tok.eos_id, tok.pad_id]) == "the big dog"
    assert tok.decode_batch([[tok.bos_id, *ids], [tok.pad_id]]) == ["the big dog", ""]


def test_serialisation_keeps_encodings(tokenizer: Tokenizer, multi30k_train, tmp_path: Path) -> None:
    sentences = multi30k_train[1][:50] + ["日本語 😀 Ωmega"]
    expected = tokenizer.encode_batch(sentences)
    assert Tokenizer.from_str(tokenizer.to_str()).encode_batch(sentences) == expected
    tokenizer.save(tmp_path / "tok.json")
    assert Tokenizer.from_file(tmp_path / "tok.json").encode_batch(sentences) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["tok.json"]


def test_training_is_deterministic(small_tokenizer: Tokenizer) -> None:
    again = train_tokenizer([*SMALL_SRC, *SMALL_TGT], TokenizerConfig(vocab_size=300))
    assert again.to_str() == small_tokenizer.to_str()


def test_vocab_size_must_exceed_reserved_tokens() -> None:
    with pytest.raises(ValueError, match=r"tokenizer.vocab_size=260: must be at least 261 \(4 specials, 256 byte"):
        TokenizerConfig(vocab_size=260)


def test_cache_reused_and_keyed_by_settings_and_text(tmp_path: Path, caplog) -> None:
    cfg = TokenizerConfig(vocab_size=300, cache_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="noamt.data.tokenizer"):
        first = load_or_train_tokenizer(SMALL_SRC, SMALL_TGT, cfg)
        assert "trained tokenizer" in caplog.text
        [cached] = list(tmp_path.iterdir())
        assert cached.suffix == ".json" and len(cached.stem) == 64
        mtime = cached.stat().st_mtime_ns

        caplog.clear()
        second = load_or_train_tokenizer(SMALL_SRC, SMALL_TGT, cfg)
        assert "loaded tokenizer from cache" in caplog.text and "trained" not in caplog.text
        assert cached.stat().st_mtime_ns == mtime
        assert second.to_str() == first.to_str()

        caplog.clear()
        bigger = load_or_train_tokenizer(SMALL_SRC, SMALL_TGT, TokenizerConfig(vocab_size=320, cache_dir=str(tmp_path)))
        assert "trained tokenizer" in caplog.text
        assert bigger.vocab_size != first.vocab_size

        caplog.clear()
        load_or_train_tokenizer(SMALL_SRC[:-1], SMALL_TGT[:-1], cfg)
        assert "trained tokenizer" in caplog.text
    assert len(list(tmp_path.iterdir())) == 3


def test_cache_dir_default_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NOAMT_CACHE_DIR", str(tmp_path))
    load_or_train_tokenizer(SMALL_SRC, SMALL_TGT, TokenizerConfig(vocab_size=300))
    assert len(list((tmp_path / "tokenizers").glob("*.json"))) == 1
