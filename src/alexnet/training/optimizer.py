"""The paper's optimiser (Krizhevsky et al., 2012, section 5): the update rule, the parameter groups
and the momentum buffers by parameter name (for checkpoints).

Eq. (1): v ← μ·v − λ·ε·w − ε·⟨∂L/∂w⟩ ;  w ← w + v   (μ = 0.9, λ = 0.0005, ε = 0.01).

The learning rate ε lives *inside* the momentum buffer. PyTorch's ``torch.optim.SGD`` keeps it
outside (v ← μ·v + g ; w ← w − ε·v), which gives different weights as soon as ε changes, so the
rule is written out here (cuda-convnet2's ``Weights::update`` in ``weights.cu`` is the same rule).
The schedules that set ε are in :mod:`.schedules`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn


class PaperSGD(torch.optim.Optimizer):
    """Stochastic gradient descent with eq. (1), applied per device and dtype with ``torch._foreach``
    ops (each tower's parameters and momentum stay on the tower's own device).

    Each parameter group carries ``lr`` (ε, already multiplied by ``lr_mult``), ``momentum`` (μ),
    ``weight_decay`` (λ) and ``lr_mult`` (kept so a schedule can set ε for every group at once).
    """

    def __init__(
        self, params: Iterable[Any], lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0005
    ) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, lr_mult=1.0))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            eps, mu, lam = group["lr"], group["momentum"], group["weight_decay"]
            buckets: dict[tuple[torch.device, torch.dtype], tuple[list, list, list]] = defaultdict(
                lambda: ([], [], [])
            )
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("PaperSGD does not support sparse gradients")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ps, gs, vs = buckets[(p.device, p.dtype)]
                ps.append(p)
                gs.append(p.grad)
                vs.append(state["momentum_buffer"])
            for ps, gs, vs in buckets.values():
                torch._foreach_mul_(vs, mu)  # v ← μ·v
                if lam != 0.0:
                    torch._foreach_add_(vs, ps, alpha=-lam * eps)  #     − λ·ε·w
                torch._foreach_add_(vs, gs, alpha=-eps)  #     − ε·∇L
                torch._foreach_add_(ps, vs)  # w ← w + v
        return loss


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    bias_lr_mult: float = 1.0,
    bias_decay: bool = True,
) -> list[dict[str, Any]]:
    """Parameter groups: weights, and biases with their own ε multiplier and optional decay.

    The paper treats all parameters alike (``bias_lr_mult=1``, ``bias_decay=True``: one effective
    rule); cuda-convnet2's imagenet-2gpu-model configuration starts biases at ε × 2 (0.04 vs 0.02)
    with no weight decay. Each group's ``kind`` ('weight' or 'bias') lets a schedule treat them
    apart ('dexp'). A parameter is a bias when its name ends in ``bias``.
    """
    weights, biases = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.endswith("bias") else weights).append(p)
    groups = [
        dict(params=weights, lr=lr, lr_mult=1.0, kind="weight", weight_decay=weight_decay, momentum=momentum)
    ]
    if biases:
        groups.append(
            dict(
                params=biases,
                lr=lr * bias_lr_mult,
                lr_mult=bias_lr_mult,
                kind="bias",
                weight_decay=weight_decay if bias_decay else 0.0,
                momentum=momentum,
            )
        )
    return groups


def named_momentum(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, torch.Tensor]:
    """Momentum buffers keyed by the model's parameter names (parameters not yet stepped get zeros),
    so a checkpoint can store them in a layout independent of the parameter order."""
    out = {}
    for name, p in model.named_parameters():
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        out[name] = buf.detach().clone() if buf is not None else torch.zeros_like(p)
    return out


def load_named_momentum(
    optimizer: torch.optim.Optimizer, model: nn.Module, buffers: Mapping[str, torch.Tensor]
) -> None:
    """Inverse of :func:`named_momentum`; every parameter of ``model`` must have a buffer."""
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(buffers))
    unexpected = sorted(set(buffers) - set(params))
    if missing or unexpected:
        raise KeyError(
            f"momentum buffers do not match the model: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    for name, p in params.items():
        buf = buffers[name]
        if buf.shape != p.shape:
            raise ValueError(
                f"momentum buffer {name}: shape {tuple(buf.shape)} != parameter {tuple(p.shape)}"
            )
        optimizer.state[p]["momentum_buffer"] = buf.detach().to(device=p.device, dtype=p.dtype).clone()


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    bias_lr_mult: float = 1.0,
    bias_decay: bool = True,
) -> PaperSGD:
    """:class:`PaperSGD` over ``model`` with the weight / bias groups of :func:`param_groups`."""
    groups = param_groups(
        model,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        bias_lr_mult=bias_lr_mult,
        bias_decay=bias_decay,
    )
    return PaperSGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
