"""The paper's optimiser and learning-rate schedule (Krizhevsky et al., 2012, section 5).

Eq. (1): v ← μ·v − λ·ε·w − ε·⟨∂L/∂w⟩ ;  w ← w + v   (μ = 0.9, λ = 0.0005, ε = 0.01).

The learning rate ε lives *inside* the momentum buffer. PyTorch's ``torch.optim.SGD`` keeps it
outside (v ← μ·v + g ; w ← w − ε·v), which gives different weights as soon as ε changes, so the
rule is written out here. "We divided the learning rate by 10 when the validation error rate
stopped improving with the current learning rate ... reduced three times prior to termination."
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn


class PaperSGD(torch.optim.Optimizer):
    """Stochastic gradient descent with eq. (1), applied per device and dtype with ``torch._foreach``
    ops (each tower's parameters and momentum stay on the tower's own device).

    Each parameter group carries ``lr`` (ε, already multiplied by ``lr_mult``), ``momentum`` (μ),
    ``weight_decay`` (λ) and ``lr_mult`` (kept so a schedule can set ε for every group at once).
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0.0005) -> None:
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
            buckets: dict[tuple[torch.device, torch.dtype], tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
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
                torch._foreach_mul_(vs, mu)                       # v ← μ·v
                if lam != 0.0:
                    torch._foreach_add_(vs, ps, alpha=-lam * eps)  #     − λ·ε·w
                torch._foreach_add_(vs, gs, alpha=-eps)            #     − ε·∇L
                torch._foreach_add_(ps, vs)                        # w ← w + v
        return loss


def param_groups(model: nn.Module, *, lr: float, weight_decay: float, momentum: float,
                 bias_lr_mult: float = 1.0, bias_decay: bool = True) -> list[dict[str, Any]]:
    """Parameter groups: weights, and biases with their own ε multiplier and optional decay.

    The paper treats all parameters alike (``bias_lr_mult=1``, ``bias_decay=True``: one effective
    rule); Krizhevsky's cuda-convnet configuration uses ε × 2 and no weight decay on biases.
    A parameter is a bias when its name ends in ``bias``.
    """
    weights, biases = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (biases if name.endswith("bias") else weights).append(p)
    groups = [dict(params=weights, lr=lr, lr_mult=1.0, weight_decay=weight_decay, momentum=momentum)]
    if biases:
        groups.append(dict(params=biases, lr=lr * bias_lr_mult, lr_mult=bias_lr_mult,
                           weight_decay=weight_decay if bias_decay else 0.0, momentum=momentum))
    return groups


def named_momentum(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, torch.Tensor]:
    """Momentum buffers keyed by the model's parameter names (parameters not yet stepped get zeros),
    so a checkpoint can store them in a layout independent of the parameter order."""
    out = {}
    for name, p in model.named_parameters():
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        out[name] = buf.detach().clone() if buf is not None else torch.zeros_like(p)
    return out


def load_named_momentum(optimizer: torch.optim.Optimizer, model: nn.Module,
                        buffers: Mapping[str, torch.Tensor]) -> None:
    """Inverse of :func:`named_momentum`; every parameter of ``model`` must have a buffer."""
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(buffers))
    unexpected = sorted(set(buffers) - set(params))
    if missing or unexpected:
        raise KeyError(f"momentum buffers do not match the model: missing {missing[:4]}, unexpected {unexpected[:4]}")
    for name, p in params.items():
        buf = buffers[name]
        if buf.shape != p.shape:
            raise ValueError(f"momentum buffer {name}: shape {tuple(buf.shape)} != parameter {tuple(p.shape)}")
        optimizer.state[p]["momentum_buffer"] = buf.detach().to(device=p.device, dtype=p.dtype).clone()


class LRSchedule:
    """ε = base_lr × lr_mult × 0.1^drops for every parameter group.

    ``mode="plateau"`` (the paper): after each epoch, if the validation error has not improved on
    its best for ``patience`` epochs in a row, divide ε by 10 (and start counting again).
    ``mode="milestones"``: divide ε by 10 when the number of completed epochs reaches each
    milestone (epoch m+1 is the first at the lower rate). Either way, at most ``max_drops`` times.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, *, mode: str = "plateau",
                 patience: int = 5, max_drops: int = 3, milestones: Sequence[int] = (),
                 min_delta: float = 0.0) -> None:
        if mode not in ("plateau", "milestones"):
            raise ValueError(f"schedule mode must be 'plateau' or 'milestones', got {mode!r}")
        if patience < 1:
            raise ValueError(f"plateau patience must be >= 1, got {patience}")
        self.optimizer, self.base_lr, self.mode = optimizer, base_lr, mode
        self.patience, self.max_drops, self.min_delta = patience, max_drops, min_delta
        self.milestones = tuple(sorted(milestones))
        self.drops = 0
        self.best = math.inf
        self.bad_epochs = 0
        self.epochs_seen = 0
        self.apply()

    @property
    def lr(self) -> float:
        """ε of a group with ``lr_mult = 1``."""
        return self.base_lr * 0.1 ** self.drops

    def apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * group.get("lr_mult", 1.0)

    def step(self, val_error: float | None = None) -> bool:
        """Call once after each epoch with its validation error; True when ε was just divided."""
        self.epochs_seen += 1
        dropped = False
        if self.mode == "milestones":
            if self.drops < self.max_drops and self.epochs_seen in self.milestones:
                dropped = True
        elif val_error is not None and math.isfinite(val_error):
            if val_error < self.best - self.min_delta:
                self.best, self.bad_epochs = val_error, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs >= self.patience and self.drops < self.max_drops:
                    dropped, self.bad_epochs = True, 0
        if dropped:
            self.drops += 1
            self.apply()
        return dropped

    def state_dict(self) -> dict[str, Any]:
        return dict(base_lr=self.base_lr, mode=self.mode, drops=self.drops, best=self.best,
                    bad_epochs=self.bad_epochs, epochs_seen=self.epochs_seen)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.drops, self.best = int(state["drops"]), float(state["best"])
        self.bad_epochs, self.epochs_seen = int(state["bad_epochs"]), int(state["epochs_seen"])
        self.apply()


def build_optimizer(model: nn.Module, *, lr: float, momentum: float, weight_decay: float,
                    bias_lr_mult: float = 1.0, bias_decay: bool = True) -> PaperSGD:
    """:class:`PaperSGD` over ``model`` with the weight / bias groups of :func:`param_groups`."""
    groups = param_groups(model, lr=lr, weight_decay=weight_decay, momentum=momentum,
                          bias_lr_mult=bias_lr_mult, bias_decay=bias_decay)
    return PaperSGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
