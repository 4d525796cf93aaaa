"""Trained models in formats made for use rather than for training: ``release`` (weights as
safetensors beside JSON, which loading never executes) and ``ctranslate2`` (a CTranslate2 model
directory). ``release.py`` and ``card.py`` describe the release folder, ``ctranslate2_spec.py``
fills CTranslate2's model specification, ``check.py`` compares an export's greedy output with
noamt's, and ``exporter.py`` writes and checks an export of a checkpoint."""
