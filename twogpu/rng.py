"""Random streams of a two-tower run: named seeds, one stream per device, saving and restoring them.

Krizhevsky et al. (2012), section 3.2: the two towers are two separately initialised halves of the
network; Figure 3's colour-agnostic kernels on one GPU and colour-specific ones on the other arise
only because the towers start from, and drop, different random numbers. PyTorch makes that easy to
lose: ``torch.manual_seed(s)`` seeds *every* CUDA device with the same ``s``, so a tower built on
cuda:1 would draw exactly what its twin drew on cuda:0, and both would drop the same neurons. Here:

* :func:`stream_seed` names each random stream (``purpose``, replica ``rank``, ``step``) and
  derives its seed by hashing, instead of seed arithmetic that can collide;
* :func:`init_generator` is the host generator a tower's initial weights are drawn from, so the
  weights for a seed are the same wherever the tower lives;
* :func:`device_streams` / :func:`use_streams` keep a set of per-device streams (each CUDA device
  seeded from its own name) and run a block on them;
* :func:`rng_state` / :func:`set_rng_state` save and restore every global generator (checkpoints).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

RngStreams = dict
"""``{"cpu": ByteTensor, "cuda": [ByteTensor per CUDA index]}``: the state of one set of streams."""


def stream_seed(seed: int, purpose: str, *, rank: int = 0, step: int = 0) -> int:
    """The seed (63 bits) of the random stream named ``purpose`` (e.g. ``"init/a"``,
    ``"dropout/cuda:1"``, ``"lighting"``) of replica ``rank``, restarted at ``step``.

    A hash of the four values: two different names never share a seed, whatever the numbers.
    """
    digest = hashlib.blake2b(
        f"{purpose}|{int(seed)}|{int(rank)}|{int(step)}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "little") >> 1


def init_generator(seed: int, tower: str) -> torch.Generator:
    """The host generator tower ``tower``'s initial weights are drawn from (then copied to its
    device): the same weights for a seed on the CPU, one GPU, two GPUs or in the grouped twin, and
    different draws for the two towers."""
    return torch.Generator().manual_seed(stream_seed(seed, f"init/{tower}"))


def _cuda_seeded_state(index: int, seed: int) -> torch.Tensor:
    """The state of CUDA device ``index``'s generator after seeding it with ``seed`` (the device's
    own generator is left as it was)."""
    g = torch.Generator(device=torch.device("cuda", index))
    g.manual_seed(seed)
    return g.get_state()


def device_streams(
    seed: int, purpose: str, cuda_indices: Sequence[int], *, rank: int = 0, step: int = 0
) -> RngStreams:
    """Fresh streams named ``purpose`` for the CPU and each CUDA device in ``cuda_indices``; every
    device gets its own seed (``"<purpose>/cuda:<i>"``), so towers on two GPUs draw different numbers."""
    cpu = torch.Generator().manual_seed(stream_seed(seed, f"{purpose}/cpu", rank=rank, step=step)).get_state()
    cuda = [
        _cuda_seeded_state(i, stream_seed(seed, f"{purpose}/cuda:{i}", rank=rank, step=step))
        for i in cuda_indices
    ]
    return {"cpu": cpu, "cuda": cuda}


def _global_states(cuda_indices: Sequence[int]) -> RngStreams:
    return {"cpu": torch.get_rng_state(), "cuda": [torch.cuda.get_rng_state(i) for i in cuda_indices]}


def _set_global_states(states: Mapping[str, Any], cuda_indices: Sequence[int]) -> None:
    torch.set_rng_state(states["cpu"])
    for i, s in zip(cuda_indices, states["cuda"]):
        torch.cuda.set_rng_state(s, i)


@contextlib.contextmanager
def use_streams(streams: RngStreams, cuda_indices: Sequence[int]) -> Iterator[RngStreams]:
    """Run the block with the global generators (CPU and ``cuda_indices``) set to ``streams``;
    afterwards ``streams`` holds their advanced states and the global generators are as before
    (what other code draws, e.g. a DataLoader's base seed, does not shift the streams)."""
    saved = _global_states(cuda_indices)
    _set_global_states(streams, cuda_indices)
    try:
        yield streams
    finally:
        streams.update(_global_states(cuda_indices))
        _set_global_states(saved, cuda_indices)


def seed_devices(seed: int, purpose: str, *, rank: int = 0, step: int = 0) -> None:
    """Seed the global generators of the CPU and of every visible CUDA device, each from its own
    name (unlike ``torch.manual_seed``, which gives every device the same seed)."""
    torch.manual_seed(stream_seed(seed, f"{purpose}/cpu", rank=rank, step=step))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            torch.cuda.set_rng_state(
                _cuda_seeded_state(i, stream_seed(seed, f"{purpose}/cuda:{i}", rank=rank, step=step)), i
            )


def rng_state() -> dict[str, Any]:
    """Every global random generator, in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA generators only for the devices visible now)."""
    torch.set_rng_state(state["torch"])
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])[: torch.cuda.device_count()]
        for i, s in enumerate(cuda):
            torch.cuda.set_rng_state(s, i)
