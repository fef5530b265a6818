"""Crossing accounting: which tensors move between the towers, and how many bytes per image.

Section 3.2: the towers communicate only at conv3 and the fully-connected layers. The report is
measured, not computed by hand: it runs the real forward pass (on the ``meta`` device, so no
arithmetic happens), and its backward pass, under :func:`twogpu.record_crossings`, which sees every
call of the crossing helper and every gradient sent back through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alexnet.config import ModelConfig
from alexnet.model import INPUT_SHAPE, AlexNet
from twogpu import CrossingRecord, record_crossings
from twogpu.replicas import allreduce_bytes_per_step


@dataclass(frozen=True)
class CrossingReport:
    """Every crossing of one training step for a batch size, and the totals."""

    batch_size: int
    records: tuple[CrossingRecord, ...]

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

    def table(self) -> str:
        rows = [f"{'site':<6} {'from':>4} {'to':>3}  {'shape':<22} {'forward B':>12} {'backward B':>12}"]
        for r in self.records:
            rows.append(f"{r.site:<6} {r.source:>4} {r.target:>3}  {str(r.shape):<22} "
                        f"{r.bytes_forward:>12,} {r.bytes_backward:>12,}")
        rows.append(f"total for batch {self.batch_size}: {self.bytes_forward:,} B forward, "
                    f"{self.bytes_backward:,} B backward; {self.bytes_per_image:,.0f} B per image")
        return "\n".join(rows)


def crossing_report(cfg: ModelConfig | str = "paper", batch_size: int = 128,
                    dtype: torch.dtype = torch.float32, training: bool = True) -> CrossingReport:
    """Record each tensor crossing between the towers in one step with ``batch_size`` images.

    ``training=True`` counts each activation's gradient sent back in the backward pass.
    """
    model = AlexNet(devices=("meta", "meta"), preset=cfg, seed=0).to(dtype)
    model.train(training)
    x = torch.zeros((batch_size, *INPUT_SHAPE), device="meta", dtype=dtype)
    with record_crossings() as records, torch.set_grad_enabled(training):
        logits = model(x)
        if training:                         # the gradients' crossings are measured, not assumed
            logits.sum().backward()
    return CrossingReport(batch_size, tuple(records))


def allreduce_table(cfg: ModelConfig | str, batch_size: int, replicas: int, dtype: torch.dtype = torch.float32) -> str:
    """Data-parallel traffic beside the tower crossings, for one step of ``replicas`` replicas.

    Each replica all-reduces every gradient once per step; a ring all-reduce sends and receives
    2·(R−1)/R of those bytes per replica.
    """
    model = AlexNet(devices=("meta", "meta"), preset=cfg, seed=0).to(dtype)
    grads = allreduce_bytes_per_step(model)
    ring = 2 * (replicas - 1) / replicas * grads if replicas > 1 else 0.0
    towers = crossing_report(cfg, batch_size, dtype).bytes_forward * 2
    return "\n".join([
        f"per replica per step (batch {batch_size} per replica, {replicas} replica(s)):",
        f"  between the towers (forward + backward): {towers:>14,} B",
        f"  gradients all-reduced:                   {grads:>14,} B",
        f"  ring all-reduce traffic, each way:       {ring:>14,.0f} B  (2(R-1)/R of the gradients)",
    ])
