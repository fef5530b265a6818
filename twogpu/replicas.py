"""Data-parallel replicas of a two-tower model, on PyTorch's own distributed engine.

One process per replica, launched by ``torchrun`` (one node or several). Each process drives one
two-tower replica on its own devices, and ``DistributedDataParallel`` all-reduces the gradients
(NCCL on GPUs, gloo on the CPU). Every replica of a node gets the same layout (DDP needs the same
model on every rank): with ``devices = "auto"`` and R replicas on a node with G GPUs, two GPUs per
replica when G ≥ 2R (local rank r: ``cuda:2r``, ``cuda:2r+1``), else one GPU per replica when
G ≥ R (``cuda:r``, both towers), else the run is refused; without GPUs, the CPU. Each replica makes
its first GPU the current device and joins the process group bound to it. Nothing here launches
processes or speaks a protocol of its own: it reads the environment ``torchrun`` sets, calls
``torch.distributed`` and returns.
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from twogpu.placement import TowerDevices, resolve_devices, visible_gpus


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
    """'nccl', 'gloo', or None for a single process without torch.distributed (or not joined yet)."""
    local_world_size: int | None = None
    """Replicas on this node (torchrun's LOCAL_WORLD_SIZE); None: all of them (one node)."""

    @property
    def replicas_here(self) -> int:
        return self.local_world_size or self.world_size

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


def world_from_env() -> World:
    """This process's place as ``torchrun``'s environment describes it, before joining the process
    group (``backend`` None), so the devices can be chosen first; :data:`SINGLE` when not launched."""
    if not launched_by_torchrun():
        return SINGLE
    local = os.environ.get("LOCAL_WORLD_SIZE")
    return World(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        backend=None,
        local_world_size=int(local) if local else None,
    )


def init_from_env(
    timeout_s: float = 600.0,
    backend: str | None = None,
    use_cuda: bool | None = None,
    device: torch.device | str | None = None,
) -> World:
    """Join the process group ``torchrun`` prepared, or return :data:`SINGLE` when not launched by it.

    ``device``: this replica's first device (tower a's). A CUDA device becomes the process's current
    device (``torch.cuda.set_device``: the context, the pin-memory thread and NCCL use it instead of
    every replica opening one on cuda:0) and the process group is bound to it (``device_id``).
    ``backend`` defaults to NCCL when CUDA is used and gloo otherwise. ``timeout_s`` bounds every
    collective, so a rank whose peer died fails instead of hanging for ever.
    """
    world = world_from_env()
    if world is SINGLE:
        return SINGLE
    dev = torch.device(device) if device is not None else None
    on_gpu = dev is not None and dev.type == "cuda"
    if on_gpu:
        torch.cuda.set_device(dev)
    if use_cuda is None:
        use_cuda = on_gpu if dev is not None else torch.cuda.is_available()
    backend = backend or ("nccl" if use_cuda else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, timeout=datetime.timedelta(seconds=timeout_s), device_id=dev if on_gpu else None
        )
    return World(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=world.local_rank,
        backend=backend,
        local_world_size=world.local_world_size,
    )


class LayoutError(ValueError):
    """The GPUs of a node cannot be divided among its replicas."""


def gpus_per_replica(gpus: int, replicas: int, request: str = "auto") -> int:
    """The one layout every replica of a node uses: 2 (the towers on two GPUs), 1 (both towers on
    one GPU: the grouped twin) or 0 (the CPU), for ``gpus`` visible GPUs and ``replicas`` on the node.
    ``request`` ``"auto"`` prefers two per replica; ``"single"`` asks for one. Raises
    :class:`LayoutError` when there are GPUs but fewer than replicas (they do not divide)."""
    if gpus == 0:
        return 0
    if request == "auto" and gpus >= 2 * replicas:
        return 2
    if gpus >= replicas:
        return 1
    raise LayoutError(
        f"{replicas} replicas on this node but only {gpus} GPU(s): every replica needs its own GPU (one GPU "
        f"each: both towers on it; two each: the paper's layout). Start at most {gpus} replicas per node "
        f"(torchrun --nproc_per_node), or at most {gpus // 2 or 1} for two GPUs each."
    )


def replica_devices(world: World, request: str | list[str] | tuple[str, ...]) -> TowerDevices:
    """The two towers' devices for this replica.

    ``"auto"`` / ``"single"``: the layout of :func:`gpus_per_replica`, the same for every replica of
    the node — local rank r gets ``cuda:2r`` and ``cuda:2r+1`` (two per replica), or ``cuda:r`` for
    both towers (one per replica), or the CPU. An explicit pair names the first replica's pair and
    local rank r shifts its CUDA indices by the GPUs a replica uses (``["cuda:0", "cuda:1"]`` →
    ``cuda:2r``, ``cuda:2r+1``; ``["cuda:0", "cuda:0"]`` → ``cuda:r``); CPU stays.
    """
    if world is SINGLE or (world.world_size == 1 and world.replicas_here == 1):
        return resolve_devices(request)
    if not isinstance(request, str):
        gpus = {str(torch.device(d)) for d in request if torch.device(d).type == "cuda"}
        shift = len(gpus) * world.local_rank
        pair = [
            f"cuda:{(torch.device(d).index or 0) + shift}" if torch.device(d).type == "cuda" else d
            for d in request
        ]
        chosen = resolve_devices(pair)
        return TowerDevices(
            chosen.a, chosen.b, f"replica {world.rank} (local rank {world.local_rank}): {chosen.reason}"
        )
    if request not in ("auto", "single"):
        raise ValueError(
            f"devices: expected 'auto', 'single' or a pair like ['cuda:0', 'cuda:1'], got {request!r}"
        )
    n, r, here = visible_gpus(), world.local_rank, world.replicas_here
    per = gpus_per_replica(n, here, request)
    idle = n - per * here
    spare = f"; {idle} GPU(s) left idle" if per and idle else ""
    where = f"replica {world.rank} (local rank {r} of {here} on this node, {n} GPU(s))"
    if per == 2:
        a, b = torch.device(f"cuda:{2 * r}"), torch.device(f"cuda:{2 * r + 1}")
        return TowerDevices(a, b, f"{where}: tower a on {a}, tower b on {b}{spare}")
    if per == 1:
        dev = torch.device(f"cuda:{r}")
        return TowerDevices(dev, dev, f"{where}: both towers on {dev}, one GPU per replica{spare}")
    cpu = torch.device("cpu")
    return TowerDevices(cpu, cpu, f"{where}: no GPU, both towers on the CPU")


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


def all_reduce_sum(t: torch.Tensor, world: World, device: torch.device | str = "cpu") -> torch.Tensor:
    """``t`` summed over all ranks (e.g. mistakes and image counts of a sharded evaluation), on
    ``t``'s device; the collective runs on ``device`` (the backend's: CUDA for NCCL, CPU for gloo)."""
    if not world.distributed:
        return t
    buf = t.to(device)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def gather_text(text: str, world: World) -> list[str]:
    """Every rank's ``text``, in rank order, on every rank (so that rank 0 alone can print them)."""
    if not world.distributed:
        return [text]
    texts: list[str | None] = [None] * world.world_size
    dist.all_gather_object(texts, text)
    return [str(t) for t in texts]


def allreduce_bytes_per_step(model: nn.Module) -> int:
    """Bytes of gradient each replica contributes to the all-reduce in one step (every trainable
    parameter's gradient once), to set beside the bytes exchanged between the towers."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def shutdown(world: World, *, clean: bool = True) -> None:
    """Leave the process group after the last collective.

    On a clean finish every rank first meets the others at a barrier, so no rank closes its
    connections while a peer's gloo threads still exchange with it. Then the group is destroyed and
    a garbage collection frees what the caller released (a DDP wrapper sits in reference cycles), so
    the group's last references go — and with them gloo's worker threads, where nothing else holds
    the group — while the interpreter is fully alive: a gloo thread that releases a Python tensor
    during interpreter shutdown aborts the process ("terminate called without an active
    exception"). After an error (``clean=False``) no barrier: a peer may be gone.
    """
    if world.distributed and dist.is_initialized():
        if clean:
            dist.barrier()
        dist.destroy_process_group()
    gc.collect()
