"""noamt: an encoder-decoder Transformer for machine translation, trained with Adam and the
Noam learning-rate schedule, with the constant, cosine and other schedules to compare against."""

__version__ = "0.1.0"
