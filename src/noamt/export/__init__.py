"""Trained models in formats made for use rather than for training: ``release`` (weights as
safetensors beside JSON, which loading never executes), ``ctranslate2`` (a CTranslate2 model
directory) and ``transformers`` (a Hugging Face transformers Marian model and tokenizer).
``release.py`` and ``card.py`` describe the release folder, ``ctranslate2_spec.py`` fills
CTranslate2's model specification, ``marian.py`` maps the model onto transformers' Marian and
``transformers_folder.py`` writes it with its tokenizer, and ``check.py`` compares an export's
greedy output with noamt's. The writers and readers only: :mod:`noamt.inference` reads a release,
:mod:`noamt.engines` converts and opens the other two, and :mod:`noamt.exporter` writes and
checks an export of a checkpoint."""
