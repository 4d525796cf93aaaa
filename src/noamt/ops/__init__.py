"""Kernels the model runs on: the fused output projection and label-smoothed cross-entropy, and
a dropout whose mask is cheap on a CPU. Each module states its prior art and where it differs."""

from noamt.ops.cross_entropy import projected_label_smoothed_cross_entropy, projected_token_losses
from noamt.ops.dropout import Dropout, dropout

__all__ = ["Dropout", "dropout", "projected_label_smoothed_cross_entropy", "projected_token_losses"]
