"""scripts/gpu_check.sh: its CPU smoke run writes every step's result and summary.json."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def gpu_check(out: Path, **env: str) -> subprocess.CompletedProcess:
    """``bash scripts/gpu_check.sh OUT --cpu-smoke`` with this Python, on one thread."""
    environ = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    environ.pop("NOAMT_DATA_DIR", None)  # the synthetic corpus
    command = ["bash", str(SCRIPT), str(out), "--cpu-smoke"]
    return subprocess.run(command, capture_output=True, text=True, env=environ, timeout=300, check=False)


@pytest.mark.slow
def test_the_cpu_smoke_run_writes_each_step_and_the_summary(tmp_path):
    proc = gpu_check(tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    steps = summary["steps"]
    expected = ["env", "gpu_tests", "throughput_tiny_eager", "throughput_tiny_buckets", "beam", "peers"]
    assert list(steps) == expected and summary["mode"] == "cpu-smoke"
    peers = importlib.util.find_spec("transformers") is not None  # benchmark_peers needs it
    assert summary["failed"] == ([] if peers else ["peers"])
    if not peers:
        assert steps.pop("peers")["status"] == "failed"
    assert all(s["status"] == "ok" and s["exit_code"] == 0 and (tmp_path / s["log"]).is_file() for s in steps.values())
    assert "skipped" in steps["gpu_tests"]["result"]  # -m gpu ran, and skipped without CUDA
    for name in ("throughput_tiny_eager", "throughput_tiny_buckets"):
        result = steps[name]["result"]
        assert result["updates"] == 3 and result["median_ms_per_update"] > 0 and result["target_tokens_per_s"] > 0
        assert 0 < result["mfu_vs_measured_peak"] < 1.5 and result["peak_rss_mib"] > 0
    assert steps["throughput_tiny_buckets"]["result"]["pad_to_buckets"] == [16, 24, 32, 48, 64]
    assert steps["beam"]["result"]["beam_size"] == 5 and steps["beam"]["result"]["sentences_per_s"] > 0
    if peers:
        assert steps["peers"]["result"]["median_ratio"] > 0 and steps["peers"]["result"]["decoding"]["sentences"] == 10


def test_steps_past_the_budget_are_skipped_and_still_summarised(tmp_path):
    proc = gpu_check(tmp_path, GPU_CHECK_BUDGET="5")
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = json.loads((tmp_path / "summary.json").read_text())["steps"]
    assert {name: s["status"] for name, s in steps.items()} == {
        name: "skipped"
        for name in ("env", "gpu_tests", "throughput_tiny_eager", "throughput_tiny_buckets", "beam", "peers")
    }
