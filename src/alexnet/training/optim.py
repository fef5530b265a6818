"""The paper's optimiser and learning-rate schedule (Krizhevsky et al., 2012, section 5).

Eq. (1): v ← μ·v − λ·ε·w − ε·⟨∂L/∂w⟩ ;  w ← w + v   (μ = 0.9, λ = 0.0005, ε = 0.01).

The learning rate ε lives *inside* the momentum buffer. PyTorch's ``torch.optim.SGD`` keeps it
outside (v ← μ·v + g ; w ← w − ε·v), which gives different weights as soon as ε changes, so the
rule is written out here (cuda-convnet2's ``Weights::update`` in ``weights.cu`` is the same rule).
:class:`LRSchedule` holds the paper's plateau rule and cuda-convnet2's discrete exponential one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
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
    with no weight decay. Each group's ``kind`` ('weight' or 'bias') picks its 'dexp' schedule.
    A parameter is a bias when its name ends in ``bias``.
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


def dexp_rates(base: float, factor: float, steps: int) -> list[float]:
    """cuda-convnet2's ``DiscreteExpParameterSchedule`` (``cudaconvnet/src/lr.cu``): ``steps`` rates
    falling geometrically from ``base`` to ``base / factor``, rate i = base · factor^(−i/(steps−1))."""
    if steps == 1:
        return [base / factor]  # lr.cu: no intermediate rates, then the final one
    return [base * (1.0 / factor) ** (i / (steps - 1)) for i in range(steps - 1)] + [base / factor]


def dexp_value(rates: Sequence[float], progress: float) -> float:
    """The rate at ``progress`` (fraction of training done): rate i while progress ≤ (i+1)/steps
    (lr.cu ``DiscreteExpParameterSchedule::getValue``)."""
    for i, rate in enumerate(rates):
        if progress <= (i + 1) / len(rates):
            return rate
    return rates[-1]


class LRSchedule:
    """The learning rate ε of every parameter group, in one of three modes.

    ``mode="plateau"`` (the paper, section 5: "divide the learning rate by 10 when the validation
    error rate stopped improving with the current learning rate ... reduced three times prior to
    termination"): ε = base_lr × lr_mult × 0.1^drops. After each epoch's validation, an epoch
    improves when its error is below the best so far by more than ``min_delta``; ε is divided by 10
    when ``patience`` epochs in a row have not improved — but never before ``min_epochs`` epochs at
    the current rate (so early noise cannot fire it), and always once ``max_epochs`` epochs have
    passed at one rate (so a curve that keeps creeping down still gets its drops; 0 = no limit).
    At most ``max_drops`` times.

    ``mode="milestones"``: divide ε by 10 when the number of completed epochs reaches each
    milestone (epoch m+1 is the first at the lower rate), at most ``max_drops`` times.

    ``mode="dexp"`` (cuda-convnet2's imagenet-2gpu-model configuration): weights follow
    :func:`dexp_rates` ``(base_lr, dexp_factor, dexp_steps)`` and biases
    ``(base_lr × bias lr_mult, dexp_bias_factor, dexp_bias_steps)``, by progress = steps done /
    ``total_steps`` (call :meth:`before_step` before each optimiser step).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        base_lr: float,
        *,
        mode: str = "plateau",
        patience: int = 5,
        max_drops: int = 3,
        milestones: Sequence[int] = (),
        min_delta: float = 0.0,
        min_epochs: int = 0,
        max_epochs: int = 0,
        total_steps: int = 0,
        dexp: tuple[float, int] = (250.0, 4),
        dexp_bias: tuple[float, int] = (25.0, 2),
    ) -> None:
        if mode not in ("plateau", "milestones", "dexp"):
            raise ValueError(f"schedule mode must be 'plateau', 'milestones' or 'dexp', got {mode!r}")
        if patience < 1:
            raise ValueError(f"plateau patience must be >= 1, got {patience}")
        if mode == "dexp" and total_steps < 1:
            raise ValueError("the 'dexp' schedule needs the planned number of steps (total_steps >= 1)")
        self.optimizer, self.base_lr, self.mode = optimizer, base_lr, mode
        self.patience, self.max_drops, self.min_delta = patience, max_drops, min_delta
        self.min_epochs, self.max_epochs = min_epochs, max_epochs
        self.milestones = tuple(sorted(milestones))
        self.total_steps, self.dexp, self.dexp_bias = total_steps, dexp, dexp_bias
        self.drops = 0
        self.best = math.inf
        self.bad_epochs = 0
        self.epochs_seen = 0
        self.epochs_at_rate = 0
        self.steps_done = 0
        self.apply()

    @property
    def progress(self) -> float:
        """Fraction of the planned training steps done ('dexp')."""
        return min(1.0, self.steps_done / self.total_steps) if self.total_steps else 0.0

    def rate(self, lr_mult: float = 1.0, kind: str = "weight") -> float:
        """ε now of a group with ``lr_mult`` holding ``kind`` ('weight' or 'bias': 'dexp' gives each
        its own schedule)."""
        if self.mode == "dexp":
            factor, steps = self.dexp_bias if kind == "bias" else self.dexp
            return dexp_value(dexp_rates(self.base_lr * lr_mult, factor, steps), self.progress)
        return self.base_lr * lr_mult * 0.1**self.drops

    @property
    def lr(self) -> float:
        """ε of the weights (a group with ``lr_mult = 1``)."""
        return self.rate(1.0)

    def apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate(group.get("lr_mult", 1.0), group.get("kind", "weight"))

    def before_step(self) -> None:
        """Set ε for the step about to be taken ('dexp'; other modes change ε only between epochs)."""
        if self.mode == "dexp":
            self.apply()
        self.steps_done += 1

    def step(self, val_error: float | None = None) -> bool:
        """Call once after each epoch with its validation error; True when ε was just divided."""
        self.epochs_seen += 1
        self.epochs_at_rate += 1
        dropped = False
        if self.mode == "milestones":
            if self.drops < self.max_drops and self.epochs_seen in self.milestones:
                dropped = True
        elif self.mode == "plateau":
            if val_error is not None and math.isfinite(val_error):  # no or a NaN validation: no count
                if val_error < self.best - self.min_delta:
                    self.best, self.bad_epochs = val_error, 0
                else:
                    self.bad_epochs += 1
            plateau = self.bad_epochs >= self.patience and self.epochs_at_rate >= self.min_epochs
            overdue = self.max_epochs > 0 and self.epochs_at_rate >= self.max_epochs
            dropped = (plateau or overdue) and self.drops < self.max_drops
        if dropped:
            self.drops += 1
            self.bad_epochs = self.epochs_at_rate = 0
            self.apply()
        return dropped

    def state_dict(self) -> dict[str, Any]:
        return dict(
            base_lr=self.base_lr,
            mode=self.mode,
            drops=self.drops,
            best=self.best,
            bad_epochs=self.bad_epochs,
            epochs_seen=self.epochs_seen,
            epochs_at_rate=self.epochs_at_rate,
            steps_done=self.steps_done,
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.drops, self.best = int(state["drops"]), float(state["best"])
        self.bad_epochs, self.epochs_seen = int(state["bad_epochs"]), int(state["epochs_seen"])
        self.epochs_at_rate = int(state.get("epochs_at_rate", state["epochs_seen"]))
        self.steps_done = int(state.get("steps_done", 0))
        self.apply()


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
