"""Overlapping max-pooling (Krizhevsky et al. 2012, section 3.4: windows of z × z = 3 × 3 pixels,
spaced s = 2 apart), with a faster CPU kernel for maps in NCHW order.

:class:`MaxPool` is ``nn.MaxPool2d(kernel, stride)`` (no padding, floor mode): same output, same
gradient, same state (none). On the CPU, for float32/float64 maps in NCHW order, it runs the native
kernel of ``csrc/max_pool_cpu.cpp`` (the same maxima and ties as PyTorch's kernel, bit for bit,
several times faster: PyTorch's NCHW kernel handles one output at a time); everywhere else
(GPUs, channels_last maps, whose PyTorch kernel is already fast, bf16 autocast, no compiler) it is
``F.max_pool2d``.

:func:`norm_then_pool` is ``pool(lrn(x))`` (section 3.3's normalisation, then this pooling, as
conv1 and conv2 run them); where nothing needs the LRN's own output (no autograd: evaluation,
prediction) on channels_last CPU maps, it is one native pass that pools each row of LRN output
while it is in cache, so the full-size normalised maps are never written (bit-identical).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.models import native
from alexnet.models.layers import LocalResponseNorm


class _NativeMaxPoolFunction(torch.autograd.Function):
    """Forward: ``max_pool_forward`` returns the pooled maps and, per output, the window offset of
    its maximum (one byte). Backward: ``max_pool_backward`` adds each output's gradient to the
    input pixel that held its maximum (zero elsewhere), as ``F.max_pool2d``'s gradient does."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        y, argmax = torch.ops.alexnet_native.max_pool_forward(x, kernel, stride)
        ctx.save_for_backward(argmax)
        ctx.params = (x.shape[2], x.shape[3], kernel, stride)
        return y

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if torch.is_grad_enabled():
            raise RuntimeError("the native max-pool has no second derivative; set ALEXNET_NATIVE=0")
        (argmax,) = ctx.saved_tensors
        return torch.ops.alexnet_native.max_pool_backward(grad_out, argmax, *ctx.params), None, None


def _native_ok(x: torch.Tensor) -> bool:
    """Whether the native kernel applies: a float CPU tensor in NCHW order (channels_last maps keep
    PyTorch's own kernel, which is fast there) and the kernels loaded (while ``torch.compile``
    traces, only if loaded beforehand: building is I/O)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.dim() != 4:
        return False
    if not x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last):
        return False  # the second test: a map of 1×1 pixels, or one channel, is both; PyTorch's then
    if torch.compiler.is_compiling():
        return native.loaded()
    return native.load()


def max_pool(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel, stride)``; on NCHW float CPU maps through the native kernel."""
    if _native_ok(x) and x.shape[2] >= kernel and x.shape[3] >= kernel:
        return _NativeMaxPoolFunction.apply(x, kernel, stride)
    return F.max_pool2d(x, kernel, stride)


class MaxPool(nn.MaxPool2d):
    """Section 3.4's pooling layer: ``nn.MaxPool2d(kernel_size, stride)`` with the native CPU kernel
    for NCHW maps (:func:`max_pool`). Its repr and (empty) state are ``nn.MaxPool2d``'s."""

    def __init__(self, kernel_size: int, stride: int) -> None:
        super().__init__(kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool(x, self.kernel_size, self.stride)


def _fused_ok(x: torch.Tensor) -> bool:
    """Whether LRN + max-pool can run as one native pass: no autograd, a float CPU tensor in
    channels_last order, the kernels loaded (not while ``torch.compile`` traces)."""
    if x.requires_grad and torch.is_grad_enabled():
        return False  # training: the pool's backward needs the LRN's output
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.dim() != 4:
        return False
    if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
        return False
    return not torch.compiler.is_compiling() and native.load()


def norm_then_pool(lrn: nn.Module, pool: MaxPool, x: torch.Tensor) -> torch.Tensor:
    """``pool(lrn(x))``: one native pass where :func:`_fused_ok` (the same numbers, bit for bit)."""
    fits = min(x.shape[2], x.shape[3]) >= pool.kernel_size
    if isinstance(lrn, LocalResponseNorm) and fits and _fused_ok(x):
        return torch.ops.alexnet_native.lrn_max_pool_forward(
            x, lrn.size, lrn.alpha, lrn.beta, lrn.k, lrn.groups, lrn.relu, pool.kernel_size, pool.stride
        )
    return pool(lrn(x))
