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
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(WORKER), str(tmp_path), *map(str, args)]
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


def test_single_process_without_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert init_from_env() == SINGLE


def test_allreduce_bytes_counts_every_trainable_parameter():
    m = nn.Sequential(nn.Linear(10, 5), nn.Linear(5, 2))
    m[1].bias.requires_grad_(False)
    assert allreduce_bytes_per_step(m) == 4 * (10 * 5 + 5 + 5 * 2)


def test_explicit_device_pairs_shift_by_local_rank(monkeypatch):
    from twogpu.replicas import World, replica_devices
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    rank3 = World(rank=3, world_size=4, local_rank=3, backend="nccl")
    assert replica_devices(rank3, ["cuda:0", "cuda:1"]).pair == (torch.device("cuda:6"), torch.device("cuda:7"))
    assert replica_devices(rank3, ["cuda:0", "cuda:0"]).pair == (torch.device("cuda:3"), torch.device("cuda:3"))
    assert replica_devices(rank3, "auto").pair == (torch.device("cuda:6"), torch.device("cuda:7"))
    assert replica_devices(rank3, ["cpu", "cpu"]).pair == (torch.device("cpu"), torch.device("cpu"))
