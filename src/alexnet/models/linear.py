"""The fully-connected layers (fc6, fc7, fc8; Krizhevsky et al. 2012, section 3.5), with a faster
CPU formulation of the same product.

:class:`Linear` is ``nn.Linear``: same parameters, state-dict keys, initialisation and repr, and
``y = x Wᵀ + b``. On the CPU (float32/float64, a batch of vectors, no autocast) it computes the
transposed product ``yᵀ = W xᵀ + b`` instead and returns ``y`` contiguous, as ``F.linear`` does.
The arithmetic is the same (each output a sum over the same K products, in BLAS's own order); what
changes is which operand the BLAS library streams: with PyTorch's MKL on the project's 2-core AMD
EPYC VM, fc6's half (9216 → 2048) at batch 32 takes about 11 instead of 18 ms forward and 32
instead of 39 ms forward + backward (``benchmarks/bench.py`` measures the whole network against
torchvision's AlexNet, whose fully-connected layers are plain ``nn.Linear``; see
docs/performance.md). GPUs, bf16 autocast and ``torch.compile`` keep ``F.linear``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _transposed_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``linear`` takes the transposed product: a 2-D float32/float64 batch on the CPU,
    outside autocast and ``torch.compile`` (which choose their own kernels)."""
    return (
        x.dim() == 2
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and weight.dtype == x.dtype
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``: ``x Wᵀ + b``; on CPU batches computed as ``(W xᵀ + b)ᵀ``
    (:func:`_transposed_ok`), contiguous like ``F.linear``'s output."""
    if not _transposed_ok(x, weight):
        return F.linear(x, weight, bias)
    if bias is None:
        out = torch.mm(weight, x.t())  # (out_features, N)
    else:
        out = torch.addmm(bias.unsqueeze(1), weight, x.t())  # bias broadcast over the batch
    return out.t().contiguous()  # (N, out_features)


class Linear(nn.Linear):
    """``nn.Linear`` (section 3.5's fully-connected layers) computing :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
