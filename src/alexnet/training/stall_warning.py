"""AlexNet's known stall: with the paper's biases of 1 the loss can sit at chance level, ln(classes),
for thousands of steps (Caffe's reproduction, BVLC PR #327, used 0.1). A trainer hook that warns once
when the loss has stayed within a tolerance of chance level for a number of steps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from twogpu.task import Hook

STALL_HINT = (
    "This is AlexNet's known stall with biases initialised to 1 (Caffe's reproduction, BVLC PR "
    "#327); Caffe used 0.1: --set model.init_bias_one=0.1."
)


class StallWarning(Hook):
    """Warns (once per run) when every progress window's mean loss for ``steps`` steps has been
    within ``tolerance`` of ln(``num_classes``)."""

    name = "stall"

    def __init__(self, num_classes: int, steps: int, tolerance: float = 0.05, hint: str = STALL_HINT) -> None:
        self.chance = math.log(num_classes)
        self.steps, self.tolerance, self.hint = steps, tolerance, hint
        self.run, self.warned = 0, False

    def on_log(self, trainer: Any, stats: Mapping[str, float]) -> None:
        if abs(stats["loss"] - self.chance) < self.tolerance:
            self.run += int(stats["window_steps"])
        else:
            self.run = 0
        if self.run >= self.steps and not self.warned:
            self.warned = True
            trainer.log(
                f"warning: the loss has stayed within {self.tolerance} of chance level "
                f"({self.chance:.3f}) for {self.run} steps. {self.hint}".rstrip()
            )

    def state_dict(self) -> dict[str, Any]:
        return {"run": self.run, "warned": self.warned}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.run, self.warned = int(state["run"]), bool(state["warned"])
