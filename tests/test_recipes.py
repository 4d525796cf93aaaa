"""The published recipes (experiment=iwslt14_de_en and wmt14_en_de_base): their settings against
their sources, the data layouts they read, and a few updates of IWSLT'14 on a folder in the
layout of fairseq's prepare-iwslt14.sh."""

import logging

import datasets
import pytest
from helpers.toy_corpus import write_toy_corpus
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from noamt import pipeline
from noamt.cli.config import register_configs, to_train_config
from noamt.data import DataConfig, load_corpus


def recipe(*overrides: str):
    register_configs()
    with initialize_config_module(config_module="noamt.configs", version_base=None):
        cfg = compose(config_name="train", overrides=list(overrides))
    return cfg, to_train_config(cfg).resolved()


def test_iwslt14_de_en_states_fairseqs_transformer_iwslt_de_en():
    _, cfg = recipe("experiment=iwslt14_de_en")
    m, o, s, t = cfg.model, cfg.optim, cfg.schedule, cfg.trainer
    assert (m.encoder_layers, m.decoder_layers, m.d_model, m.d_ff, m.n_heads) == (6, 6, 512, 1024, 4)
    assert not m.pre_norm and not m.share_embeddings  # tied decoder input and output, the source its own
    assert (m.dropout, m.attention_dropout, m.activation_dropout) == (0.3, 0.0, 0.0)
    assert (o.name, tuple(o.betas), o.eps, o.weight_decay) == ("adamw", (0.9, 0.98), 1e-8, 1e-4)
    assert (s.name, s.peak_lr, s.warmup_steps, s.peak_step) == ("inverse_sqrt", 5e-4, 4000, 4000)
    assert (t.label_smoothing, t.clip_norm, t.max_tokens * t.update_freq) == (0.1, 0.0, 4096)
    assert t.val_every_epoch and t.save_every_epoch and t.best_metric == "bleu"
    d = cfg.data
    assert (d.src_lang, d.tgt_lang, d.file_pattern, d.valid_split, d.test_splits) == (
        "de",
        "en",
        "tmp/{split}.{lang}",
        "valid",
        ["test"],
    )
    assert d.tokenized and cfg.tokenizer.vocab_size == 10000


def test_wmt14_en_de_base_states_the_transformer_base():
    _, cfg = recipe("experiment=wmt14_en_de_base")
    m, o, s, t = cfg.model, cfg.optim, cfg.schedule, cfg.trainer
    assert (m.encoder_layers, m.decoder_layers, m.d_model, m.d_ff, m.n_heads) == (6, 6, 512, 2048, 8)
    assert not m.pre_norm and m.share_embeddings and m.dropout == 0.1
    assert (o.name, tuple(o.betas), o.eps, o.weight_decay) == ("adam", (0.9, 0.98), 1e-9, 0.0)
    assert (s.name, s.warmup_steps, s.d_model, s.factor) == ("noam", 4000, 512, 1.0)
    assert s.peak_lr == pytest.approx(512**-0.5 * 4000**-0.5)  # lrate at the end of warmup
    assert t.label_smoothing == 0.1 and t.max_steps == 100_000 and t.keep_last == 5
    assert 24_000 <= t.max_tokens * t.update_freq <= 25_000  # about 25k target tokens per update
    d = cfg.data
    assert (d.src_lang, d.tgt_lang, d.hub_name, d.hub_config) == ("en", "de", "wmt14", "de-en")
    assert (d.valid_split, d.test_splits) == ("newstest2013", ["newstest2014"])
    assert cfg.tokenizer.vocab_size == 37000


def write_hub_copy(folder, splits):
    """A dataset in the hub's layout: a README whose metadata names configuration de-en and its
    parquet files, each row a {"de": ..., "en": ...} translation (as the hub's wmt14)."""
    lines = ["---", "configs:", "- config_name: de-en", "  data_files:"]
    for split, pairs in splits.items():
        rows = [{"translation": {"de": de, "en": en}} for en, de in pairs]
        datasets.Dataset.from_list(rows).to_parquet(str(folder / "de-en" / f"{split}-00000-of-00001.parquet"))
        lines += [f"  - split: {split}", f"    path: de-en/{split}-*.parquet"]
    (folder / "README.md").write_text("\n".join([*lines, "---", ""]), encoding="utf-8")


def test_wmt14_en_de_reads_the_hub_layout_en_to_de(tmp_path, monkeypatch):
    monkeypatch.delenv("NOAMT_DATA_DIR", raising=False)
    hub = tmp_path / "wmt14"
    (hub / "de-en").mkdir(parents=True)
    splits = {
        "train": [("A dog runs .", "Ein Hund läuft ."), ("Two cats sleep .", "Zwei Katzen schlafen .")],
        "validation": [("Hello .", "Hallo .")],
        "test": [("The news .", "Die Nachrichten ."), ("Good night .", "Gute Nacht .")],
    }
    write_hub_copy(hub, splits)
    raw, _ = recipe("experiment=wmt14_en_de_base", f"data.hub_name={hub}")
    corpus = load_corpus(DataConfig(**OmegaConf.to_container(raw.data, resolve=True)))
    assert list(corpus) == ["train", "valid", "newstest2014"]
    assert list(corpus["newstest2014"]["src"]) == ["The news .", "Good night ."]
    assert list(corpus["newstest2014"]["tgt"]) == ["Die Nachrichten .", "Gute Nacht ."]
    assert list(corpus["valid"]["tgt"]) == ["Hallo ."] and len(corpus["train"]) == 2


def write_prepared_iwslt14(folder):
    """The toy corpus in the layout prepare-iwslt14.sh writes before BPE: tmp/{train,valid,test}.{de,en},
    lowercased and tokenized (the toy text is space-separated already)."""
    toy = write_toy_corpus(folder / "toy")
    (folder / "tmp").mkdir()
    for ours, theirs in {"train": "train", "val": "valid", "test_2016_flickr": "test"}.items():
        for lang in ("de", "en"):
            text = (toy / f"{ours}.{lang}").read_text(encoding="utf-8").lower()
            (folder / "tmp" / f"{theirs}.{lang}").write_text(text, encoding="utf-8")
    return folder


@pytest.mark.slow
def test_a_few_updates_of_the_iwslt14_recipe_on_the_prepared_layout(tmp_path, caplog):
    """The recipe, shrunk to a 1+1-layer model, trains on the layout and logs its cost: the
    updates and tokens per update before it starts, the time per update after the first ten."""
    data = write_prepared_iwslt14(tmp_path / "iwslt14.tokenized.de-en")
    raw, cfg = recipe(
        "experiment=iwslt14_de_en",
        f"data.dir={data}",
        "data.max_train_examples=200",
        "data.max_eval_examples=20",
        "tokenizer.vocab_size=400",
        f"tokenizer.cache_dir={tmp_path / 'cache'}",
        "model.encoder_layers=1",
        "model.decoder_layers=1",
        "model.d_model=32",
        "model.d_ff=64",
        "model.n_heads=2",
        "trainer.max_steps=12",
        "trainer.max_tokens=512",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "device=cpu",
    )
    with caplog.at_level(logging.INFO, logger="noamt"):
        result = pipeline.train(cfg, tmp_path / "run", OmegaConf.to_container(raw, resolve=True))
    assert result["step"] == 12
    assert "training 12 updates (from update 0 to 12) of at most 512 tokens each" in caplog.text
    assert "s per update: about" in caplog.text  # measured over the first 10 updates
    assert (tmp_path / "run" / "checkpoints" / "checkpoint_last.pt").is_file()
