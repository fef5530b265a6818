"""The fc7 features (section 6.1, Figure 4 right): the last hidden layer, read with forward hooks."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from alexnet.models.grouped import GroupedAlexNet


# -------------------------------------------------------------------------------------- features
def fc7_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are the fc7 features: each tower's ``drop7`` (a first), or the
    grouped twin's one ``drop7``."""
    if isinstance(model, GroupedAlexNet):
        return [model.drop7]
    return [t.drop7 for t in model.towers()]


class Fc7Capture:
    """The last hidden layer (fc7 after its ReLU and dropout's test-time scaling: exactly what fc8
    receives; 4096-d, both towers' halves side by side, a first) of every forward pass run while
    the capture is open. Forward hooks on ``model``'s ``drop7``; whatever wraps ``model`` (the
    compiled or data-parallel network) may run the pass."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._parts: list[torch.Tensor] = []
        self._hooks: list[Any] = []

    def __enter__(self) -> Fc7Capture:
        self._hooks = [
            m.register_forward_hook(lambda _m, _i, out: self._parts.append(out))
            for m in fc7_modules(self.model)
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def take(self) -> torch.Tensor:
        """The features (N, 4096) of the last forward pass, on tower a's device; clears the capture."""
        parts, self._parts = self._parts, []
        if not parts:
            raise RuntimeError("no forward pass ran while the fc7 capture was open")
        return torch.cat([p.to(parts[0].device) for p in parts], dim=1)


@torch.no_grad()
def fc7_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fc7 features (N, 4096), logits (N, classes)) of a batch ``x`` (N, 3, 227, 227)."""
    with Fc7Capture(model) as capture:
        logits = model(x)
    return capture.take(), logits
