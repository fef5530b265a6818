"""The cross-tower exchange: the only place where activations move between the two towers.

Krizhevsky et al. (2012), section 3.2: "the GPUs communicate only in certain layers". Every such
communication in the network goes through :func:`cross` (``grep -n "cross(" src``), so the crossings
can be found, counted and measured. :func:`record_crossings` captures each crossing's site, direction,
shape and bytes while a forward pass runs.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Iterator

import torch

_local = threading.local()


@dataclass(frozen=True)
class CrossingRecord:
    """One tensor that crossed from one tower to the other during a forward pass."""

    site: str
    """Where in the network the crossing happens (e.g. ``"conv3"``, ``"fc6"``)."""
    source: str
    """Tower the tensor leaves (``"a"`` or ``"b"``)."""
    target: str
    """Tower the tensor arrives at."""
    shape: tuple[int, ...]
    """Shape of the crossing tensor, batch dimension included."""
    bytes_forward: int
    """Bytes sent forward (activations)."""
    bytes_backward: int
    """Bytes sent back during the backward pass (the activation's gradient); 0 without autograd."""


def cross(x: torch.Tensor, device: torch.device | str, *, site: str, source: str, target: str) -> torch.Tensor:
    """Send tower ``source``'s activation ``x`` to tower ``target`` living on ``device``.

    The copy is non-blocking towards a GPU (it overlaps with compute) and differentiable:
    autograd sends the gradient back the same way during the backward pass. On a single device
    the copy is free (``Tensor.to`` returns ``x`` itself) but the crossing is still recorded, because it
    is a property of the network, not of the placement.
    """
    records = getattr(_local, "records", None)
    if records is not None:
        nbytes = x.numel() * x.element_size()
        records.append(
            CrossingRecord(
                site=site,
                source=source,
                target=target,
                shape=tuple(x.shape),
                bytes_forward=nbytes,
                bytes_backward=nbytes if x.requires_grad else 0,
            )
        )
    device = torch.device(device)
    # Non-blocking only towards a GPU: a non-blocking copy from a GPU into host memory may be read
    # before it has landed, so a tower on the CPU receives with a synchronising copy.
    return x.to(device, non_blocking=device.type == "cuda")


def exchange(
    xa: torch.Tensor,
    xb: torch.Tensor,
    devices: tuple[torch.device, torch.device],
    *,
    site: str,
    dim: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both towers receive both towers' maps, concatenated in the fixed order ``[a, b]``.

    Returns ``(on_a, on_b)``: ``cat([xa, xb])`` on ``devices[0]`` and on ``devices[1]``. Used where the
    paper's layers take input from both GPUs (conv3, fc6, fc7, fc8).
    """
    on_a = torch.cat([xa, cross(xb, devices[0], site=site, source="b", target="a")], dim=dim)
    on_b = torch.cat([cross(xa, devices[1], site=site, source="a", target="b"), xb], dim=dim)
    return on_a, on_b


@contextlib.contextmanager
def record_crossings() -> Iterator[list[CrossingRecord]]:
    """Collect a :class:`CrossingRecord` for every :func:`cross` call made inside the block."""
    previous = getattr(_local, "records", None)
    records: list[CrossingRecord] = []
    _local.records = records
    try:
        yield records
    finally:
        _local.records = previous
