"""noamt.cpu_threads: torch's thread pool follows the cores that other processes leave free."""

import dataclasses
import logging
import os
import sys
import time

import pytest
import torch
from helpers.runs import train_run

from noamt.cpu_threads import (
    FIRST_CHECK_S,
    MARGIN,
    FreeCoreThreads,
    available_cores,
    busy_seconds,
    cpu_quota,
    threads_for,
)
from noamt.decoding import DecodingConfig
from noamt.device import DeviceConfig, DeviceManager
from noamt.engines.noamt import open_noamt_engine
from noamt_study.contention import busy_processes

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat (Linux only)")
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("others", "cores", "threads"),
    [
        (0.0, 2, 2),  # a quiet machine: every core
        (MARGIN - 0.01, 2, 2),  # a little background work leaves a core free
        (MARGIN + 0.01, 2, 1),  # more than the margin takes it
        (1.0, 2, 1),  # one busy process on two cores
        (3.0, 2, 1),  # never fewer than one
        (3.0, 8, 5),
        (0.0, 1, 1),
    ],
)
def test_threads_for_the_free_cores(others, cores, threads):
    assert threads_for(others, cores) == threads


def stat_text(busy_ticks_by_cpu: dict[int, int]) -> str:
    """A /proc/stat in the kernel's layout: the total line, then one line per CPU (user nice system
    idle iowait irq softirq steal guest guest_nice), the busy ticks spread over user, system and steal."""
    lines = ["cpu  1 1 1 1 1 1 1 1 0 0"]
    for cpu, busy in busy_ticks_by_cpu.items():
        user, system, steal = busy - busy // 2, busy // 4, busy // 2 - busy // 4
        lines.append(f"cpu{cpu} {user} 0 {system} 999999 77 0 0 {steal} 0 0")
    lines.append("intr 12345 0 0")
    return "\n".join(lines) + "\n"


def test_busy_seconds_sums_the_busy_fields_of_the_given_cores_only(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text(stat_text({0: 3 * TICK, 1: 5 * TICK, 2: 100 * TICK}))
    assert busy_seconds([0, 1], stat) == pytest.approx(8.0)  # idle, iowait and cpu2 left out
    assert busy_seconds([2], stat) == pytest.approx(100.0)
    assert busy_seconds([0], tmp_path / "absent") is None


class Clocks:
    """Wall and CPU clocks a test moves by hand."""

    def __init__(self):
        self.wall, self.cpu = 1000.0, 50.0


def test_the_pool_follows_the_cores_the_others_use(tmp_path):
    cores = available_cores()
    if len(cores) < 2:
        pytest.skip("needs two cores")
    stat, clocks = tmp_path / "stat", Clocks()
    busy = dict.fromkeys(cores, 0)
    stat.write_text(stat_text(busy))
    threads = FreeCoreThreads(stat, clock=lambda: clocks.wall, own_cpu=lambda: clocks.cpu, cgroup=tmp_path)
    torch.set_num_threads(len(cores))

    def elapse(seconds: float, machine_busy_cores: float, own_cores: float) -> int:
        clocks.wall += seconds
        clocks.cpu += own_cores * seconds
        busy[cores[0]] += round(machine_busy_cores * seconds * TICK)
        stat.write_text(stat_text(busy))
        return threads.adapt()

    assert elapse(FIRST_CHECK_S / 2, 1.0, 0.0) == len(cores)  # not due yet: nothing measured
    assert threads.others is None
    # another process takes a whole core beside ours (its time and ours both show in /proc/stat)
    assert elapse(FIRST_CHECK_S / 2, 1.0 + 1.0, 1.0) == len(cores) - 1
    assert threads.others == pytest.approx(1.0, abs=0.02) and torch.get_num_threads() == len(cores) - 1
    assert elapse(5.0, 0.0, 0.0) == len(cores) - 1  # the next check waits for CHECK_INTERVAL_S
    assert elapse(5.0, 1.0, 1.0) == len(cores)  # it has gone (over both intervals): every core again
    assert threads.others == pytest.approx(0.0, abs=0.02)


@pytest.mark.parametrize(
    ("files", "cores"),
    [
        ({"cpu.max": "200000 100000\n"}, 2),  # cgroup v2: docker --cpus=2
        ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 cores: two threads, one of them part-time
        ({"cpu.max": "max 100000\n"}, None),  # no quota
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),  # cgroup v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage\n"}, None),
        ({}, None),  # no cgroup files
    ],
)
def test_a_containers_cpu_quota_is_read_from_its_cgroup(tmp_path, files, cores):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == cores


