"""Busy processes beside a benchmark: the shared-core case, measured like the quiet one.

A busy process is a Python interpreter spinning on one core (bytecode only: no threads, next to
no memory traffic), which is what a second job on a laptop looks like to the scheduler: one
runnable thread that wants a whole core. With ``n`` of them on a machine of ``c`` cores, a
benchmark's threads compete for the ``c`` cores with ``n`` others.

Each busy process exits by itself once the process that started it is gone (it watches its
parent's pid), so a benchmark that is killed leaves nothing spinning; :func:`busy_processes`
stops them when its block ends, however it ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

MAX_BUSY_PROCESSES = 64
"""The most busy processes one benchmark may start: far more than any machine here has cores."""

_SPIN = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(200_000):
        pass
"""


@contextmanager
def busy_processes(n: int) -> Iterator[list[int]]:
    """Run ``n`` spinning processes while the block runs; yield their pids.

    ``n`` = 0 starts nothing. Each one is terminated (then killed, after 5 s) when the block exits.
    """
    if not 0 <= n <= MAX_BUSY_PROCESSES:
        raise ValueError(f"busy processes: {n}: must be between 0 and {MAX_BUSY_PROCESSES}")
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(n):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _SPIN, str(os.getpid())],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
