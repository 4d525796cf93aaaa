import platform
import random

import pytest
import torch

from noamt.device import (
    DeviceConfig,
    DeviceManager,
    DistributedEnv,
    expand_hostlist,
    host_description,
    read_distributed_env,
    resolve_device,
    rng_state,
    set_rng_state,
)


def test_auto_picks_an_available_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="device.device='tpu': must be auto, cpu, cuda, cuda:N or mps"):
        DeviceConfig(device="tpu")


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


SRUN_TASK_3_OF_8 = {
    "SLURM_PROCID": "3",
    "SLURM_NTASKS": "8",
    "SLURM_LOCALID": "1",
    "SLURM_JOB_ID": "123456",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
    "SLURM_NODELIST": "gpu[01-09]",
}


def test_one_process_without_a_launcher():
    assert read_distributed_env({}) == DistributedEnv(launcher="none", rank=0, world_size=1)
    assert read_distributed_env({}).init_method == "env://"


def test_torchrun_variables_take_precedence_over_slurm():
    env = read_distributed_env({**SRUN_TASK_3_OF_8, "RANK": "5", "WORLD_SIZE": "6", "LOCAL_RANK": "2"})
    assert env == DistributedEnv(launcher="torchrun", rank=5, world_size=6, local_rank=2, cuda_index=2)
    assert env.init_method == "env://"  # torchrun's MASTER_ADDR and MASTER_PORT


def test_srun_task_meets_on_the_first_host_of_its_step_at_a_port_of_its_job():
    env = read_distributed_env(SRUN_TASK_3_OF_8)
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.cuda_index) == ("slurm", 3, 8, 1, 1)
    assert env.init_method == f"tcp://gpu07:{15000 + 123456 % 15000}"


def test_master_addr_and_port_from_the_environment_win():
    env = read_distributed_env({**SRUN_TASK_3_OF_8, "MASTER_ADDR": "head", "MASTER_PORT": "29500"})
    assert env.init_method == "tcp://head:29500"


def test_job_node_list_when_the_step_has_none():
    environ = {k: v for k, v in SRUN_TASK_3_OF_8.items() if k != "SLURM_STEP_NODELIST"}
    assert read_distributed_env(environ).master_addr == "gpu01"


@pytest.mark.parametrize("visible, cuda_index", [("3", 0), ("GPU-5f2a", 0), ("0,1,2,3", 1), ("", 1)])
def test_a_task_that_sees_one_gpu_trains_on_it(visible, cuda_index):
    assert read_distributed_env({**SRUN_TASK_3_OF_8, "CUDA_VISIBLE_DEVICES": visible}).cuda_index == cuda_index


def test_one_slurm_task_is_one_process():
    env = read_distributed_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0"})
    assert env.world_size == 1 and env.master_addr is None  # no rendezvous to find


@pytest.mark.parametrize(
    "environ, message",
    [
        ({**SRUN_TASK_3_OF_8, "SLURM_PROCID": "x"}, "SLURM_PROCID='x': expected an integer"),
        ({**SRUN_TASK_3_OF_8, "SLURM_PROCID": "8"}, "SLURM_PROCID=8: expected a rank from 0 to"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "MASTER_PORT": "1"}, "SLURM_STEP_NODELIST, SLURM_NODELIST or"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_NODELIST": "n1"}, "MASTER_PORT or SLURM_JOB_ID"),
    ],
)
def test_bad_or_missing_slurm_variables_are_named(environ, message):
    with pytest.raises(ValueError, match=message):
        read_distributed_env(environ)


@pytest.mark.parametrize(
    "hostlist, hosts",
    [
        ("node01", ["node01"]),
        ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
        ("a[8-10],b5,c[1]", ["a8", "a9", "a10", "b5", "c1"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("gpu-[098-101].ib", ["gpu-098.ib", "gpu-099.ib", "gpu-100.ib", "gpu-101.ib"]),
    ],
)
def test_slurm_node_lists_expand_to_host_names(hostlist, hosts):
    assert expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize("hostlist", ["node[01-03", "node01]", "node[1-x]", "node[3-1]", "a,,b", "n[[1]]"])
def test_malformed_node_lists_are_errors(hostlist):
    with pytest.raises(ValueError, match="SLURM node list"):
        expand_hostlist(hostlist)


def test_the_host_is_named_by_its_cpu_model_architecture_and_torch_build(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n")
    assert host_description(cpuinfo) == f"AMD EPYC 7B13 ({platform.machine()}), torch {torch.__version__}"
    fallback = platform.processor() or "unknown CPU"  # no /proc/cpuinfo (macOS), or no model name (some ARM)
    assert host_description(tmp_path / "absent") == f"{fallback} ({platform.machine()}), torch {torch.__version__}"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert host_description(cpuinfo).startswith(f"{fallback} (")
