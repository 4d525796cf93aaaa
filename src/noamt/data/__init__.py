"""Data pipeline: parallel text corpora, the joint BPE tokenizer, token-budget batches, and their
prefetching off the training step's critical path."""

from noamt.data.batching import Batch, EncodedSplit, TokenBudgetBatches, collate, endless_batches, filter_pairs
from noamt.data.corpus import (
    DataConfig,
    DataError,
    decode_lines,
    from_hub_dataset,
    load_corpus,
    read_lines,
    resolve_data_dir,
)
from noamt.data.prefetch import Prefetcher
from noamt.data.tokenizer import (
    BOS,
    EOS,
    PAD,
    UNK,
    Tokenizer,
    TokenizerConfig,
    load_or_train_tokenizer,
    train_tokenizer,
)

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "UNK",
    "Batch",
    "DataConfig",
    "DataError",
    "EncodedSplit",
    "Prefetcher",
    "TokenBudgetBatches",
    "Tokenizer",
    "TokenizerConfig",
    "collate",
    "endless_batches",
    "filter_pairs",
    "from_hub_dataset",
    "load_corpus",
    "load_or_train_tokenizer",
    "decode_lines",
    "read_lines",
    "resolve_data_dir",
    "train_tokenizer",
]
