"""The cross-tower exchange: the only place where activations move between the two towers.

Krizhevsky et al. (2012), section 3.2: "the GPUs communicate only in certain layers". Every such
communication in the network goes through :func:`cross` (the autograd function :class:`Cross`),
so the crossings can be found, counted and measured. :func:`record_crossings` captures each
crossing's site, direction, shape and bytes, forward and (when it runs) backward.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

_local = threading.local()


@dataclass
class CrossingRecord:
    """One tensor that crossed from one tower to the other (forward), and its gradient (backward)."""

    site: str
    """Where in the network the crossing happens (e.g. ``"conv3"``, ``"fc6"``)."""
    source: str
    """Tower the tensor leaves (``"a"`` or ``"b"``; ``"host"`` for the input feed)."""
    target: str
    """Tower the tensor arrives at."""
    shape: tuple[int, ...]
    """Shape of the crossing tensor, batch dimension included."""
    bytes_forward: int
    """Bytes sent forward (the activation)."""
    bytes_backward: int = 0
    """Bytes of the activation's gradient sent back, added by the backward pass when it runs (0 until
    then, and without autograd)."""


def _copy(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    # Non-blocking only towards a GPU: a non-blocking copy from a GPU into host memory may be read
    # before it has landed, so a tower on the CPU receives with a synchronising copy.
    return x.to(device, non_blocking=device.type == "cuda")


class Cross(torch.autograd.Function):
    """The crossing between the towers, both directions (as Megatron-LM names each communication).

    forward: copy the activation to the other tower's device.
    backward: copy the gradient back to the sending tower's device; the bytes that really cross
    are added to the crossing's :class:`CrossingRecord` when one is being recorded.
    """

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, device: torch.device, record: CrossingRecord | None
    ) -> torch.Tensor:
        ctx.source_device, ctx.record = x.device, record
        out = _copy(x, device)
        return out.view_as(out) if out is x else out  # a new tensor, even on one device

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        if ctx.record is not None:
            ctx.record.bytes_backward += grad.numel() * grad.element_size()
        return _copy(grad, ctx.source_device), None, None


def cross(
    x: torch.Tensor, device: torch.device | str, *, site: str, source: str, target: str
) -> torch.Tensor:
    """Send tower ``source``'s activation ``x`` to tower ``target`` living on ``device``.

    forward: copy to the other tower (non-blocking towards a GPU, so it overlaps with compute);
    backward: copy the gradient back (:class:`Cross`). On a single device no bytes move, but the
    crossing is still recorded: it is a property of the network, not of the placement.
    """
    return Cross.apply(x, torch.device(device), record_transfer(x, site=site, source=source, target=target))


def record_transfer(x: torch.Tensor, *, site: str, source: str, target: str) -> CrossingRecord | None:
    """Inside :func:`record_crossings`, record that ``x`` goes from ``source`` to ``target`` (a
    crossing, or the input feed: ``site="feed"``); returns the record (None outside)."""
    records = getattr(_local, "records", None)
    if records is None:
        return None
    record = CrossingRecord(
        site=site,
        source=source,
        target=target,
        shape=tuple(x.shape),
        bytes_forward=x.numel() * x.element_size(),
    )
    records.append(record)
    return record


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


def gather(
    xa: torch.Tensor, xb: torch.Tensor, device_a: torch.device, *, site: str, dim: int = 1
) -> torch.Tensor:
    """Tower a alone receives both towers' parts, ``cat([xa, xb])`` on ``device_a``; tower b receives
    nothing (the logits of a split fc8, or cuda-convnet's fc8 input on GPU 0)."""
    return torch.cat([xa, cross(xb, device_a, site=site, source="b", target="a")], dim=dim)


@contextlib.contextmanager
def record_crossings() -> Iterator[list[CrossingRecord]]:
    """Collect a :class:`CrossingRecord` for every :func:`cross` call made inside the block, and one
    per tower for every input fed (:func:`twogpu.feed`, ``site="feed"``)."""
    previous = getattr(_local, "records", None)
    records: list[CrossingRecord] = []
    _local.records = records
    try:
        yield records
    finally:
        _local.records = previous
