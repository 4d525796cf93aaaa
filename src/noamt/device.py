"""Device manager: the one place that decides where and how the model runs.

It picks the device (CUDA, then Apple MPS, then CPU for ``auto``), joins a ``torchrun`` process
group when one is launched, seeds every random number generator, sets the CPU thread count, and
hands out the autocast context, the gradient scaler and the DDP / ``torch.compile`` wrapping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass
class DeviceConfig:
    """``device``: auto | cpu | cuda | mps. ``precision``: fp32 | bf16 | fp16 (autocast on CUDA)."""

    device: str = "auto"
    """auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps."""
    precision: str = "fp32"
    """fp32, bf16 or fp16 (autocast on CUDA)."""
    num_threads: int = 0
    """CPU threads for torch (0: torch's default, one per core)."""
    compile: bool = False
    """torch.compile the model."""
    compile_mode: str = "default"
    """torch.compile mode: default, reduce-overhead (CUDA graphs: launch overhead of small models) or max-autotune."""
    tf32: bool = True
    """TF32 matmuls on Ampere and newer GPUs."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms."""


def resolve_device(name: str) -> torch.device:
    """Map ``auto|cpu|cuda|mps`` (or ``cuda:N``) to a device, failing clearly if it is absent."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device.device={name} but CUDA is not available (use device=auto or device=cpu)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device.device=mps but MPS is not available (use device=auto or device=cpu)")
    if name.split(":")[0] not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"device.device={name!r}: expected auto, cpu, cuda or mps")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python's, torch's CPU and every CUDA generator."""
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def rng_state() -> dict:
    """Every generator's state, for checkpoints (resumed runs draw the same dropout masks)."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


class DeviceManager:
    """Device, precision and process group of one training process."""

    def __init__(self, cfg: DeviceConfig):
        if cfg.precision not in PRECISIONS:
            raise ValueError(f"device.precision={cfg.precision!r}: expected one of {sorted(PRECISIONS)}")
        if cfg.compile_mode not in COMPILE_MODES:
            raise ValueError(f"device.compile_mode={cfg.compile_mode!r}: expected one of {list(COMPILE_MODES)}")
        if cfg.num_threads < 0:
            raise ValueError(f"device.num_threads={cfg.num_threads}: must be at least 0 (0 keeps torch's default)")
        self.cfg = cfg
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.dtype = PRECISIONS[cfg.precision]
        if self.device.type == "cpu" and self.dtype != torch.float32:
            log.warning(
                "device.precision=%s on CPU: autocast is disabled, training runs in fp32",
                cfg.precision,
            )
            self.dtype = torch.float32

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        threads = f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        ddp = f", rank {self.rank}/{self.world_size}" if self.distributed else ""
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else self.device.type
        return f"{name} ({self.device}), {self.cfg.precision}{threads}{ddp}"

    def seed(self, seed: int) -> None:
        """Seed every generator; ranks get different streams (dropout) from one base seed."""
        seed_everything(seed + self.rank)

    def autocast(self):
        """Mixed-precision context for forward and loss (a no-op in fp32)."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Loss scaling, enabled only for fp16 (bf16 and fp32 do not need it)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    def wrap(self, model: nn.Module) -> nn.Module:
        """Compile and/or wrap in DistributedDataParallel; checkpoints keep using the bare module."""
        if self.cfg.compile:
            model = torch.compile(model, mode=self.cfg.compile_mode, dynamic=True)
        if self.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return model

    def all_reduce_sum(self, value: float) -> float:
        """Sum a number over all processes (itself when not distributed)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.item()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def device_manager(cfg: DeviceConfig) -> DeviceManager:
    """The device manager for ``device=...``; an absent CUDA or MPS device is a one-line ValueError."""
    try:
        return DeviceManager(cfg)
    except RuntimeError as err:
        raise ValueError(str(err)) from err
