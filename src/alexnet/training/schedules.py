"""Learning-rate schedules: the ε of every parameter group of a :class:`~.optimizer.PaperSGD`, one
class per rule, and :func:`schedule_from` that picks one from ``optim.schedule``.

Each schedule sets ``group["lr"] = rate(group)`` for every group, where a group carries ``lr_mult``
(its ε multiplier, e.g. 2 for biases) and ``kind`` ('weight' or 'bias'). The trainer calls
:meth:`Schedule.before_step` before each optimiser step and :meth:`Schedule.end_epoch` after each
epoch's validation; :meth:`Schedule.state_dict` goes into every checkpoint so that a resumed run sets
exactly the rates of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from alexnet.config import OptimConfig


class Schedule:
    """What every schedule counts: optimiser steps taken and epochs ended. Subclasses give
    :meth:`rate` and, for rules that divide ε by 10 between epochs, :meth:`_divide_now`."""

    kind = ""
    """The ``optim.schedule`` value of this rule; saved with the state."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, max_drops: int = 0) -> None:
        self.optimizer, self.base_lr, self.max_drops = optimizer, base_lr, max_drops
        self.drops = 0  # times ε was divided by 10
        self.steps_done = 0
        self.epochs_seen = 0
        self.apply()

    def rate(self, lr_mult: float = 1.0, kind: str = "weight") -> float:
        """ε now of a group with ``lr_mult`` holding ``kind`` ('weight' or 'bias')."""
        return self.base_lr * lr_mult * 0.1**self.drops

    @property
    def lr(self) -> float:
        """ε of the weights (a group with ``lr_mult = 1``)."""
        return self.rate(1.0)

    def apply(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate(group.get("lr_mult", 1.0), group.get("kind", "weight"))

    def before_step(self) -> None:
        """Called before each optimiser step."""
        self.steps_done += 1

    def end_epoch(self, val_error: float | None = None) -> bool:
        """Called once after each epoch with its validation error; True when ε was just divided by 10."""
        self.epochs_seen += 1
        if self.drops >= self.max_drops or not self._divide_now(val_error):
            return False
        self.drops += 1
        self.apply()
        return True

    def _divide_now(self, val_error: float | None) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return dict(
            kind=self.kind,
            base_lr=self.base_lr,
            drops=self.drops,
            steps_done=self.steps_done,
            epochs_seen=self.epochs_seen,
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["kind"] != self.kind:
            raise ValueError(
                f"the checkpoint's learning-rate schedule is optim.schedule = {state['kind']!r}, the "
                f"config's {self.kind!r}: resume with the schedule the run was trained with"
            )
        self.drops, self.steps_done = int(state["drops"]), int(state["steps_done"])
        self.epochs_seen = int(state["epochs_seen"])
        self.apply()


class PlateauSchedule(Schedule):
    """The paper's rule (section 5): "divide the learning rate by 10 when the validation error rate
    stopped improving with the current learning rate ... reduced three times prior to termination".

    ε = base_lr × lr_mult × 0.1^drops. After each epoch's validation, an epoch improves when its
    error is below the best so far by more than ``min_delta``; ε is divided by 10 when ``patience``
    epochs in a row have not improved, but never before ``min_epochs`` epochs at the current rate
    (so early noise cannot fire it), and always once ``max_epochs`` epochs have passed at one rate
    (so a curve that keeps creeping down still gets its drops; 0 = no limit). At most ``max_drops``
    times.
    """

    kind = "plateau"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        base_lr: float,
        *,
        patience: int = 5,
        max_drops: int = 3,
        min_delta: float = 0.0,
        min_epochs: int = 0,
        max_epochs: int = 0,
    ) -> None:
        if patience < 1:
            raise ValueError(f"plateau patience must be >= 1, got {patience}")
        self.patience, self.min_delta = patience, min_delta
        self.min_epochs, self.max_epochs = min_epochs, max_epochs
        self.best = math.inf
        self.bad_epochs = 0  # epochs in a row without an improvement
        self.epochs_at_rate = 0
        super().__init__(optimizer, base_lr, max_drops)

    def end_epoch(self, val_error: float | None = None) -> bool:
        self.epochs_at_rate += 1
        if val_error is not None and math.isfinite(val_error):  # no or a NaN validation: no count
            if val_error < self.best - self.min_delta:
                self.best, self.bad_epochs = val_error, 0
            else:
                self.bad_epochs += 1
        dropped = super().end_epoch(val_error)
        if dropped:
            self.bad_epochs = self.epochs_at_rate = 0
        return dropped

    def _divide_now(self, val_error: float | None) -> bool:
        plateau = self.bad_epochs >= self.patience and self.epochs_at_rate >= self.min_epochs
        overdue = self.max_epochs > 0 and self.epochs_at_rate >= self.max_epochs
        return plateau or overdue

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "epochs_at_rate": self.epochs_at_rate,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])
        self.epochs_at_rate = int(state["epochs_at_rate"])


