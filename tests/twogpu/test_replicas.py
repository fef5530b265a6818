"""Data-parallel replicas under torchrun with gloo on the CPU: identical replicas, equal to one
process training on the union of their batches, and a failing rank ends the job promptly."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from twogpu.replicas import SINGLE, allreduce_bytes_per_step, init_from_env

WORKER = Path(__file__).with_name("replica_worker.py")


def torchrun(tmp_path, *args, nproc=2, timeout=120):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(WORKER),
        str(tmp_path),
        *map(str, args),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def load_worker():
    spec = importlib.util.spec_from_file_location("replica_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_replicas_stay_identical_and_match_one_process_on_the_union(tmp_path):
    steps = 4
    run = torchrun(tmp_path, steps)
    assert run.returncode == 0, run.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # Second implementation: one process, rank 0's initial weights, the mean loss over both batches.
    worker = load_worker()
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    model = worker.ToyTwoTower((cpu, cpu))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(steps):
        x, y = worker.global_batch(step, 2)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(r0[k], v, rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
def test_a_failing_rank_ends_the_job_promptly(tmp_path):
    start = time.monotonic()
    run = torchrun(tmp_path, 6, 1)
    assert run.returncode != 0
    assert "fails on purpose" in run.stderr + run.stdout
    assert time.monotonic() - start < 90
    assert not (tmp_path / "rank0.pt").exists()


@pytest.mark.slow
def test_replicas_exit_cleanly_run_after_run(tmp_path):
    """Issue 11 (2i): a replica aborted now and then at exit under CPU load ("terminate called without
    an active exception", SIGABRT) after a successful run. Repeated: every run must end with exit 0
    on both ranks and no abort message."""
    for i in range(3):
        out = tmp_path / f"run{i}"
        out.mkdir()
        run = torchrun(out, 2)
        assert run.returncode == 0 and "terminate called" not in run.stderr + run.stdout, run.stderr[-3000:]
        assert (out / "rank0.pt").exists() and (out / "rank1.pt").exists()


def test_single_process_without_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert init_from_env() == SINGLE


def test_allreduce_bytes_counts_every_trainable_parameter():
    m = nn.Sequential(nn.Linear(10, 5), nn.Linear(5, 2))
    m[1].bias.requires_grad_(False)
    assert allreduce_bytes_per_step(m) == 4 * (10 * 5 + 5 + 5 * 2)


def _gpus(monkeypatch, n):
    """Stub the visible GPU count (the code asks twogpu.placement, which asks torch.cuda)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


@pytest.mark.parametrize(
    "gpus, replicas, request_, per",
    [
        (0, 2, "auto", 0),
        (4, 2, "auto", 2),
        (5, 2, "auto", 2),
        (3, 2, "auto", 1),
        (2, 2, "auto", 1),
        (8, 4, "auto", 2),
        (4, 4, "auto", 1),
        (4, 2, "single", 1),
        (0, 3, "single", 0),
        (1, 1, "auto", 1),
    ],
)
def test_one_layout_per_node(gpus, replicas, request_, per):
    from twogpu.replicas import gpus_per_replica

    assert gpus_per_replica(gpus, replicas, request_) == per


@pytest.mark.parametrize("gpus, replicas", [(1, 2), (2, 3), (3, 4)])
def test_gpus_that_do_not_divide_are_refused(gpus, replicas):
    from twogpu.replicas import LayoutError, gpus_per_replica

    with pytest.raises(LayoutError, match=f"{replicas} replicas on this node but only {gpus} GPU"):
        gpus_per_replica(gpus, replicas)


def test_auto_gives_every_replica_the_same_layout(monkeypatch):
    """Issue 11 (2c): 2 GPUs, 2 replicas. Before: rank 0 took cuda:0 + cuda:1 as two towers and rank 1
    cuda:1 alone (grouped twin) — shared GPUs and different models, which DDP refuses."""
    from twogpu.replicas import LayoutError, World, replica_devices

    _gpus(monkeypatch, 2)
    ranks = [replica_devices(World(r, 2, r, None, local_world_size=2), "auto") for r in range(2)]
    assert [d.pair for d in ranks] == [(torch.device("cuda:0"),) * 2, (torch.device("cuda:1"),) * 2]
    _gpus(monkeypatch, 5)  # 2 per replica, one GPU idle
    ranks = [replica_devices(World(r, 2, r, None, local_world_size=2), "auto") for r in range(2)]
    assert [d.pair for d in ranks] == [
        (torch.device("cuda:0"), torch.device("cuda:1")),
        (torch.device("cuda:2"), torch.device("cuda:3")),
    ]
    assert "1 GPU(s) left idle" in ranks[0].reason
    _gpus(monkeypatch, 2)
    with pytest.raises(LayoutError, match="3 replicas on this node but only 2 GPU"):
        replica_devices(World(2, 3, 2, None, local_world_size=3), "auto")
    _gpus(monkeypatch, 0)
    assert (
        replica_devices(World(1, 2, 1, None, local_world_size=2), "auto").pair == (torch.device("cpu"),) * 2
    )


def test_world_from_env_reads_the_node_size(monkeypatch):
    from twogpu.replicas import world_from_env

    env = {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "localhost",
        "MASTER_PORT": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    w = world_from_env()
    assert (w.rank, w.world_size, w.local_rank, w.replicas_here, w.backend) == (5, 8, 1, 4, None)


def test_a_replica_on_gpus_sets_its_device_and_binds_the_group_to_it(monkeypatch):
    """Issue 11 (2e): every replica made cuda:0 current before; the group had no device id."""
    import twogpu.replicas as replicas

    env = {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "localhost",
        "MASTER_PORT": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", torch.device(d))))
    monkeypatch.setattr(replicas.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(replicas.dist, "init_process_group", lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(replicas.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(replicas.dist, "get_world_size", lambda: 2)
    world = replicas.init_from_env(timeout_s=5, device="cuda:2")
    assert calls[0] == ("set_device", torch.device("cuda:2"))
    assert calls[1][0] == "init" and calls[1][1]["device_id"] == torch.device("cuda:2")
    assert calls[1][1]["backend"] == "nccl" and world.backend == "nccl" and world.replicas_here == 2
    calls.clear()
    assert replicas.init_from_env(timeout_s=5, device="cpu").backend == "gloo"
    assert calls == [("init", {"backend": "gloo", "timeout": calls[0][1]["timeout"], "device_id": None})]


def test_one_gpu_preset_uses_one_device_on_a_two_gpu_machine(monkeypatch):
    """Issue 11 (2d): configs/alexnet-1gpu.toml trained the two-GPU layout when two GPUs were present."""
    from pathlib import Path

    from alexnet.config import load_config
    from twogpu.placement import resolve_devices

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "alexnet-1gpu.toml")
    _gpus(monkeypatch, 2)
    assert resolve_devices(cfg.train.devices).pair == (torch.device("cuda:0"), torch.device("cuda:0"))
    _gpus(monkeypatch, 0)
    assert resolve_devices(cfg.train.devices).pair == (torch.device("cpu"), torch.device("cpu"))


def test_explicit_device_pairs_shift_by_local_rank(monkeypatch):
    from twogpu.replicas import World, replica_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    rank3 = World(rank=3, world_size=4, local_rank=3, backend="nccl")
    assert replica_devices(rank3, ["cuda:0", "cuda:1"]).pair == (
        torch.device("cuda:6"),
        torch.device("cuda:7"),
    )
    assert replica_devices(rank3, ["cuda:0", "cuda:0"]).pair == (
        torch.device("cuda:3"),
        torch.device("cuda:3"),
    )
    assert replica_devices(rank3, "auto").pair == (torch.device("cuda:6"), torch.device("cuda:7"))
    assert replica_devices(rank3, ["cpu", "cpu"]).pair == (torch.device("cpu"), torch.device("cpu"))
