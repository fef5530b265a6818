"""Data-parallel replicas of a two-tower model, on PyTorch's own distributed engine.

One process per replica, launched by ``torchrun`` (one node or several). Each process drives one
two-tower replica on its own pair of devices — local rank r uses ``cuda:2r`` and ``cuda:2r+1`` —
and ``DistributedDataParallel`` all-reduces the gradients (NCCL on GPUs, gloo on the CPU). Nothing
here launches processes or speaks a protocol of its own: it reads the environment ``torchrun``
sets, calls ``torch.distributed`` and returns.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from twogpu.placement import TowerDevices, resolve_devices


@dataclass(frozen=True)
class World:
    """This process's place among the replicas."""

    rank: int
    """Global rank (0 writes logs, dashboards and checkpoints)."""
    world_size: int
    """Number of replicas."""
    local_rank: int
    """Rank within this node: picks the node's devices."""
    backend: str | None
    """'nccl', 'gloo', or None for a single process without torch.distributed."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


SINGLE = World(rank=0, world_size=1, local_rank=0, backend=None)


def launched_by_torchrun() -> bool:
    """True when the environment of ``torchrun`` (or any ``env://`` launcher) is present."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def init_from_env(timeout_s: float = 600.0, backend: str | None = None, use_cuda: bool | None = None) -> World:
    """Join the process group ``torchrun`` prepared, or return :data:`SINGLE` when not launched by it.

    ``backend`` defaults to NCCL when CUDA is used and gloo otherwise. ``timeout_s`` bounds every
    collective, so a rank whose peer died fails instead of hanging for ever.
    """
    if not launched_by_torchrun():
        return SINGLE
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if use_cuda else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return World(rank=dist.get_rank(), world_size=dist.get_world_size(),
                 local_rank=int(os.environ["LOCAL_RANK"]), backend=backend)


def replica_devices(world: World, request: str | list[str] | tuple[str, ...]) -> TowerDevices:
    """The two towers' devices for this replica.

    ``"auto"``: with at least two GPUs per local rank, local rank r gets ``cuda:2r`` and ``cuda:2r+1``;
    with one GPU per local rank, both towers share ``cuda:r``; without GPUs, the CPU. An explicit pair
    names the first replica's pair and local rank r shifts its CUDA indices by the GPUs a replica uses
    (``["cuda:0", "cuda:1"]`` → ``cuda:2r``, ``cuda:2r+1``; ``["cuda:0", "cuda:0"]`` → ``cuda:r``); CPU stays.
    """
    if not world.distributed:
        return resolve_devices(request)
    if request != "auto":
        gpus = {str(torch.device(d)) for d in request if torch.device(d).type == "cuda"}
        shift = len(gpus) * world.local_rank
        pair = [f"cuda:{(torch.device(d).index or 0) + shift}" if torch.device(d).type == "cuda" else d
                for d in request]
        chosen = resolve_devices(pair)
        return TowerDevices(chosen.a, chosen.b, f"replica {world.rank} (local rank {world.local_rank}): {chosen.reason}")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    r = world.local_rank
    if n >= 2 * (r + 1):
        return resolve_devices("auto", offset=2 * r)
    if n >= r + 1:
        dev = torch.device(f"cuda:{r}")
        return TowerDevices(dev, dev, f"replica {world.rank}: both towers on {dev} ({n} GPUs for "
                                      f"local rank {r}: too few for two per replica)")
    cpu = torch.device("cpu")
    return TowerDevices(cpu, cpu, f"replica {world.rank}: no GPU for local rank {r}, both towers on the CPU")


def wrap(model: nn.Module, world: World) -> nn.Module:
    """``DistributedDataParallel`` around the (multi-device) model; the model itself when single.

    A model whose towers live on two devices is a multi-device module, for which DDP takes
    ``device_ids=None``: gradients are all-reduced bucket by bucket as the backward pass produces
    them, on the device of each parameter.
    """
    if not world.distributed or world.world_size == 1:
        return model
    return DistributedDataParallel(model, device_ids=None, output_device=None)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (for checkpoints: the saved state has no ``module.`` prefix)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def agree_any(flag: bool, world: World, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on any rank (e.g. a stop signal seen by one)."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_sums(values: Mapping[str, float], world: World, device: torch.device | str = "cpu") -> dict[str, float]:
    """Sum each value over all ranks (e.g. mistakes and image counts of a sharded evaluation)."""
    if not world.distributed:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: v for k, v in zip(keys, t.tolist())}


def allreduce_bytes_per_step(model: nn.Module) -> int:
    """Bytes of gradient each replica contributes to the all-reduce in one step (every trainable
    parameter's gradient once), to set beside the bytes exchanged between the towers."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def shutdown(world: World) -> None:
    """Leave the process group (after the last collective)."""
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
