"""tclr_zoo.runtime: the one reader of torchrun's variables, the CPU share and the device choice
(the process group itself runs in tests/train/test_distributed.py and tests/cli/test_torchrun.py)."""

from __future__ import annotations

import os

import pytest
import torch
import warm_python

from tclr_zoo import runtime

TORCHRUN = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_torchrun_env_is_read_only_when_torchrun_set_it(no_torchrun):
    assert runtime.torchrun_env() is None and runtime.processes_on_this_node() == 1
    no_torchrun.setenv("LOCAL_WORLD_SIZE", "4")  # alone: not started by torchrun, but 4 processes share the CPUs
    assert runtime.torchrun_env() is None and runtime.processes_on_this_node() == 4
    no_torchrun.delenv("LOCAL_WORLD_SIZE")
    no_torchrun.setenv("WORLD_SIZE", "6")
    no_torchrun.setenv("RANK", "5")
    no_torchrun.setenv("LOCAL_RANK", "1")
    # without LOCAL_WORLD_SIZE every process is taken to share this node
    assert runtime.torchrun_env() == {"WORLD_SIZE": 6, "RANK": 5, "LOCAL_RANK": 1, "LOCAL_WORLD_SIZE": 6}
    no_torchrun.setenv("LOCAL_WORLD_SIZE", "2")
    assert runtime.torchrun_env()["LOCAL_WORLD_SIZE"] == 2 and runtime.processes_on_this_node() == 2


@pytest.mark.parametrize("name", TORCHRUN)
def test_a_variable_that_is_not_an_integer_is_named_in_one_line(no_torchrun, name):
    for other in TORCHRUN:
        no_torchrun.setenv(other, "1" if other != "RANK" else "0")
    no_torchrun.setenv(name, "two")
    with pytest.raises(runtime.RuntimeEnvError, match=f"^{name}='two' must be an integer") as err:
        runtime.torchrun_env()
    assert "\n" not in str(err.value)


def test_cpu_share_splits_this_process_cpus_between_the_node_processes():
    cpus = len(os.sched_getaffinity(0))
    assert runtime.cpu_share() == cpus and runtime.cpu_share(0) == cpus
    assert runtime.cpu_share(2) == max(1, cpus // 2) and runtime.cpu_share(10 * cpus) == 1


def test_devices():
    assert runtime.resolve_device("cpu") == torch.device("cpu")
    assert runtime.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(runtime.RuntimeEnvError, match="^train.device='cuda' but no CUDA device is available$"):
            runtime.resolve_device("cuda", setting="train.device")


def test_outside_a_process_group_every_helper_is_a_local_call():
    context = runtime.current()
    assert (context.rank, context.world_size, context.device, context.is_main) == (0, 1, torch.device("cpu"), True)
    assert runtime.on_main(lambda: 7) == 7 and runtime.gather_objects("x") == ["x"]
    assert runtime.gather_ints(3) == [3] and runtime.reduce_floats([1.5, 2.0], op="max") == [1.5, 2.0]
    runtime.barrier()


def test_the_cli_refuses_a_broken_torchrun_environment_in_one_line(tmp_path):
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": "zero", "LOCAL_RANK": "0"}
    done = warm_python.run_cli(["pretrain", "--out", tmp_path / "run"], timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("tclr-zoo: error: RANK='zero' must be an integer") and done.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()
