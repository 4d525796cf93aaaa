"""A small synthetic English-German corpus in the Multi30k layout, for tests that need data
but not Multi30k itself: ``{split}.en`` / ``{split}.de`` for train, val and the four test sets.

Sentences follow one template, "<det> <adj> <noun> <verb> <prep> the <place> .", translated
word by word with agreement-free German, so a model can learn it in a few hundred updates and
BPE has real words to merge. Like the release, ``tok/{split}.lc.norm.tok.{lang}`` holds the
lowercased tokenized text of every split but test_2018_flickr (words and the final period are
already space-separated, so tokenizing is lowercasing).
"""

from __future__ import annotations

import random
from pathlib import Path

NO_TOKENIZED_TEXT = ("test_2018_flickr",)
SPLITS = {
    "train": 2000,
    "val": 100,
    "test_2016_flickr": 60,
    "test_2017_flickr": 60,
    "test_2017_mscoco": 60,
    "test_2018_flickr": 60,
}
DETERMINERS = [("a", "ein"), ("one", "ein"), ("the", "der")]
ADJECTIVES = [
    ("young", "junger"),
    ("tall", "großer"),
    ("happy", "fröhlicher"),
    ("old", "alter"),
    ("small", "kleiner"),
    ("tired", "müder"),
]
NOUNS = [
    ("man", "Mann"),
    ("boy", "Junge"),
    ("dog", "Hund"),
    ("worker", "Arbeiter"),
    ("cyclist", "Radfahrer"),
    ("musician", "Musiker"),
    ("child", "Kind"),
]
VERBS = [
    ("runs", "läuft"),
    ("sits", "sitzt"),
    ("stands", "steht"),
    ("sleeps", "schläft"),
    ("waits", "wartet"),
    ("plays", "spielt"),
]
PREPOSITIONS = [("in", "in"), ("near", "nahe"), ("behind", "hinter"), ("beside", "neben")]
PLACES = [
    ("park", "Park"),
    ("street", "Straße"),
    ("house", "Haus"),
    ("river", "Fluss"),
    ("market", "Markt"),
    ("station", "Bahnhof"),
    ("garden", "Garten"),
]


def sentence_pair(rng: random.Random) -> tuple[str, str]:
    parts = [rng.choice(words) for words in (DETERMINERS, ADJECTIVES, NOUNS, VERBS, PREPOSITIONS)]
    place = rng.choice(PLACES)
    en = " ".join(p[0] for p in parts) + f" the {place[0]} ."
    de = " ".join(p[1] for p in parts) + f" dem {place[1]} ."
    return en[0].upper() + en[1:], de[0].upper() + de[1:]


def write_toy_corpus(folder: Path, seed: int = 0) -> Path:
    """Write every split of :data:`SPLITS` to ``folder`` (and its tokenized text to ``folder/tok``)."""
    (folder / "tok").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, size in SPLITS.items():
        pairs = [sentence_pair(rng) for _ in range(size)]
        for lang, column in (("en", 0), ("de", 1)):
            text = "".join(p[column] + "\n" for p in pairs)
            (folder / f"{split}.{lang}").write_text(text, encoding="utf-8")
            if split not in NO_TOKENIZED_TEXT:
                (folder / "tok" / f"{split}.lc.norm.tok.{lang}").write_text(text.lower(), encoding="utf-8")
    return folder
