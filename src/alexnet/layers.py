"""The paper's non-standard layers: local response normalisation, paper-style dropout, and the
within-map spatial normalisation of Krizhevsky's released configuration.

Krizhevsky et al. (2012), section 3.3 (LRN) and section 4.2 (dropout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def channel_window_sum(sq: torch.Tensor, size: int) -> torch.Tensor:
    """Sum of ``sq`` over a window of ``size`` adjacent channels centred on each channel (dim 1).

    Channels past either edge count as zero, which is the paper's ``max(0, i-n/2) .. min(N-1, i+n/2)``.
    """
    half = size // 2
    channels = sq.shape[1]
    padded = F.pad(sq, (0, 0, 0, 0, half, half))  # (N, C + 2*half, H, W)
    total = padded[:, 0:channels].clone()
    for offset in range(1, size):
        total.add_(padded[:, offset : offset + channels])
    return total


class _LRNFunction(torch.autograd.Function):
    """b = a * s^-β with s = k + α Σ_window a², and its analytic gradient.

    Backward (window symmetric because ``size`` is odd):
    ∂L/∂a_m = g_m s_m^-β − 2αβ a_m Σ_{i ∋ m} g_i a_i s_i^(−β−1).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int) -> torch.Tensor:
        shape = x.shape
        xs = x.reshape(shape[0] * groups, shape[1] // groups, shape[2], shape[3])
        s = channel_window_sum(xs * xs, size).mul_(alpha).add_(k)
        scale = s.pow(-beta)
        out = xs * scale
        ctx.save_for_backward(xs, s, scale)
        ctx.params = (size, alpha, beta)
        return out.reshape(shape)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        xs, s, scale = ctx.saved_tensors
        size, alpha, beta = ctx.params
        g = grad_out.reshape(xs.shape)
        inner = channel_window_sum(g * xs * scale / s, size)
        grad = g * scale - (2.0 * alpha * beta) * xs * inner
        return grad.reshape(grad_out.shape), None, None, None, None, None


def local_response_norm(
    x: torch.Tensor, size: int, alpha: float, beta: float, k: float, groups: int = 1
) -> torch.Tensor:
    """The paper's LRN with α applied exactly as given (no division by ``size``), within each of
    ``groups`` equal blocks of channels (a block = one tower's maps)."""
    if x.dim() != 4:
        raise ValueError(f"local_response_norm expects (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] % groups:
        raise ValueError(f"{x.shape[1]} channels cannot be split into {groups} towers")
    return _LRNFunction.apply(x, size, alpha, beta, k, groups)


class LocalResponseNorm(nn.Module):
    """Section 3.3: b_i = a_i / (k + α Σ_{j=max(0,i−n/2)}^{min(N−1,i+n/2)} a_j²)^β.

    ``alpha`` is the α of the paper's formula. With ``alpha_per_size=True`` the sum is scaled by
    α/n instead (Krizhevsky's cuda-convnet, Caffe and ``nn.LocalResponseNorm``). ``groups`` keeps the
    window inside each tower's maps when both towers' channels are stacked (the grouped twin).
    """

    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0,
        alpha_per_size: bool = False, groups: int = 1,
    ) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LRN size must be a positive odd number, got {size}")
        self.size, self.beta, self.k, self.groups = size, beta, k, groups
        self.alpha = alpha / size if alpha_per_size else alpha  # the α that multiplies the plain sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k, self.groups)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha:g} (applied to the plain sum), beta={self.beta}, k={self.k}, groups={self.groups}"


class SpatialResponseNorm(nn.Module):
    """cuda-convnet's ``rnorm`` layer (in Krizhevsky's released configuration after conv2, not in
    the paper): each map normalised by its own ``size``×``size`` neighbourhood,
    b = a / (k + α/size² Σ_window a²)^β, with zero padding at the borders."""

    def __init__(self, size: int = 5, alpha: float = 1e-3, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"spatial norm size must be a positive odd number, got {size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean_sq = F.avg_pool2d(x * x, self.size, stride=1, padding=self.size // 2, count_include_pad=True)
        return x * (self.k + self.alpha * mean_sq).pow(-self.beta)


class Dropout(nn.Module):
    """Section 4.2 dropout. ``style="paper"``: in training each output is zeroed with probability p
    and left unscaled; at test time every output is multiplied by 1 − p ("we use all the neurons
    but multiply their outputs by 0.5"). ``style="inverted"``: PyTorch's convention (train outputs
    scaled by 1/(1−p), test untouched) — same expected activations, different numbers."""

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
        if self.style == "inverted":
            return F.dropout(x, self.p, self.training)
        if self.training:
            return x * torch.empty_like(x).bernoulli_(1.0 - self.p)
        return x * (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, style={self.style}"
