import random

import pytest
import torch

from noamt.device import DeviceConfig, DeviceManager, resolve_device, rng_state, set_rng_state


def test_auto_picks_an_available_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="device.device='tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_missing_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")


def test_cpu_runs_fp32_and_sets_threads():
    before = torch.get_num_threads()
    try:
        dm = DeviceManager(DeviceConfig(device="cpu", precision="bf16", num_threads=1))
        assert dm.dtype == torch.float32  # autocast is for GPUs; the CPU trains in fp32
        assert torch.get_num_threads() == 1
        with dm.autocast():
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
        assert not dm.grad_scaler().is_enabled()
    finally:
        torch.set_num_threads(before)


def test_bad_precision_names_the_key():
    with pytest.raises(ValueError, match="device.precision='fp8'"):
        DeviceManager(DeviceConfig(device="cpu", precision="fp8"))


def test_seed_and_rng_state_reproduce_draws():
    dm = DeviceManager(DeviceConfig(device="cpu"))
    dm.seed(3)
    state = rng_state()
    first = (torch.rand(3), random.random())
    set_rng_state(state)
    second = (torch.rand(3), random.random())
    torch.testing.assert_close(first[0], second[0])
    assert first[1] == second[1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_autocast():
    dm = DeviceManager(DeviceConfig(device="cuda", precision="bf16"))
    a = torch.ones(4, 4, device=dm.device)
    with dm.autocast():
        assert (a @ a).dtype == torch.bfloat16
