"""What every use of a trained network shares (section 6): rebuilding the model from a checkpoint,
choosing the module to run for a device layout, counting top-k errors, and reading the fc7 features.

Training (:mod:`alexnet.train`), evaluation, prediction, the figures and the dashboards all use
these, so an error count or a feature vector means the same thing everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from alexnet.config import Config, ModelConfig, config_from_dict
from alexnet.data import Batch, ImagePipeline
from alexnet.grouped import GroupedAlexNet, grouped_from
from alexnet.model import AlexNet
from alexnet.stats import Stats
from twogpu.checkpoint import load_checkpoint
from twogpu.placement import TowerDevices

BEST = "best.pt"


# -------------------------------------------------------------------------------------- errors
def topk_mistakes(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, torch.Tensor]:
    """Section 6's top-1 and top-5 error counts: ``{"top1": n1, "top5": n5}``, how many images have
    their label outside the k highest of ``scores`` (N, classes) — logits or probabilities, the
    order is the same. k is clipped to the number of classes. Counts are 0-d int64 tensors on the
    scores' device; ``top<k>_err`` is a count divided by the images (metrics, logs, dashboards)."""
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices                      # (N, kmax)
    hit = top == labels[:, None]                                # (N, kmax)
    return {f"top{k}": (~hit[:, :min(k, kmax)].any(1)).sum() for k in ks}


# ------------------------------------------------------------------------------ device layout
def wants_grouped_twin(devices: TowerDevices, cfg: ModelConfig, enabled: bool = True) -> bool:
    """Both towers of a two-tower network on one device: run the grouped twin of
    :mod:`alexnet.grouped` instead (the same function, faster there) unless ``enabled`` is False."""
    return enabled and devices.same and cfg.towers == 2


def network_for(model: AlexNet, devices: TowerDevices, enabled: bool = True) -> nn.Module:
    """The module to run for ``model`` placed on ``devices``: its grouped twin on ``devices.a`` (in
    the same train/eval mode) when :func:`wants_grouped_twin`, else ``model`` itself."""
    return grouped_from(model, devices.a) if wants_grouped_twin(devices, model.cfg, enabled) else model


# ---------------------------------------------------------------------------------- checkpoints
def network_inputs(pipe: ImagePipeline, batch: Batch, model: nn.Module, devices: TowerDevices, *, train: bool,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """What ``model`` takes for ``batch``: the two towers on two devices get each tower's own copy,
    normalised there from the uint8 batch (:meth:`ImagePipeline.to_tower_inputs`); any other network
    one tensor on tower a's device. Always a tuple (one or two tensors)."""
    if isinstance(model, AlexNet) and model.b is not None and not devices.same:
        return pipe.to_tower_inputs(batch, devices.pair, train=train, generator=generator)
    return (pipe.to_model_input(batch, devices.a, train=train, generator=generator),)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory standing for its ``checkpoints/best.pt``; a clear
    error when a folder holds no such file."""
    path = Path(path)
    if not path.is_dir():
        return path
    for candidate in (path / "checkpoints" / BEST, path / BEST):
        if candidate.is_file():
            return candidate
    raise ValueError(f"{path} is a folder without checkpoints/{BEST}: pass a checkpoint file "
                     f"(e.g. {path / 'checkpoints' / BEST}) or a run directory that holds one")


def run_dir_of_checkpoint(checkpoint: str | Path) -> Path:
    """``runs/x/checkpoints/best.pt`` → ``runs/x``; a checkpoint elsewhere → its own folder."""
    p = Path(checkpoint).resolve()
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def model_from_state(state: dict[str, Any], devices: Sequence[str | torch.device] = ("cpu", "cpu"),
                     source: str = "<checkpoint>") -> tuple[AlexNet, Config]:
    """The two-tower model of a loaded checkpoint on ``devices`` (tower a, tower b), in eval mode,
    with the checkpoint's resolved config."""
    if "model" not in state or "config" not in state:
        raise ValueError(f"{source} is not an AlexNet training checkpoint (needs 'model' and 'config')")
    cfg = config_from_dict(state["config"], source)
    model = AlexNet(devices=tuple(devices), preset=cfg.model)
    target = model.state_dict()
    model.load_state_dict({k: v.to(target[k].device) if k in target else v for k, v in state["model"].items()})
    model.eval()
    return model, cfg


def load_model(checkpoint: str | Path, devices: Sequence[str | torch.device] = ("cpu", "cpu")) -> tuple[AlexNet, Config]:
    """Rebuild the two-tower model of a checkpoint file on ``devices``, in eval mode, with its config."""
    return model_from_state(load_checkpoint(checkpoint), devices, source=str(checkpoint))


def checkpoint_stats(state: dict[str, Any], source: str, image_size: int) -> Stats | None:
    """The dataset statistics (mean image, PCA) the checkpoint was trained with, or None if it
    carries none for ``image_size``."""
    s = state.get("stats")
    if not s:
        return None
    mean = s["mean"].numpy().astype(np.float32)
    if mean.shape[-1] != image_size:
        return None
    return Stats(mean, s["eigval"].numpy().astype(np.float32), s["eigvec"].numpy().astype(np.float32), 0, source)


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

    def __enter__(self) -> "Fc7Capture":
        self._hooks = [m.register_forward_hook(lambda _m, _i, out: self._parts.append(out))
                       for m in fc7_modules(self.model)]
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

