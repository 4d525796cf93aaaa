"""Tests of noamt.data.corpus: reading parallel files, the hub mapping, and data errors."""

import gzip
import logging
from pathlib import Path

import datasets
import pytest
from omegaconf import OmegaConf

from noamt.data import DataConfig, DataError, from_hub_dataset, load_corpus, resolve_data_dir
from noamt.data import corpus as corpus_module

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def write_pairs(folder: Path, stem: str, src: list[str], tgt: list[str], gz: bool = False) -> None:
    ext = ".gz" if gz else ""
    write(folder, f"{stem}.en{ext}", "".join(f"{s}\n" for s in src).encode())
    write(folder, f"{stem}.de{ext}", "".join(f"{t}\n" for t in tgt).encode())


def small_cfg(folder: Path, **kwargs) -> DataConfig:
    return DataConfig(dir=str(folder), test_splits=["test"], **kwargs)


@pytest.fixture
def small_dir(tmp_path: Path) -> Path:
    """A valid folder: train (3 pairs), val (2 pairs, gzip) and test (1 pair)."""
    write_pairs(tmp_path, "train", ["a b", "c", "d e f"], ["A B", "C", "D E F"])
    write_pairs(tmp_path, "val", ["v1", "v2"], ["V1", "V2"], gz=True)
    write_pairs(tmp_path, "test", ["t"], ["T"])
    return tmp_path


def test_loads_splits_columns_and_text(small_dir: Path) -> None:
    corpus = load_corpus(small_cfg(small_dir))
    assert list(corpus.keys()) == ["train", "valid", "test"]
    assert corpus["train"].column_names == ["src", "tgt"]
    assert corpus["train"]["src"][:] == ["a b", "c", "d e f"]
    assert corpus["train"]["tgt"][:] == ["A B", "C", "D E F"]
    assert corpus["valid"]["tgt"][:] == ["V1", "V2"]
    assert corpus["test"]["src"][:] == ["t"]


def test_only_line_endings_are_stripped(tmp_path: Path) -> None:
    write(tmp_path, "train.en", b"  two  spaces \r\nlast line without newline")
    write(tmp_path, "train.de", "\u00fcber\tall \nzwei\u2028drei\n".encode())
    write_pairs(tmp_path, "val", ["v"], ["V"])
    corpus = load_corpus(DataConfig(dir=str(tmp_path), test_splits=[]))
    assert corpus["train"]["src"][:] == ["  two  spaces ", "last line without newline"]
    assert corpus["train"]["tgt"][:] == ["\u00fcber\tall ", "zwei\u2028drei"]


def test_plain_file_preferred_over_gzip(small_dir: Path) -> None:
    write_pairs(small_dir, "test", ["gz"], ["GZ"], gz=True)
    assert load_corpus(small_cfg(small_dir))["test"]["src"][:] == ["t"]


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DataError) as err:
        load_corpus(small_cfg(missing))
    assert str(err.value) == f"data folder not found: {missing} (set data.dir or NOAMT_DATA_DIR)"


def test_missing_file_names_split_and_paths(small_dir: Path) -> None:
    (small_dir / "val.de.gz").unlink()
    with pytest.raises(DataError) as err:
        load_corpus(small_cfg(small_dir))
    msg = str(err.value)
    assert "'valid'" in msg
    assert str(small_dir / "val.de") in msg and str(small_dir / "val.de.gz") in msg
    assert "\n" not in msg


def test_mismatched_line_counts(small_dir: Path) -> None:
    write_pairs(small_dir, "test", ["t1", "t2", "t3"], ["T1", "T2"])
    with pytest.raises(DataError) as err:
        load_corpus(small_cfg(small_dir))
    msg = str(err.value)
    assert f"{small_dir / 'test.en'} has 3 lines" in msg
    assert f"{small_dir / 'test.de'} has 2" in msg


@pytest.mark.parametrize("name", ["train.de", "train.de.gz"])
def test_invalid_utf8_names_file_and_line(small_dir: Path, name: str) -> None:
    (small_dir / "train.de").unlink()
    path = write(small_dir, name, b"eins\nzwei\ndr\xffei\n")
    with pytest.raises(DataError) as err:
        load_corpus(small_cfg(small_dir))
    assert str(err.value).startswith(f"{path}:3: not valid UTF-8")


