"""One process of a training job as ``srun`` starts it: ``python slurm_rank.py OUT OVERRIDES...``
runs noamt-train with OVERRIDES, then saves to OUT this process's parameters after training and
the source token ids of every batch it trained on (one list of rows per micro-batch)."""

from __future__ import annotations

import sys

import torch

from noamt import pipeline
from noamt.cli import train


def main() -> None:
    out, overrides = sys.argv[1], sys.argv[2:]
    models, batches = [], []
    build_model = pipeline.build_model

    def record_training_batch(module, inputs):
        if module.training:
            batches.append(inputs[0].tolist())

    def build_and_watch(*args, **kwargs):
        model = build_model(*args, **kwargs)
        model.register_forward_pre_hook(record_training_batch)
        models.append(model)
        return model

    pipeline.build_model = build_and_watch
    sys.argv = [sys.argv[0], *overrides]
    train.main()
    torch.save({"parameters": models[0].state_dict(), "batches": batches}, out)


if __name__ == "__main__":
    main()
