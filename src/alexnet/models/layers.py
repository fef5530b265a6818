"""The paper's non-standard layers: local response normalisation, paper-style dropout, and the
within-map spatial normalisation of Krizhevsky's released configuration.

Krizhevsky et al. (2012), section 3.3 (LRN) and section 4.2 (dropout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.models import native


def channel_window_sum(sq: torch.Tensor, size: int, groups: int = 1) -> torch.Tensor:
    """Sum of ``sq`` over a window of ``size`` adjacent channels centred on each channel (dim 1),
    within each of ``groups`` equal blocks of channels.

    Channels past either edge of a block count as zero, which is the paper's
    ``max(0, i-n/2) .. min(N-1, i+n/2)``. Exact (plain additions of shifted channel slices, no
    reshape, so any memory format is kept); used on GPUs, where it is bandwidth-cheap.
    """
    half, per = size // 2, sq.shape[1] // groups
    total = sq.clone()
    for g in range(groups):
        lo, hi = g * per, (g + 1) * per
        for d in range(1, min(half, per - 1) + 1):
            total[:, lo + d : hi].add_(sq[:, lo : hi - d])  # neighbours below: j = i - d
            total[:, lo : hi - d].add_(sq[:, lo + d : hi])  # neighbours above: j = i + d
    return total


def band_weight(channels: int, size: int, groups: int, scale: float, like: torch.Tensor) -> torch.Tensor:
    """1×1 convolution weight ``(channels, channels/groups, 1, 1)`` whose output channel i sums its
    block's input channels j with |i − j| ≤ size//2, each times ``scale``: the LRN window as a matrix."""
    per = channels // groups
    idx = torch.arange(per, device=like.device)
    band = ((idx[:, None] - idx[None, :]).abs() <= size // 2).to(like.dtype) * scale  # (per, per)
    return band.repeat(groups, 1).view(channels, per, 1, 1)


def _windowed(
    sq: torch.Tensor, size: int, groups: int, alpha: float, k: float | None, method: str
) -> torch.Tensor:
    """``k + α Σ_window sq`` (or ``α Σ_window sq`` when ``k`` is None), window inside each group.

    ``method``: ``"mm"`` — per image and tower one (C/g × C/g) banded matrix times the
    (C/g × H·W) maps, a batched GEMM on the NCHW layout as it is; ``"conv"`` — the same banded
    matrix as a 1×1 convolution (channels_last, where it is a plain GEMM); ``"shift"`` — exact
    additions of shifted channel slices. α (and k) are folded into the matrix (and bias).
    """
    if method == "mm" and sq.is_contiguous():
        n, c, h, w = sq.shape
        per = c // groups
        band = band_weight(per, size, 1, alpha, sq).view(1, per, per).expand(n * groups, per, per)
        maps = sq.view(n * groups, per, h * w)  # (N·g, C/g, H·W)
        if k is None:
            return torch.bmm(band, maps).view(n, c, h, w)
        bias = torch.full((1, 1, 1), k, dtype=sq.dtype, device=sq.device)
        return torch.baddbmm(bias, band, maps).view(n, c, h, w)
    if method in ("mm", "conv"):
        c = sq.shape[1]
        bias = None if k is None else torch.full((c,), k, dtype=sq.dtype, device=sq.device)
        return F.conv2d(sq, band_weight(c, size, groups, alpha, sq), bias, groups=groups)
    total = channel_window_sum(sq, size, groups).mul_(alpha)
    return total if k is None else total.add_(k)


def _pow_neg(s: torch.Tensor, beta: float, out: torch.Tensor) -> torch.Tensor:
    """s^−β written into ``out`` (a spare buffer of s's shape); for the paper's β = 0.75 as
    rsqrt(s·sqrt(s)): three cheap passes instead of one transcendental ``pow``."""
    if beta == 0.75:
        return torch.sqrt(s, out=out).mul_(s).rsqrt_()
    return torch.pow(s, -beta, out=out)


def _no_double_backward() -> None:
    """The LRN's gradients are computed, not traced: asking for a graph of them (``create_graph=True``,
    e.g. a gradient penalty) is an error rather than a silently wrong second derivative."""
    if torch.is_grad_enabled():
        raise RuntimeError("the LRN has no second derivative: its backward cannot run with create_graph=True")


class _LRNFunction(torch.autograd.Function):
    """b = a * s^-β with s = k + α Σ_window a², and its analytic gradient.

    Backward (window symmetric because ``size`` is odd):
    ∂L/∂a_m = g_m s_m^-β − 2αβ a_m Σ_{i ∋ m} g_i a_i s_i^(−β−1).
    Saves x, s and s^−β (not the output); few temporaries, mostly updated in place, because on the
    CPU each fresh large tensor costs page faults as well as a pass over memory.
    """

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int, method: str
    ) -> torch.Tensor:
        sq = x * x
        s = _windowed(sq, size, groups, alpha, k, method)  # k + α Σ a²
        scale = _pow_neg(s, beta, out=sq)  # s^-β, in sq's buffer (no new tensor)
        ctx.save_for_backward(x, s, scale)
        ctx.params = (size, alpha, beta, groups, method)
        return x * scale

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        _no_double_backward()
        x, s, scale = ctx.saved_tensors
        size, alpha, beta, groups, method = ctx.params
        grad = grad_out * scale  # g s^-β
        t = grad * x
        t.div_(s)  # g a s^(-β-1)
        inner = _windowed(t, size, groups, alpha, None, method)  # α Σ_{i ∋ m} g_i a_i s_i^(-β-1)
        del t
        grad.addcmul_(x, inner, value=-2.0 * beta)
        return grad, None, None, None, None, None, None


