"""The contract between the generic trainer (:mod:`twogpu.trainer`) and the model-specific code:
what a training task supplies, what one step reports, the hooks, the options and the result."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

Trainer = Any
"""The :class:`twogpu.trainer.Trainer` calling a hook (not imported: the trainer imports this module)."""


@dataclass
class StepOutput:
    """What one training step reports back."""

    loss: torch.Tensor
    """Mean loss over the batch (a scalar tensor, left on its device: the trainer sums it there)."""
    batch_size: int
    """Images in the batch (this rank's share)."""
    mistakes: Mapping[str, torch.Tensor | int] = field(default_factory=dict)
    """Misclassified images per metric, e.g. ``{"top1": 97, "top5": 80}``; averaged into ``train_<k>_err``."""


class TrainTask(Protocol):
    """The model-specific half of training, supplied by the caller."""

    devices: Sequence[torch.device]
    """Devices of the towers (a, b); used for per-tower step times and memory."""

    def steps_per_epoch(self) -> int: ...
    def batches(self, epoch: int, start_step: int) -> Iterator[Any]:
        """The batches of ``epoch`` (0-based) from position ``start_step``, deterministic."""

    def train_step(self, batch: Any) -> StepOutput: ...
    def validate(self) -> dict[str, float]:
        """Validation metrics (e.g. ``val_top1_err``), reduced over ranks if data-parallel."""

    def end_epoch(self, metrics: Mapping[str, float]) -> None:
        """Called after each epoch's validation (learning-rate schedule)."""

    def lr(self) -> float: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class Hook:
    """Logging hooks; the trainer calls them on rank 0 only. Override what you need. A hook with
    state to keep across a resume returns it from :meth:`state_dict` (stored in the checkpoint under
    its :attr:`name`)."""

    name: str = ""
    """Key of this hook's state in checkpoints (empty: nothing stored)."""

    def on_start(self, trainer: Trainer) -> None: ...
    def on_log(self, trainer: Trainer, stats: Mapping[str, float]) -> None:
        """Every ``log_every`` steps; ``stats["window_steps"]`` steps went into the averages."""

    def on_epoch(self, trainer: Trainer, metrics: Mapping[str, float]) -> None: ...
    def on_end(self, trainer: Trainer, result: RunResult) -> None: ...
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class TrainerOptions:
    epochs: int
    run_dir: Path | None = None
    """Where ``metrics.jsonl`` and ``checkpoints/`` go (None: nothing is written)."""
    max_steps: int = 0
    """Stop after this many steps in total (0: no limit)."""
    log_every: int = 20
    """Steps between progress lines; also how often the loop reads the device's sums (one wait)."""
    checkpoint_minutes: float = 30.0
    keep_last: int = 3
    rank: int = 0
    world_size: int = 1
    best_metric: str = "val_top1_err"
    """Lower is better; the checkpoint with the lowest value is kept as ``best.pt``."""
    resume_hint: str = ""
    """The command that resumes this run, printed when it is interrupted."""
    extra_state: Mapping[str, Any] = field(default_factory=dict)
    """Stored in every checkpoint (e.g. the resolved config)."""


@dataclass(frozen=True)
class RunResult:
    status: str
    """'finished', 'max_steps', 'interrupted' or 'nonfinite'."""
    epoch: int
    step: int
    checkpoint: Path | None
    message: str = ""

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "nonfinite" else 0
