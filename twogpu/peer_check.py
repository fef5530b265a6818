"""A guard on GPU-to-GPU copies, run before the first step when the towers are on two GPUs.

The two towers exchange activations and gradients at every crossing (Krizhevsky et al. 2012,
section 3.2: "the GPUs communicate only in certain layers"), by direct GPU-to-GPU copies. On some
multi-GPU machines such a copy silently returns wrong data (IOMMU or PCIe ACS settings: PyTorch
issues 84803, 87363 on A100 PCIe, 96600, 132397, 157398), and the network would train on garbage
without a word. :func:`check_peer_copies` sends a known pattern ``a → b → a`` directly and the same
data through the host at every hop, compares the three, and raises :class:`PeerCopyError` naming
the likely cause and what to do when they differ. A 8 MiB round trip: milliseconds on a GPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

PATTERN_BYTES = 8 * 2**20 + 13
"""Bytes sent: large enough for the DMA engines' bulk path, an odd length for the tail."""

Hop = Callable[[torch.Tensor, torch.device, torch.device], torch.Tensor]
"""``hop(tensor, source, target)``: the tensor, which lives on ``source``, copied to ``target``."""

ADVICE = (
    "The likely cause is the machine's IOMMU or PCIe ACS setting (PyTorch issues 84803, 87363 on "
    "A100 PCIe, 96600, 132397, 157398): set the IOMMU to pass-through (kernel option iommu=pt, or "
    "turn it off in the BIOS) or disable ACS, reboot and try again; meanwhile train both towers on "
    "one GPU: --set train.devices='[\"cuda:0\", \"cuda:0\"]' or `make train-1gpu DATA=...`."
)


class PeerCopyError(RuntimeError):
    """GPU-to-GPU copies on this machine change the data they carry."""


def _torch_hop(t: torch.Tensor, source: torch.device, target: torch.device) -> torch.Tensor:
    return t.to(target)


def pattern(nbytes: int = PATTERN_BYTES, seed: int = 0) -> torch.Tensor:
    """Seeded random bytes on the host: any corrupted, dropped or shifted byte shows."""
    g = torch.Generator().manual_seed(seed)
    words = torch.randint(-(2**63), 2**63 - 1, (-(-nbytes // 8),), dtype=torch.int64, generator=g)
    return words.view(torch.uint8)[:nbytes]


def round_trip(
    sent: torch.Tensor, a: torch.device, b: torch.device, hop: Hop = _torch_hop
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(direct, staged)``, both back on the host: ``sent`` copied host → a → b → a directly
    between the devices, and the same copy of it on ``a`` sent to ``b`` and back through the host
    at every hop (a → host → b → host → a)."""
    host = torch.device("cpu")
    on_a = hop(sent, host, a)
    direct = hop(hop(hop(on_a, a, b), b, a), a, host)
    staged = on_a
    for source, target in ((a, host), (host, b), (b, host), (host, a), (a, host)):
        staged = hop(staged, source, target)
    return direct, staged


def _differences(x: torch.Tensor, y: torch.Tensor) -> str | None:
    if x.shape != y.shape:
        return f"{y.numel()} bytes came back instead of {x.numel()}"
    if torch.equal(x, y):
        return None
    wrong = (x != y).nonzero().flatten()
    return f"{len(wrong)} of {x.numel()} bytes differ, the first at byte {int(wrong[0])}"


def compare(sent: torch.Tensor, direct: torch.Tensor, staged: torch.Tensor) -> str | None:
    """What went wrong, in words, or None when the direct and the staged round trips both returned
    ``sent`` (three host tensors of bytes)."""
    through_host = _differences(sent, staged)
    if through_host is not None:
        return f"even the copy through the host came back changed ({through_host})"
    peer = _differences(staged, direct)
    if peer is not None:
        return f"the direct copy differs from the same data sent through the host ({peer})"
    return None


def peer_access(a: torch.device, b: torch.device) -> bool:
    """Whether each GPU can reach the other's memory directly; PyTorch then copies between them
    peer to peer (else the driver stages the copies through host memory)."""
    i, j = a.index or 0, b.index or 0
    return bool(torch.cuda.can_device_access_peer(i, j) and torch.cuda.can_device_access_peer(j, i))


def check_peer_copies(a: torch.device, b: torch.device, *, hop: Hop = _torch_hop) -> str | None:
    """On two different GPUs: the round trip of :func:`round_trip`, a line for the log (the peer
    access and the time taken), or :class:`PeerCopyError` when the data came back changed. None
    (nothing checked) when the towers are not on two different GPUs."""
    if not (a.type == b.type == "cuda" and a != b):
        return None
    t0 = time.perf_counter()
    peer = "on" if peer_access(a, b) else "off (copies staged through host memory)"
    sent = pattern()
    problem = compare(sent, *round_trip(sent, a, b, hop))
    where = f"{a} -> {b} -> {a}"
    if problem is not None:
        raise PeerCopyError(
            f"GPU-to-GPU copies return wrong data on this machine: a {sent.numel()}-byte pattern sent "
            f"{where} (peer access {peer}): {problem}. The towers exchange activations this way at "
            f"every step, so training would silently use corrupted data. {ADVICE}"
        )
    ms = 1000 * (time.perf_counter() - t0)
    return (
        f"GPU-to-GPU copies checked: {sent.numel() / 2**20:.0f} MiB {where} intact, peer access {peer} "
        f"({ms:.0f} ms)"
    )