class MilestoneSchedule(Schedule):
    """The paper's three divisions by 10 (section 5) at fixed epochs instead of on a plateau:
    ε is divided when the number of completed epochs reaches each of ``milestones`` (epoch m+1 is
    the first at the lower rate), at most ``max_drops`` times. The same run every time, whatever the
    validation curve."""

    kind = "milestones"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        base_lr: float,
        *,
        milestones: Sequence[int],
        max_drops: int = 3,
    ) -> None:
        self.milestones = tuple(sorted(milestones))
        super().__init__(optimizer, base_lr, max_drops)

    def _divide_now(self, val_error: float | None) -> bool:
        return self.epochs_seen in self.milestones


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


class DexpSchedule(Schedule):
    """cuda-convnet2's imagenet-2gpu-model configuration (``layer-params-imagenet-2gpu-model.cfg``,
    schedules in ``cudaconvnet/src/lr.cu``): ``epsW=dexp[base;tgtFactor;numSteps]`` for the weights
    and ``epsB=dexp[...]`` for the biases. The weights follow :func:`dexp_rates` ``(base_lr,
    *weights)``, the biases ``(base_lr × bias lr_mult, *biases)``, by progress = steps done /
    ``total_steps``; ε changes before optimiser steps, never between epochs."""

    kind = "dexp"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        base_lr: float,
        *,
        total_steps: int,
        weights: tuple[float, int] = (250.0, 4),
        biases: tuple[float, int] = (25.0, 2),
    ) -> None:
        if total_steps < 1:
            raise ValueError("the 'dexp' schedule needs the planned number of steps (total_steps >= 1)")
        self.total_steps, self.weights, self.biases = total_steps, weights, biases
        super().__init__(optimizer, base_lr)

    @property
    def progress(self) -> float:
        """Fraction of the planned training steps done."""
        return min(1.0, self.steps_done / self.total_steps)

    def rate(self, lr_mult: float = 1.0, kind: str = "weight") -> float:
        factor, steps = self.biases if kind == "bias" else self.weights
        return dexp_value(dexp_rates(self.base_lr * lr_mult, factor, steps), self.progress)

    def before_step(self) -> None:
        """Set ε for the step about to be taken, then count it."""
        self.apply()
        super().before_step()


def schedule_from(
    optim: OptimConfig, optimizer: torch.optim.Optimizer, base_lr: float, total_steps: int
) -> Schedule:
    """The schedule ``optim.schedule`` names, with its settings from ``optim``; ``base_lr`` is ε at
    the start (``optim.lr``, times the replicas with ``lr_scaling = 'linear'``), ``total_steps`` the
    planned optimiser steps (epochs × steps per epoch)."""
    if optim.schedule == "plateau":
        return PlateauSchedule(
            optimizer,
            base_lr,
            patience=optim.plateau_patience,
            max_drops=optim.max_drops,
            min_delta=optim.plateau_min_delta,
            min_epochs=optim.plateau_min_epochs,
            max_epochs=optim.plateau_max_epochs,
        )
    if optim.schedule == "milestones":
        return MilestoneSchedule(optimizer, base_lr, milestones=optim.milestones, max_drops=optim.max_drops)
    if optim.schedule == "dexp":
        return DexpSchedule(
            optimizer,
            base_lr,
            total_steps=total_steps,
            weights=(optim.dexp_factor, optim.dexp_steps),
            biases=(optim.dexp_bias_factor, optim.dexp_bias_steps),
        )
    raise ValueError(f"optim.schedule must be 'plateau', 'milestones' or 'dexp', got {optim.schedule!r}")