def test_the_cpu_quota_caps_the_pool(tmp_path):
    cores = available_cores()
    if len(cores) < 2:
        pytest.skip("needs two cores")
    (tmp_path / "cpu.max").write_text("100000 100000\n")  # one core's worth of time
    stat, clocks = tmp_path / "stat", Clocks()
    stat.write_text(stat_text(dict.fromkeys(cores, 0)))
    threads = FreeCoreThreads(stat, clock=lambda: clocks.wall, own_cpu=lambda: clocks.cpu, cgroup=tmp_path)
    torch.set_num_threads(len(cores))
    clocks.wall += FIRST_CHECK_S
    assert threads.adapt() == 1 and threads.others == 0.0  # a quiet machine, but a quota of one core


@linux
def test_a_busy_process_beside_the_run_is_measured_on_the_real_machine():
    if len(available_cores()) < 2:
        pytest.skip("needs two cores")
    threads = FreeCoreThreads()
    with busy_processes(len(available_cores())):
        time.sleep(FIRST_CHECK_S + 0.5)
        threads.adapt()
    assert threads.others is not None and threads.others > 1.0  # every core is busy: at least one is taken
    assert torch.get_num_threads() < len(available_cores())


def test_a_set_count_is_kept_and_only_a_cpu_adapts():
    assert DeviceManager(DeviceConfig(device="cpu", num_threads=1)).threads is None
    assert torch.get_num_threads() == 1
    dm = DeviceManager(DeviceConfig(device="cpu"))
    assert (dm.threads is not None) == os.path.exists("/proc/stat")


@linux
@pytest.mark.slow
def test_training_beside_busy_processes_gives_up_the_taken_cores(small_run, tmp_path, caplog):
    """noamt-train's loop fits the pool after its updates: with every core kept busy, one thread."""
    cores = available_cores()
    if len(cores) < 2:
        pytest.skip("needs two cores")
    torch.set_num_threads(len(cores))
    cfg = small_run(max_steps=60, val_interval=1000, save_interval=1000)  # a few seconds beside the busy ones
    cfg = dataclasses.replace(cfg, device=DeviceConfig(device="cpu"))  # the default count: fitted
    with busy_processes(len(cores)), caplog.at_level(logging.INFO, logger="noamt.cpu_threads"):
        train_run(cfg, tmp_path / "run")
    assert f"cpu threads {len(cores)} -> 1: other processes keep" in caplog.text
    assert torch.get_num_threads() == 1


@pytest.mark.slow
def test_the_noamt_engine_fits_the_pool_between_batches(toy_model, toy_sources):
    """noamt-translate and noamt-evaluate decode with the device's fitting called after each batch."""
    engine = open_noamt_engine([toy_model], DeviceConfig(device="cpu"), "default")
    assert engine.between_batches.__self__.threads is not None or not os.path.exists("/proc/stat")
    calls: list[int] = []
    engine.between_batches = lambda: calls.append(1)
    sentences = toy_sources[:12]
    outputs = engine.translate(sentences, DecodingConfig(beam_size=2), max_tokens=40)
    assert len(outputs) == len(sentences)
    assert len(calls) >= 3  # 12 sentences in batches of at most 40 source tokens
