"""Device manager: the one place that decides where and how the model runs.

It picks the device (CUDA, then Apple MPS, then CPU for ``auto``), joins the process group of a
job launched by ``torchrun`` or by SLURM's ``srun`` (``DistributedEnv``), seeds every random
number generator, sets the CPU thread count, and hands out the autocast context, the gradient
scaler and the DDP / ``torch.compile`` wrapping. On a CPU without ``device.num_threads`` it fits
the thread pool to the cores other processes leave free (:mod:`noamt.cpu_threads`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import torch
import torch.distributed as dist
from torch import nn

from noamt.bounds import at_least, at_most, one_of, require
from noamt.cpu_threads import FreeCoreThreads

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
DEVICE_NAME = re.compile(r"auto|(cpu|cuda|mps)(:\d+)?")  # what device.device may be
SLURM_PORT_BASE = 15000  # a SLURM job without MASTER_PORT meets on 15000 + job id % 15000,
SLURM_PORT_SPAN = 15000  # below Linux's ephemeral ports (32768 and up)


MAX_THREADS = 1024
"""The most CPU threads device.num_threads may ask for: more than the largest machines have
cores; each thread is started (and holds its stack) at the first parallel operation."""


@dataclass
class DeviceConfig:
    """``device``: auto | cpu | cuda | mps. ``precision``: fp32 | bf16 | fp16 (autocast on CUDA)."""

    device: str = "auto"
    """auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps."""
    precision: str = "fp32"
    """fp32, bf16 or fp16 (autocast on CUDA)."""
    num_threads: int = 0
    """CPU threads for torch: 0 (default) one per core that other processes leave free, measured
    again as the run goes (noamt.cpu_threads; on Linux, else torch's default); N: exactly N, at
    most 1024 (runs repeat bit for bit only at a fixed count)."""
    compile: bool = False
    """torch.compile the model."""
    compile_mode: str = "default"
    """torch.compile mode: default, reduce-overhead (CUDA graphs: launch overhead of small models) or max-autotune."""
    cuda_graphs: bool = False
    """Compile (as device.compile) and replay each batch shape's step as a CUDA graph: compile_mode
    default becomes reduce-overhead (max-autotune records CUDA graphs too). CUDA only; a graph is
    recorded per shape, so pair it with trainer.pad_to_buckets."""
    tf32: bool = True
    """TF32 matmuls on Ampere and newer GPUs."""
    deterministic: bool = False
    """torch.use_deterministic_algorithms."""

    def __post_init__(self) -> None:
        """Check every field that has bounds; one-line ValueErrors naming the key (whether the
        device is there is known only once it is opened: :func:`resolve_device`)."""
        named = isinstance(self.device, str) and DEVICE_NAME.fullmatch(self.device) is not None
        require("device.device", self.device, named, "auto, cpu, cuda, cuda:N or mps")
        one_of("device.precision", self.precision, PRECISIONS)
        at_least("device.num_threads", self.num_threads, 0, " (0: one per free core)")
        at_most("device.num_threads", self.num_threads, MAX_THREADS)
        one_of("device.compile_mode", self.compile_mode, COMPILE_MODES)
        for key in ("compile", "cuda_graphs", "tf32", "deterministic"):
            require(f"device.{key}", getattr(self, key), isinstance(getattr(self, key), bool), "true or false")


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
    return torch.device(name)


@dataclass(frozen=True)
class DistributedEnv:
    """Where one process sits in its training job, as its launcher's environment states it."""

    launcher: str = "none"
    """none (one process), torchrun or slurm."""
    rank: int = 0
    """This process's rank among all processes of the job."""
    world_size: int = 1
    """The number of processes of the job."""
    local_rank: int = 0
    """This process's rank among the processes on its node."""
    cuda_index: int = 0
    """The CUDA device this process trains on, among the devices it can see."""
    master_addr: str | None = None
    """The host rank 0 listens on (slurm; torchrun's rendezvous reads its own variables)."""
    master_port: int | None = None
    """The port rank 0 listens on (slurm)."""

    @property
    def init_method(self) -> str:
        """``torch.distributed.init_process_group``'s rendezvous: torchrun's variables, or rank 0's address."""
        if self.launcher == "slurm":
            return f"tcp://{self.master_addr}:{self.master_port}"
        return "env://"


def read_distributed_env(environ: Mapping[str, str]) -> DistributedEnv:
    """The job layout from ``environ``: torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` when
    present, else ``srun``'s ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``, else one process.

    Under SLURM rank 0's host is ``MASTER_ADDR`` or the first host of ``SLURM_STEP_NODELIST``
    (``SLURM_NODELIST``), its port ``MASTER_PORT`` or ``SLURM_PORT_BASE + SLURM_JOB_ID %
    SLURM_PORT_SPAN``, the same for every task of the job. A process that sees exactly one CUDA
    device (``CUDA_VISIBLE_DEVICES``) trains on it; otherwise on the device of its local rank.
    """
    if "RANK" in environ and "WORLD_SIZE" in environ:
        launcher, names = "torchrun", ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    elif "SLURM_PROCID" in environ and "SLURM_NTASKS" in environ:
        launcher, names = "slurm", ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
    else:
        return DistributedEnv()
    rank, world_size = _int_variable(environ, names[0]), _int_variable(environ, names[1])
    local_rank = _int_variable(environ, names[2]) if names[2] in environ else 0
    if not 0 <= rank < world_size:
        raise ValueError(f"{names[0]}={rank}: expected a rank from 0 to {names[1]}-1={world_size - 1}")
    visible = [d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    cuda_index = 0 if len(visible) == 1 else local_rank
    env = DistributedEnv(launcher, rank, world_size, local_rank, cuda_index)
    if launcher == "slurm" and world_size > 1:
        return replace(env, master_addr=_slurm_master_addr(environ), master_port=_slurm_port(environ))
    return env


def _int_variable(environ: Mapping[str, str], name: str) -> int:
    value = environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected an integer") from None


def _slurm_master_addr(environ: Mapping[str, str]) -> str:
    if environ.get("MASTER_ADDR"):
        return environ["MASTER_ADDR"]
    for name in ("SLURM_STEP_NODELIST", "SLURM_NODELIST"):
        if environ.get(name):
            return expand_hostlist(environ[name])[0]
    raise ValueError("SLURM_STEP_NODELIST, SLURM_NODELIST or MASTER_ADDR is needed to find rank 0's host")


def _slurm_port(environ: Mapping[str, str]) -> int:
    if "MASTER_PORT" in environ:
        return _int_variable(environ, "MASTER_PORT")
    if "SLURM_JOB_ID" in environ:
        return SLURM_PORT_BASE + _int_variable(environ, "SLURM_JOB_ID") % SLURM_PORT_SPAN
    raise ValueError("MASTER_PORT or SLURM_JOB_ID is needed to choose rank 0's port")


def expand_hostlist(hostlist: str) -> list[str]:
    """The host names of a SLURM node list, in order: ``node[01-03,07],gpu5`` gives node01,
    node02, node03, node07 and gpu5. Numbers keep their zero padding; a name with several
    bracketed lists gives every combination (``r[1-2]n[1-2]``: r1n1, r1n2, r2n1, r2n2)."""
    names, depth, start = [], 0, 0
    for i, char in enumerate(hostlist + ","):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            raise ValueError(f"SLURM node list {hostlist!r}: unbalanced brackets")
        if char == "," and depth == 0:
            names.append(hostlist[start:i].strip())
            start = i + 1
    if depth or not all(names):
        raise ValueError(f"SLURM node list {hostlist!r}: expected names such as node[01-03,07],gpu5")
    return [host for name in names for host in _expand_hostname(name, hostlist)]


def _expand_hostname(name: str, hostlist: str) -> list[str]:
    match = re.fullmatch(r"([^\[\]]*)\[([^\[\]]*)\](.*)", name)
    if match is None:
        if "[" in name or "]" in name:
            raise ValueError(f"SLURM node list {hostlist!r}: unbalanced brackets")
        return [name]
    prefix, ranges, rest = match.groups()
    tails = _expand_hostname(rest, hostlist)
    return [f"{prefix}{number}{tail}" for number in _expand_ranges(ranges, hostlist) for tail in tails]


def _expand_ranges(ranges: str, hostlist: str) -> list[str]:
    numbers = []
    for part in ranges.split(","):
        first, _, last = part.strip().partition("-")
        if not first.isdigit() or not (last or first).isdigit() or int(last or first) < int(first):
            raise ValueError(f"SLURM node list {hostlist!r}: {part!r} is not a number or a range a-b")
        numbers += [str(n).zfill(len(first)) for n in range(int(first), int(last or first) + 1)]
    return numbers


def host_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU model, architecture and torch build a run trains on, e.g. ``AMD EPYC 7B13 (x86_64),
    torch 2.13.0+cpu``. fp32 results repeat bit for bit only on one kind of host: another CPU
    family or torch build may run other kernels, whose sums round differently."""
    model = ""
    with contextlib.suppress(OSError):
        lines = cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    return f"{model or platform.processor() or 'unknown CPU'} ({platform.machine()}), torch {torch.__version__}"


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
        self.cfg = cfg
        self.env = read_distributed_env(os.environ)
        self.world_size, self.rank = self.env.world_size, self.env.rank
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.env.cuda_index)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = cfg.tf32
            torch.backends.cudnn.allow_tf32 = cfg.tf32
        self.threads: FreeCoreThreads | None = None  # sizes the CPU thread pool where no count is set
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        elif self.device.type == "cpu":
            self.threads = FreeCoreThreads()
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        if self.distributed and not dist.is_initialized():
            dist.init_process_group(
                "nccl" if self.device.type == "cuda" else "gloo",
                init_method=self.env.init_method,
                rank=self.rank,
                world_size=self.world_size,
            )
        if cfg.cuda_graphs and self.device.type != "cuda":
            raise RuntimeError(f"device.cuda_graphs=true needs a CUDA device, not {self.device.type} (set it to false)")
        self.dtype = PRECISIONS[cfg.precision]
        if self.device.type == "cpu" and self.dtype != torch.float32:
            log.warning(
                "device.precision=%s on CPU: autocast is disabled, training runs in fp32",
                cfg.precision,
            )
            self.dtype = torch.float32

    def adapt_threads(self) -> None:
        """Fit the CPU thread pool to the free cores, when due (``device.num_threads=0`` on a CPU);
        cheap enough to call after every update or batch."""
        if self.threads is not None:
            self.threads.adapt()

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> str:
        threads = f", {torch.get_num_threads()} threads" if self.device.type == "cpu" else ""
        ddp = f", rank {self.rank}/{self.world_size} ({self.env.launcher})" if self.distributed else ""
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
        """Compile and/or wrap in DistributedDataParallel; checkpoints keep using the bare module.

        The compiled graphs take symbolic sizes (``dynamic=True``): a new batch shape reuses them.
        Under ``cuda_graphs`` each shape is still recorded as its own CUDA graph.
        """
        if self.cfg.compile or self.cfg.cuda_graphs:
            mode = (
                "reduce-overhead"
                if self.cfg.cuda_graphs and self.cfg.compile_mode == "default"
                else self.cfg.compile_mode
            )
            model = cast(nn.Module, torch.compile(model, mode=mode, dynamic=True))
        if self.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return model

    def all_reduce_sum(self, value: float) -> float:
        """Sum a number over all processes (itself when not distributed)."""
        return self._all_reduce([value], dist.ReduceOp.SUM)[0]

    def all_reduce_max(self, values: list[float]) -> list[float]:
        """Each number's maximum over all processes, in one exchange (themselves when not distributed)."""
        return self._all_reduce(values, dist.ReduceOp.MAX)

    def _all_reduce(self, values: list[float], op: dist.ReduceOp.RedOpType) -> list[float]:
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=op)
        return tensor.tolist()

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def device_manager(cfg: DeviceConfig) -> DeviceManager:
    """The device manager for ``device=...``; an absent CUDA or MPS device is a one-line ValueError."""
    try:
        return DeviceManager(cfg)
    except RuntimeError as err:
        raise ValueError(str(err)) from err