class _FusedLRNFunction(torch.autograd.Function):
    """The same function and gradient as :class:`_LRNFunction`, each one fused native CPU kernel
    (``alexnet/csrc/lrn_cpu.cpp``): one pass over memory each way; only the input is saved. With
    ``relu`` the kernels normalise ``max(x, 0)`` and return the gradient through the ReLU too."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int, relu: bool
    ) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.params = (size, alpha, beta, k, groups, relu)
        return torch.ops.alexnet_native.lrn_forward(x, size, alpha, beta, k, groups, relu)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        _no_double_backward()
        (x,) = ctx.saved_tensors
        grad = torch.ops.alexnet_native.lrn_backward(grad_out, x, *ctx.params)
        return grad, None, None, None, None, None, None


def _fused_ok(x: torch.Tensor) -> bool:
    """Whether the fused CPU kernel applies to ``x`` (and could be built and loaded). While
    ``torch.compile`` traces, only a kernel loaded beforehand is used (building is I/O)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if torch.compiler.is_compiling():
        return native.loaded()
    return native.load()


def local_response_norm(
    x: torch.Tensor,
    size: int,
    alpha: float,
    beta: float,
    k: float,
    groups: int = 1,
    window: str = "auto",
    relu: bool = False,
) -> torch.Tensor:
    """The paper's LRN with α applied exactly as given (no division by ``size``), within each of
    ``groups`` equal blocks of channels (a block = one tower's maps). With ``relu`` it normalises
    ``max(x, 0)``: the ReLU of the layer below, fused into the CPU kernel (no pass over memory for
    the ReLU or its gradient; a separate ``F.relu`` on the eager paths).

    ``window`` chooses the implementation: ``"fused"`` (one native CPU kernel each way,
    ``alexnet.models.native``; compiled on first use), ``"mm"`` (eager, the window sum a banded matrix
    product batched over images; channels_last maps use ``"conv"``, the same matrix as a 1×1
    convolution), ``"shift"`` (eager, added shifted slices; exact fp32 additions, used on GPUs,
    where matrix products may run in TF32), or ``"auto"`` (fused on the CPU when the kernel is
    available, else mm/conv; shift elsewhere). Half-precision inputs (autocast) are normalised in
    float32 and returned in their
    own dtype.
    """
    if x.dim() != 4:
        raise ValueError(f"local_response_norm expects (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] % groups:
        raise ValueError(f"{x.shape[1]} channels cannot be split into {groups} towers")
    if window not in ("auto", "fused", "mm", "conv", "shift"):
        raise ValueError(f"LRN window must be 'auto', 'fused', 'mm', 'conv' or 'shift', got {window!r}")
    dtype = x.dtype
    if dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    method = window
    if window == "auto":
        if x.device.type != "cpu":
            method = "shift"
        else:
            method = "fused" if _fused_ok(x) else ("mm" if x.is_contiguous() else "conv")
    elif window == "fused" and not _fused_ok(x):
        raise RuntimeError(
            f"LRN window='fused' needs a float CPU tensor and the native kernel; "
            f"got {x.dtype} on {x.device}; kernel: {native.status()}"
        )
    if method == "fused":
        apply = lambda: _FusedLRNFunction.apply(x, size, alpha, beta, k, groups, relu)  # noqa: E731
    else:
        x = F.relu(x) if relu else x
        apply = lambda: _LRNFunction.apply(x, size, alpha, beta, k, groups, method)  # noqa: E731
    if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            out = apply()
    else:
        out = apply()
    return out.to(dtype)


class LocalResponseNorm(nn.Module):
    """Section 3.3: b_i = a_i / (k + α Σ_{j=max(0,i−n/2)}^{min(N−1,i+n/2)} a_j²)^β.

    ``alpha`` is the α of the paper's formula. With ``alpha_per_size=True`` the sum is scaled by
    α/n instead (Krizhevsky's cuda-convnet, Caffe and ``nn.LocalResponseNorm``). ``groups`` keeps the
    window inside each tower's maps when both towers' channels are stacked (the grouped twin).
    ``relu=True`` normalises ``max(x, 0)``: the ReLU of the conv layer below (section 3.1) fused in,
    the same numbers as ``ReLU`` then LRN, one pass over memory fewer each way on the CPU.
    """

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        alpha_per_size: bool = False,
        groups: int = 1,
        relu: bool = False,
    ) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LRN size must be a positive odd number, got {size}")
        self.size, self.beta, self.k, self.groups, self.relu = size, beta, k, groups, relu
        self.alpha = alpha / size if alpha_per_size else alpha  # the α that multiplies the plain sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.groups, relu=self.relu)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, alpha={self.alpha:g} (applied to the plain sum), beta={self.beta}, "
            f"k={self.k}, groups={self.groups}" + (", relu=True (ReLU fused before)" if self.relu else "")
        )


