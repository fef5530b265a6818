"""Table 2's ensembles (section 6): "Averaging the predictions of five similar CNNs gives an error
rate of 16.4%" (top-5; top-1 38.1 % against one CNN's 40.7 %).

The networks of an ensemble (its *members*) are evaluated one after another on the same images in
the same order; each member's softmax output per image (already averaged over its views: the centre
view, or the ten views of section 4.1) is added to a running sum, and the ensemble's output is the
mean over members. With ten views the average therefore runs over views and members alike. Between
members only these probabilities are kept, never the weights, so five 60 M-parameter members fit in
the memory of one. ``alexnet evaluate`` and ``alexnet predict`` both average this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alexnet.config import Config
from alexnet.evaluation.checkpoints import model_from_state, read_checkpoint, resolve_checkpoint
from alexnet.evaluation.intervals import Estimate, difference_estimate

PAPER_MEMBERS = 5
"""Networks averaged in Table 2's first ensemble row (ILSVRC-2012 validation)."""
PAPER_ONE_CNN = {"top1_err": 0.407, "top5_err": 0.182}
"""Table 2, one CNN, ILSVRC-2012 validation."""
PAPER_ENSEMBLE = {"top1_err": 0.381, "top5_err": 0.164}
"""Table 2, five CNNs averaged, ILSVRC-2012 validation."""


@dataclass(frozen=True)
class Member:
    """What is known of a member before it is evaluated (its weights are read again then)."""

    checkpoint: Path
    config: Config
    classes: list[str] | None
    """The class folders it was trained on, in output order (None where the checkpoint has none)."""
    class_names: list[str] | None
    """Readable names of those classes (None where the checkpoint has none)."""
    state: dict[str, Any]
    """The checkpoint without its weights (config, classes, statistics, step, ...)."""


def read_member(path: str | Path) -> Member:
    """The member at ``path`` (a checkpoint, or a run directory for its ``checkpoints/best.pt``),
    checked to be a loadable AlexNet checkpoint — its weights built once on the CPU and dropped."""
    checkpoint = resolve_checkpoint(path)
    state = read_checkpoint(checkpoint)
    _, cfg = model_from_state(state, ("cpu", "cpu"), str(checkpoint))
    names = state.get("class_names")
    return Member(
        checkpoint,
        cfg,
        list(state["classes"]) if "classes" in state else None,
        list(names) if names else None,
        {k: v for k, v in state.items() if k != "model"},
    )


def read_members(paths: Sequence[str | Path]) -> list[Member]:
    """:func:`read_member` of each path, then :func:`check_same_classes`: every refusal comes before
    any member is evaluated."""
    members = [read_member(p) for p in paths]
    check_same_classes(members)
    return members


def check_same_classes(members: Sequence[Member]) -> None:
    """Averaging probabilities needs the same classes in the same output order: a ``ValueError``
    naming the first member and the first one that differs."""
    first = members[0]
    for other in members[1:]:
        why = _class_difference(first, other)
        if why:
            raise ValueError(
                f"{first.checkpoint} and {other.checkpoint} were trained on different class lists ({why}): "
                "an ensemble averages the probabilities of the same classes"
            )


def _class_difference(a: Member, b: Member) -> str | None:
    if a.classes is None or b.classes is None:
        na, nb = a.config.model.num_classes, b.config.model.num_classes
        return None if na == nb else f"{na} classes and {nb}"
    if a.classes == b.classes:
        return None
    if len(a.classes) != len(b.classes):
        return f"{len(a.classes)} classes and {len(b.classes)}"
    i = next(i for i, (x, y) in enumerate(zip(a.classes, b.classes)) if x != y)
    return f"class {i} is {a.classes[i]!r} in the first and {b.classes[i]!r} in the second"


class ProbabilityAverage:
    """The mean of the members' softmax outputs (N, classes) for the same N images in the same
    order, kept as a running sum on the CPU (float32, like a single network's output: averaging a
    network with itself gives back its own probabilities exactly)."""

    def __init__(self) -> None:
        self._sum: torch.Tensor | None = None
        self.members = 0

    def add(self, probs: torch.Tensor) -> None:
        """One member's probabilities (N, classes), each row already averaged over its views."""
        probs = probs.detach().to("cpu", torch.float32)
        if self._sum is None:
            self._sum = probs.clone()
        elif probs.shape != self._sum.shape:
            raise ValueError(
                f"a member's outputs have shape {tuple(probs.shape)}, the first's {tuple(self._sum.shape)}: "
                "members must see the same images and classes"
            )
        else:
            self._sum += probs
        self.members += 1

    def mean(self) -> torch.Tensor:
        """(N, classes): the ensemble's probabilities."""
        if self._sum is None:
            raise ValueError("no member added")
        return self._sum / self.members


def gains(member_errors: Sequence[float], ensemble_error: float, n: int) -> dict[str, Estimate]:
    """The ensemble's gain (a member's error minus the ensemble's: positive when averaging helps) over
    the best member and over the mean member, with 95 % intervals as ``alexnet compare`` computes
    them (Newcombe's from Wilson's, on ``n`` images; conservative, since all see the same images)."""
    best = min(member_errors)
    return {
        "best": difference_estimate([best], [ensemble_error], n, n),
        "mean": difference_estimate([sum(member_errors) / len(member_errors)], [ensemble_error], n, n),
    }


def estimate_dict(e: Estimate) -> dict[str, Any]:
    """An :class:`Estimate` for JSON: value, 95 % interval, whether it excludes 0."""
    return {"value": e.value, "lo": e.lo, "hi": e.hi, "resolved": e.resolved}
