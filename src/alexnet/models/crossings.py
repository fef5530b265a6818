"""Crossing accounting: which tensors move between the towers (and to them), and how many bytes per image.

Section 3.2: the towers communicate only at conv3 and the fully-connected layers. The report is
measured, not computed by hand: it runs the real forward pass (on the ``meta`` device, so no
arithmetic happens), and its backward pass, under :func:`twogpu.record_crossings`, which sees every
call of the crossing helper and every gradient sent back through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alexnet.config import ModelConfig
from alexnet.models.model import AlexNet
from twogpu import CrossingRecord, feed, record_crossings
from twogpu.replicas import allreduce_bytes_per_step


@dataclass(frozen=True)
class CrossingReport:
    """Every crossing of one training step for a batch size, and the totals; the input feed apart."""

    batch_size: int
    records: tuple[CrossingRecord, ...]
    """The crossings between the towers (conv3, fc6, fc7, fc8)."""
    feed: tuple[CrossingRecord, ...] = ()
    """The input fed to each tower on two devices: the uint8 batch from the host, and the lighting
    offsets from tower a to tower b in training (not crossings: not counted in the totals)."""

    @property
    def bytes_forward(self) -> int:
        return sum(r.bytes_forward for r in self.records)

    @property
    def bytes_backward(self) -> int:
        return sum(r.bytes_backward for r in self.records)

    @property
    def bytes_per_image(self) -> float:
        """Forward plus backward bytes crossing between the towers, per image."""
        return (self.bytes_forward + self.bytes_backward) / self.batch_size

    @property
    def feed_bytes_per_image(self) -> float:
        return sum(r.bytes_forward for r in self.feed) / self.batch_size

    def table(self) -> str:
        rows = [f"{'site':<6} {'from':>4} {'to':>3}  {'shape':<22} {'forward B':>12} {'backward B':>12}"]
        for r in self.records + self.feed:
            rows.append(
                f"{r.site:<6} {r.source:>4} {r.target:>3}  {str(r.shape):<22} "
                f"{r.bytes_forward:>12,} {r.bytes_backward:>12,}"
            )
        rows.append(
            f"total for batch {self.batch_size}: {self.bytes_forward:,} B forward, "
            f"{self.bytes_backward:,} B backward; {self.bytes_per_image:,.0f} B per image"
        )
        if self.feed:
            rows.append(
                f"feed (towers on two devices; not a crossing): {self.feed_bytes_per_image:,.0f} B per image"
            )
        return "\n".join(rows)


def crossing_report(
    cfg: ModelConfig | str = "paper",
    batch_size: int = 128,
    dtype: torch.dtype = torch.float32,
    training: bool = True,
    lighting: bool = True,
) -> CrossingReport:
    """Record each tensor crossing between the towers in one step with ``batch_size`` images.

    ``training=True`` counts each activation's gradient sent back in the backward pass. The feed
    is recorded as :meth:`alexnet.data.pipeline.ImagePipeline.to_tower_inputs` sends it on two devices: the
    uint8 batch from the host to each tower, and (``lighting`` in training) each image's lighting
    offset from tower a to tower b.
    """
    model = AlexNet(devices=("meta", "meta"), preset=cfg, seed=0).to(dtype)
    model.train(training)
    devices = (torch.device("meta"), torch.device("meta"))
    host = torch.empty((batch_size, *model.input_shape), dtype=torch.uint8)  # the batch as loaded
    with record_crossings() as records, torch.set_grad_enabled(training):
        xa, xb = feed(host, devices)
        if training and lighting:
            feed(torch.empty((batch_size, 3), device="meta"), devices)
        logits = model((xa.to(dtype), xb.to(dtype)))
        if training:  # the gradients' crossings are measured, not assumed
            logits.sum().backward()
    crossings = tuple(r for r in records if r.site != "feed")
    return CrossingReport(batch_size, crossings, tuple(r for r in records if r.site == "feed"))


def allreduce_table(
    cfg: ModelConfig | str, batch_size: int, replicas: int, dtype: torch.dtype = torch.float32
) -> str:
    """Data-parallel traffic beside the tower crossings, for one step of ``replicas`` replicas.

    Each replica all-reduces every gradient once per step; a ring all-reduce sends and receives
    2·(R−1)/R of those bytes per replica.
    """
    model = AlexNet(devices=("meta", "meta"), preset=cfg, seed=0).to(dtype)
    grads = allreduce_bytes_per_step(model)
    ring = 2 * (replicas - 1) / replicas * grads if replicas > 1 else 0.0
    towers = crossing_report(cfg, batch_size, dtype).bytes_forward * 2
    return "\n".join(
        [
            f"per replica per step (batch {batch_size} per replica, {replicas} replica(s)):",
            f"  between the towers (forward + backward): {towers:>14,} B",
            f"  gradients all-reduced:                   {grads:>14,} B",
            f"  ring all-reduce traffic, each way:       {ring:>14,.0f} B  (2(R-1)/R of the gradients)",
        ]
    )
