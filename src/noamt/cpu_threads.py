"""CPU threads for torch: one per core that the other processes on the machine leave free.

torch splits each CPU operator over its thread pool and waits at the operator's end for the
last thread (an OpenMP barrier). When another process keeps one of the cores busy, one of the
threads is often descheduled for a whole time slice, and every parallel region of a training
step pays for it: the small model's 2-thread step runs about 2.8 times slower beside one busy
process on a 2-core machine, while a 1-thread step runs at its quiet speed
(docs/results/cpu_contention_diagnosis/). So, unless ``device.num_threads`` fixes the count,
the thread pool follows the cores the others leave free, measured over the last interval Δt:

    others  = ((Δ busy time of the cores this process may run on) - (Δ CPU time of this process)) / Δt
    threads = max(1, cores - max(0, ceil(others - MARGIN)))

with busy time from ``/proc/stat`` (user, nice, system, irq, softirq and steal: time the core
was not ours to take) and ``cores`` the CPUs of ``os.sched_getaffinity``. A core counts as free
while the others use less than MARGIN of it. A container's CPU quota (cgroup v2 ``cpu.max``, v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) caps the count at ceil(quota / period), which
torch's default of one thread per core of the host ignores. Off Linux (no ``/proc/stat``) the
count stays torch's default.

Changing the count changes how sums are split between threads, so results agree bit for bit
only between runs at the same count: runs that must repeat exactly set ``device.num_threads``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PROC_STAT = Path("/proc/stat")
CGROUP = Path("/sys/fs/cgroup")
MARGIN = 0.3
"""The share of a core the other processes may use while it still counts as free."""
CHECK_INTERVAL_S = 10.0
"""How often :meth:`FreeCoreThreads.adapt` measures again: long enough to average the noise."""
FIRST_CHECK_S = 1.0
"""The first measurement's interval: the thread pool fits the machine within a second."""
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user nice system (idle iowait) irq softirq steal


def available_cores() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def busy_seconds(cores: list[int], stat: Path = PROC_STAT) -> float | None:
    """Seconds the given cores have spent busy since boot (``/proc/stat``); None where unreadable."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return None
    wanted = {f"cpu{i}" for i in cores}
    ticks = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name in wanted:
            values = rest.split()
            ticks += sum(int(values[i]) for i in _BUSY_FIELDS if i < len(values))
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_quota(cgroup: Path = CGROUP) -> int | None:
    """The cores a container's CPU quota allows, rounded up; None without a quota (or a cgroup)."""
    try:
        v2 = cgroup / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
        else:
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1") or int(period) <= 0:
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def threads_for(others: float, cores: int) -> int:
    """Threads to use when the other processes keep ``others`` cores busy (see the module)."""
    return max(1, cores - max(0, math.ceil(others - MARGIN)))


@dataclass
class _Sample:
    wall: float
    busy: float
    own: float


class FreeCoreThreads:
    """Sizes torch's CPU thread pool to the free cores; :meth:`adapt` measures again when due."""

    def __init__(
        self,
        stat: Path = PROC_STAT,
        clock: Callable[[], float] = time.monotonic,
        own_cpu: Callable[[], float] = time.process_time,
        cgroup: Path = CGROUP,
    ):
        """``stat``, ``clock`` (wall seconds), ``own_cpu`` (this process's CPU seconds) and
        ``cgroup`` (the CPU quota) are where the measurements come from."""
        self.stat, self.clock, self.own_cpu = stat, clock, own_cpu
        self.cores = available_cores()
        self.quota = cpu_quota(cgroup)
        self.last = self._sample()
        self.interval = FIRST_CHECK_S
        self.others: float | None = None  # cores the others kept busy over the last interval

    @property
    def enabled(self) -> bool:
        """Whether the machine says how busy its cores are (Linux)."""
        return self.last is not None

    def _sample(self) -> _Sample | None:
        busy = busy_seconds(self.cores, self.stat)
        if busy is None:
            return None
        return _Sample(self.clock(), busy, self.own_cpu())

    def adapt(self) -> int:
        """Measure again if the interval has passed, set torch's thread count to fit, return it.

        Costs a clock read between measurements and two small file reads at one.
        """
        if self.last is None or self.clock() - self.last.wall < self.interval:
            return torch.get_num_threads()
        now = self._sample()
        if now is None:
            return torch.get_num_threads()
        wall = now.wall - self.last.wall
        self.others = max(0.0, (now.busy - self.last.busy) - (now.own - self.last.own)) / wall
        self.last, self.interval = now, CHECK_INTERVAL_S
        threads = threads_for(self.others, len(self.cores))
        if self.quota is not None:
            threads = min(threads, self.quota)
        if threads != torch.get_num_threads():
            quota = f", the CPU quota allows {self.quota}" if self.quota is not None else ""
            log.info(
                "cpu threads %d -> %d: other processes keep %.1f of %d cores busy%s",
                torch.get_num_threads(),
                threads,
                self.others,
                len(self.cores),
                quota,
            )
            torch.set_num_threads(threads)
        return threads
