"""No update waits for the device: every device-to-host read of training happens at a log,
validation or checkpoint point, and a NaN loss is still skipped, decided on the device.

On the CPU a TorchDispatchMode records every operator that reads a tensor's value on the host
(``aten._local_scalar_dense``, behind ``.item()``, ``float()``, ``int()`` and ``bool()``, and
``nonzero``, ``is_nonzero``, ``equal``, ``allclose``), and ``Tensor.tolist`` and ``Tensor.numpy``,
which read a CPU tensor without an operator, with the trainer's update and phase at that moment.
On CUDA, ``torch.cuda.set_sync_debug_mode("error")`` turns every synchronizing call outside
those points into an error.
"""

from __future__ import annotations

import math
import threading

import pytest
import torch
from helpers.tiny_trainer import tiny_trainer
from torch.utils._python_dispatch import TorchDispatchMode

from noamt.metrics import read_metrics
from noamt.optim import SCHEDULE_FREE
from noamt.trainer import Trainer

aten = torch.ops.aten
HOST_READS = {aten._local_scalar_dense, aten.nonzero, aten.is_nonzero, aten.equal, aten.allclose}
UPDATES = 20  # tiny_trainer's max_steps
# The trainer's methods that are the points where it may read the device; anything else it runs
# from the loop (train_step included) is phase "loop".
POINTS = {"_log_window": "log", "_validate_and_record": "validation", "save": "checkpoint", "_finish": "finish"}


class Phases:
    """The trainer's phase (one of POINTS' values, else "loop") as its methods run."""

    def __init__(self, trainer: Trainer, monkeypatch: pytest.MonkeyPatch, on_change=lambda phase: None):
        self.trainer, self.current, self.on_change = trainer, "loop", on_change
        for name, phase in POINTS.items():
            monkeypatch.setattr(trainer, name, self._entering(phase, getattr(trainer, name)))

    def _entering(self, phase: str, method):
        def run(*args, **kwargs):
            outer, self.current = self.current, phase
            self.on_change(phase)
            try:
                return method(*args, **kwargs)
            finally:
                self.current = outer
                self.on_change(outer)

        return run


class HostReads(TorchDispatchMode):
    """Every host read of a tensor value in this thread, as (update, phase, operator): the
    operators of HOST_READS, and ``Tensor.tolist`` and ``Tensor.numpy``, which read a CPU
    tensor's memory without dispatching an operator (on CUDA they copy it to the host first)."""

    def __init__(self, phases: Phases, monkeypatch: pytest.MonkeyPatch):
        super().__init__()
        self.phases, self.reads, self.thread = phases, [], threading.get_ident()
        for name in ("tolist", "numpy"):
            monkeypatch.setattr(torch.Tensor, name, self._recording(name, getattr(torch.Tensor, name)))

    def _record(self, name: str) -> None:
        if threading.get_ident() == self.thread:
            self.reads.append((self.phases.trainer.step, self.phases.current, name))

    def _recording(self, name: str, method):
        def read(tensor, *args, **kwargs):
            self._record(name)
            return method(tensor, *args, **kwargs)

        return read

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in HOST_READS:
            self._record(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def train_recording(trainer: Trainer, monkeypatch) -> list[tuple[int, str, str]]:
    with HostReads(Phases(trainer, monkeypatch), monkeypatch) as recorder:
        trainer.train()
    return recorder.reads


def test_an_update_reads_nothing_from_the_device(tmp_path, monkeypatch):
    """20 updates with Adam, clipping, a log every 5, a validation and a checkpoint every 10:
    the host reads values only at those points. A log point reads the skip flags and the
    window's sums (two reads), a validation its sums and the widths of the batches it builds
    (host tensors), a checkpoint every tensor it writes (its checksum). The training batches are
    built by the prefetch thread, which the recorder does not follow: host tensors too."""
    trainer = tiny_trainer(tmp_path)
    reads = train_recording(trainer, monkeypatch)
    assert trainer.step == UPDATES
    assert [r for r in reads if r[1] == "loop"] == []
    assert {(step, phase) for step, phase, _ in reads} == {
        *((step, "log") for step in (5, 10, 15, 20)),
        *((step, "validation") for step in (0, 10, 20)),
        *((step, "checkpoint") for step in (10, 20)),
    }
    assert [op for _, phase, op in reads if phase == "log"] == ["tolist"] * 8


def test_schedule_free_adamw_reads_its_skip_flag_once_per_update(tmp_path, monkeypatch):
    """Its step cannot be skipped on the device (host-side step count and averaging weights):
    one read of the flag per update, the documented exception, and no other."""
    trainer = tiny_trainer(tmp_path, optimizer=SCHEDULE_FREE)
    reads = train_recording(trainer, monkeypatch)
    in_loop = [(step, op) for step, phase, op in reads if phase == "loop"]
    assert in_loop == [(step, "_local_scalar_dense") for step in range(1, UPDATES + 1)]


def nan_at(trainer: Trainer, monkeypatch, updates: set[int]) -> None:
    """The loss of the given updates becomes NaN (and so do their gradients)."""
    losses = trainer.target_losses

    def poisoned(model, batch):
        result = losses(model, batch)
        if model.training and trainer.step + 1 in updates:
            return result._replace(loss=result.loss * math.nan)
        return result

    monkeypatch.setattr(trainer, "target_losses", poisoned)


def snapshot(trainer: Trainer) -> tuple[dict, dict]:
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    moments = {i: {k: v.clone() for k, v in s.items()} for i, s in enumerate(trainer.optimizer.state.values())}
    return weights, moments


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, dict):
            assert_same(value, b[key])
        else:
            assert torch.equal(value, b[key]), key


