"""Compare the 60-update runs of the study's jobs trained by two versions of noamt: every
training and validation record (clock fields aside) and every tensor of checkpoint_last.pt
(model and optimizer state). Usage: python compare.py <dir-a> <dir-b>"""

import sys
from pathlib import Path

import torch

from noamt_study.retrain import compare_trainings


def tensors(state, prefix=""):
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from tensors(value, f"{prefix}/{key}")
    elif isinstance(state, list | tuple):
        for i, value in enumerate(state):
            yield from tensors(value, f"{prefix}/{i}")


a, b = Path(sys.argv[1]), Path(sys.argv[2])
records = compare_trainings(a / "metrics.jsonl", b / "metrics.jsonl")
print(f"records: {records}")
last = "checkpoints/checkpoint_last.pt"
first, second = (torch.load(d / last, map_location="cpu", weights_only=True) for d in (a, b))
for part in ("model", "optimizer"):
    x, y = dict(tensors(first[part])), dict(tensors(second[part]))
    same = x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    print(f"{part}: {len(x)} tensors, bit for bit equal: {same}")
