"""noamt_study.contention: busy processes that compete for the cores, and never outlive their benchmark."""

import os
import subprocess
import sys
import time

import pytest

from noamt_study.contention import MAX_BUSY_PROCESSES, busy_processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc/<pid>/stat."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie counts as gone)."""
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")


@needs_proc
def test_busy_processes_spin_while_the_block_runs_and_stop_after():
    with busy_processes(2) as pids:
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        time.sleep(1.0)
        assert all(cpu_seconds(pid) > 0.05 for pid in pids)  # each one burns CPU, not sleeps
    assert not any(alive(pid) for pid in pids)


def test_no_busy_process_is_a_quiet_machine():
    with busy_processes(0) as pids:
        assert pids == []


@pytest.mark.parametrize("n", [-1, MAX_BUSY_PROCESSES + 1])
def test_a_count_out_of_bounds_is_refused(n):
    with pytest.raises(ValueError, match=f"busy processes: {n}: must be between 0 and {MAX_BUSY_PROCESSES}"):
        with busy_processes(n):
            pass


@needs_proc
def test_a_killed_benchmark_leaves_nothing_spinning():
    # the parent dies without leaving the block (os._exit skips every finally)
    code = (
        "import os\nfrom noamt_study.contention import busy_processes\n"
        "with busy_processes(1) as pids:\n    print(pids[0], flush=True)\n    os._exit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid = int(proc.stdout.split()[0])
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