def test_corrupt_gzip(small_dir: Path) -> None:
    (small_dir / "val.en.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"val\.en\.gz: cannot read"):
        load_corpus(small_cfg(small_dir))


def test_empty_pairs_dropped_from_train_and_counted(small_dir: Path, caplog) -> None:
    write_pairs(small_dir, "train", ["a", " ", "c", "d", ""], ["A", "B", "\t", "D", ""])
    with caplog.at_level(logging.INFO, logger="noamt.data.corpus"):
        corpus = load_corpus(small_cfg(small_dir))
    assert corpus["train"]["src"][:] == ["a", "d"]
    assert corpus["train"]["tgt"][:] == ["A", "D"]
    assert "dropped 3 of 5 training pairs" in caplog.text


def test_eval_splits_keep_empty_lines(small_dir: Path) -> None:
    write_pairs(small_dir, "test", ["t", "", "u"], ["T", "X", ""])
    corpus = load_corpus(small_cfg(small_dir))
    assert corpus["test"]["src"][:] == ["t", "", "u"]
    assert corpus["test"]["tgt"][:] == ["T", "X", ""]


def test_empty_training_set(small_dir: Path) -> None:
    write_pairs(small_dir, "train", ["", "x"], ["y", " "])
    with pytest.raises(DataError) as err:
        load_corpus(small_cfg(small_dir))
    msg = str(err.value)
    assert str(small_dir / "train.en") in msg and "training set is empty" in msg


def test_example_limits(small_dir: Path) -> None:
    corpus = load_corpus(small_cfg(small_dir, max_train_examples=2, max_eval_examples=1))
    assert corpus["train"]["src"][:] == ["a b", "c"]
    assert corpus["valid"]["src"][:] == ["v1"]
    assert corpus["test"]["src"][:] == ["t"]


def test_resolve_data_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOAMT_CACHE_DIR", str(tmp_path / "cache"))  # no fetched copy there
    monkeypatch.setenv("NOAMT_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(DataConfig(dir=str(tmp_path / "cfg"))) == tmp_path / "cfg"
    assert resolve_data_dir(DataConfig()) == tmp_path / "env"
    monkeypatch.delenv("NOAMT_DATA_DIR")
    assert resolve_data_dir(DataConfig()) is None


def test_without_a_folder_the_fetched_release_is_the_default(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOAMT_DATA_DIR", raising=False)
    monkeypatch.setenv("NOAMT_CACHE_DIR", str(tmp_path / "cache"))
    cfg = DataConfig(release="multi30k")
    fetched = tmp_path / "cache" / "data" / "multi30k"
    with pytest.raises(DataError) as err:
        load_corpus(cfg)
    assert str(err.value) == (
        f"no multi30k data here: run `noamt-data fetch multi30k` (it writes {fetched}), or set data.dir or "
        "$NOAMT_DATA_DIR, or read the hub copy with data.source=hub"
    )
    fetched.mkdir(parents=True)
    assert resolve_data_dir(cfg) == fetched
    monkeypatch.setenv("NOAMT_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(cfg) == tmp_path / "env"  # an explicit folder still wins


def test_source_files_without_folder_and_bad_source(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOAMT_DATA_DIR", raising=False)
    monkeypatch.setenv("NOAMT_CACHE_DIR", str(tmp_path))
    with pytest.raises(DataError, match="no data folder given"):
        load_corpus(DataConfig(source="files"))
    with pytest.raises(ValueError, match="data.source='web': must be one of auto, files, hub"):
        DataConfig(source="web")


def by_lang_columns() -> datasets.DatasetDict:
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"en": ["a", "", "b"], "de": ["A", "X", "B"]}),
            "validation": datasets.Dataset.from_dict({"en": ["v"], "de": ["V"]}),
            "test": datasets.Dataset.from_dict({"en": ["t", ""], "de": ["T", "E"]}),
        }
    )


def translation_column() -> datasets.DatasetDict:
    def make(pairs):
        return datasets.Dataset.from_dict({"translation": [{"en": s, "de": t} for s, t in pairs]})

    return datasets.DatasetDict(
        {
            "train": make([("a", "A"), ("", "X"), ("b", "B")]),
            "validation": make([("v", "V")]),
            "test": make([("t", "T"), ("", "E")]),
        }
    )


@pytest.mark.parametrize("make_hub", [by_lang_columns, translation_column])
def test_from_hub_dataset_layouts(make_hub) -> None:
    corpus = from_hub_dataset(make_hub(), DataConfig())
    assert list(corpus.keys()) == ["train", "valid", "test_2016_flickr"]  # the hub's "test" is the 2016 set
    assert corpus["train"]["src"][:] == ["a", "b"]
    assert corpus["train"]["tgt"][:] == ["A", "B"]
    assert corpus["valid"]["tgt"][:] == ["V"]
    assert corpus["test_2016_flickr"]["src"][:] == ["t", ""]


def test_from_hub_dataset_reversed_direction() -> None:
    corpus = from_hub_dataset(translation_column(), DataConfig(src_lang="de", tgt_lang="en"))
    assert corpus["valid"]["src"][:] == ["V"] and corpus["valid"]["tgt"][:] == ["v"]


def test_from_hub_dataset_errors() -> None:
    with pytest.raises(DataError, match=r"split 'validation' not found; available: train, test"):
        hub = by_lang_columns()
        del hub["validation"]
        from_hub_dataset(hub, DataConfig())
    with pytest.raises(DataError, match=r"expected columns 'en' and 'fr'"):
        from_hub_dataset(by_lang_columns(), DataConfig(tgt_lang="fr"))


def test_the_hub_is_read_with_source_hub_or_without_a_release_to_fetch(monkeypatch, tmp_path: Path) -> None:
    calls = []

    def fake_load_dataset(name, config):
        calls.append((name, config))
        return by_lang_columns()

    monkeypatch.delenv("NOAMT_DATA_DIR", raising=False)
    monkeypatch.setenv("NOAMT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(corpus_module.datasets, "load_dataset", fake_load_dataset)
    corpus = load_corpus(DataConfig(hub_config="cfg", source="hub"))
    load_corpus(DataConfig(hub_config="cfg", release=None))  # auto: no folder and nothing to fetch
    assert calls == [("bentrevett/multi30k", "cfg")] * 2
    assert corpus["train"].num_rows == 2


def test_real_multi30k(multi30k_dir: Path) -> None:
    corpus = load_corpus(DataConfig(dir=str(multi30k_dir)))
    sizes = {name: ds.num_rows for name, ds in corpus.items()}
    assert sizes == {
        "train": 29000,
        "valid": 1014,
        "test_2016_flickr": 1000,
        "test_2017_flickr": 1000,
        "test_2017_mscoco": 461,
        "test_2018_flickr": 1071,
    }
    first = corpus["train"][0]
    assert first["src"] == "Two young, White males are outside near many bushes."
    assert first["tgt"].startswith("Zwei junge weiße Männer")

    sliced = load_corpus(DataConfig(dir=str(multi30k_dir), max_train_examples=100, max_eval_examples=10))
    assert sliced["train"].num_rows == 100 and sliced["valid"].num_rows == 10
    assert sliced["train"]["tgt"][:] == corpus["train"]["tgt"][:100]


def test_tokenized_multi30k_config_reads_the_official_tok_files(multi30k_dir: Path) -> None:
    """data=multi30k_en_de_tok: tok/{split}.lc.norm.tok.{lang}[.gz], all official counts."""
    options = OmegaConf.load(CONFIGS / "data" / "multi30k_en_de_tok.yaml")
    cfg = DataConfig(**{**OmegaConf.to_container(options), "dir": str(multi30k_dir)})
    assert cfg.tokenized
    corpus = load_corpus(cfg)
    sizes = {name: ds.num_rows for name, ds in corpus.items()}
    assert sizes == {
        "train": 29000,
        "valid": 1014,
        "test_2016_flickr": 1000,
        "test_2017_flickr": 1000,
        "test_2017_mscoco": 461,
    }
    first = corpus["train"][0]
    assert first["src"] == "two young , white males are outside near many bushes ."
    assert first["tgt"].startswith("zwei junge weiße männer")


def test_file_pattern_with_an_unknown_field_names_the_key(small_dir: Path) -> None:
    with pytest.raises(DataError, match=r"data.file_pattern='\{split\}.\{language\}'"):
        load_corpus(DataConfig(dir=str(small_dir), file_pattern="{split}.{language}", test_splits=[]))