class SpatialResponseNorm(nn.Module):
    """cuda-convnet's ``rnorm`` layer (in Krizhevsky's released configuration after conv2, not in
    the paper): each map normalised by its own ``size``×``size`` neighbourhood,
    b = a / (k + α/size² Σ_window a²)^β, with zero padding at the borders.

    Like the LRN, it is computed in float32 with autocast off and returned in its input's dtype, so
    under bf16 autocast the maps after it (conv2's output, which crosses to the other tower at
    conv3) stay bf16 instead of being promoted to float32 by ``pow``."""

    def __init__(self, size: int = 5, alpha: float = 1e-3, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"spatial norm size must be a positive odd number, got {size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean_sq = F.avg_pool2d(x * x, self.size, stride=1, padding=self.size // 2, count_include_pad=True)
        return x * (self.k + self.alpha * mean_sq).pow(-self.beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self._normalise(x).to(dtype)
        return self._normalise(x).to(dtype)


class Dropout(nn.Module):
    """Section 4.2 dropout. ``style="paper"``: in training each output is zeroed with probability p
    and left unscaled; at test time every output is multiplied by 1 − p ("we use all the neurons
    but multiply their outputs by 0.5"). ``style="inverted"``: cuda-convnet2's and PyTorch's
    convention (train outputs scaled by 1/(1−p), test untouched) — same expected activations,
    different numbers. Both draw the same Bernoulli mask from the same generator."""

    def __init__(self, p: float = 0.5, style: str = "paper") -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        if style not in ("paper", "inverted"):
            raise ValueError(f"dropout style must be 'paper' or 'inverted', got {style!r}")
        self.p, self.style = p, style

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0:
            return x
        inverted = self.style == "inverted"
        if self.training:  # cuda-convnet2 layer.cuh DropoutSmallerThanOperator: (u < keep) × 1/keep
            mask = torch.empty_like(x).bernoulli_(1.0 - self.p)
            return x * (mask.div_(1.0 - self.p) if inverted else mask)
        return x if inverted else x * (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, style={self.style}"
