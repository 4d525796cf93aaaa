"""The speed work keeps training what it was: the fast parts against PyTorch's own.

noamt trains with its CPU dropout (noamt.ops.dropout) and its fused output projection and
label-smoothed loss (noamt.ops.cross_entropy). Swapping in ``torch.nn.Dropout`` and ``F.linear`` +
``F.cross_entropy`` must give, for the same
seed and batches, a run whose validation loss after a fixed number of updates lies within the
spread that changing the seed alone causes.
"""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

import noamt.model
from noamt import pipeline, schedules
from noamt.metrics import read_metrics

pytestmark = pytest.mark.slow  # end-to-end: trains, or runs the commands in subprocesses

UPDATES = 100
# Measured on this run (pre-norm, clipping, a peak lr of 1.1e-2 after 40 updates; validation loss
# falls from 7.5 to about 5.0 in 100 updates): the two implementations differ by 0.003 to 0.025
# nats at seeds 3, 4 and 5, the seeds themselves spread the loss over 0.12, and turning dropout
# off moves it by 0.11. The tolerance sits between the first and the last.
TOLERANCE = 0.06


def torch_token_losses(hidden, weight, target, epsilon):
    logits = F.linear(hidden, weight)
    smoothed = F.cross_entropy(logits, target, label_smoothing=epsilon, reduction="sum")
    return smoothed, F.cross_entropy(logits.detach(), target, reduction="sum")


def final_validation_loss(cfg, run_dir) -> float:
    pipeline.train(cfg, run_dir, resolved_config=dataclasses.asdict(cfg))
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "valid"][-1]["loss"]


@pytest.mark.parametrize("seed", [3, 4])
def test_fast_dropout_and_fused_loss_train_like_pytorchs(small_run, tmp_path, monkeypatch, seed):
    cfg = small_run(max_steps=UPDATES, val_interval=UPDATES, save_interval=UPDATES, seed=seed, clip_norm=1.0)
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, pre_norm=True),
        schedule=schedules.NoamConfig(d_model=64, warmup_steps=40, factor=0.3),
    )
    ours = final_validation_loss(cfg, tmp_path / "noamt")
    monkeypatch.setattr(noamt.model, "Dropout", torch.nn.Dropout)
    monkeypatch.setattr(noamt.model, "projected_token_losses", torch_token_losses)
    reference = final_validation_loss(cfg, tmp_path / "torch")
    assert abs(ours - reference) < TOLERANCE, (ours, reference)