@pytest.mark.parametrize("fp16_scaler", [False, True], ids=["found_inf", "grad_scaler"])
def test_a_nan_update_is_skipped_on_the_device_and_still_counts(tmp_path, monkeypatch, fp16_scaler):
    """Updates 7 and 8 have a NaN loss: the weights and Adam's state (its step count included)
    after update 8 are those after update 6, while k and the schedule move on; the skips are
    recorded at the log point of update 10, and no update reads the device for it. With fp16's
    GradScaler (here on the CPU) the NaN reaches it through a gradient: it skips and halves its
    scale."""
    trainer = tiny_trainer(tmp_path, max_nonfinite_updates=3)
    if fp16_scaler:
        trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    nan_at(trainer, monkeypatch, {7, 8})
    states = {}
    step = trainer.train_step

    def kept(batches):
        out = step(batches)
        states[trainer.step] = snapshot(trainer)
        return out

    monkeypatch.setattr(trainer, "train_step", kept)
    reads = train_recording(trainer, monkeypatch)
    assert [r for r in reads if r[1] == "loop"] == []
    for a, b in zip(states[6], states[8], strict=True):
        assert_same(a, b)
    assert any(not torch.equal(v, states[9][0][k]) for k, v in states[8][0].items())
    adam_steps = {float(s["step"]) for s in trainer.optimizer.state.values()}
    assert trainer.step == UPDATES and adam_steps == {UPDATES - 2}
    if fp16_scaler:
        assert trainer.scaler.get_scale() < 2.0**10
    records = read_metrics(tmp_path / "metrics.jsonl")
    skips = [(r["step"], r["in_a_row"], r["total"]) for r in records if r["kind"] == "skip"]
    assert skips == [(7, 1, 1), (8, 2, 2)] and trainer.skipped_updates == 2
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["nll_loss"]) for r in train)
    assert records.index(next(r for r in records if r["kind"] == "skip")) < records.index(train[1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_update_does_not_synchronize(tmp_path, monkeypatch):
    """The same run on CUDA under ``set_sync_debug_mode("error")`` outside the log, validation
    and checkpoint points: a synchronizing call anywhere else (the prefetch thread's pinned
    copies included) is an error."""
    trainer = tiny_trainer(tmp_path, device="cuda")
    nan_at(trainer, monkeypatch, {7})

    def debug_mode(phase: str) -> None:
        torch.cuda.set_sync_debug_mode("error" if phase == "loop" else "default")

    Phases(trainer, monkeypatch, on_change=debug_mode)
    debug_mode("loop")
    try:
        trainer.train()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.step == UPDATES and trainer.skipped_updates == 1
