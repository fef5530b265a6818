"""A trained network from its checkpoint (section 6): finding the file (a run directory stands for its
``checkpoints/best.pt``), rebuilding the model with its config, and the dataset statistics it was
trained with. Evaluation, prediction, the figures and torch.hub use these."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.config import Config, config_from_dict
from alexnet.data.stats import Stats
from alexnet.models.model import AlexNet
from twogpu.checkpoint import check_format, load_checkpoint

BEST = "best.pt"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory standing for its ``checkpoints/best.pt``; a clear
    error when a folder holds no such file."""
    path = Path(path)
    if not path.is_dir():
        return path
    for candidate in (path / "checkpoints" / BEST, path / BEST):
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"{path} is a folder without checkpoints/{BEST}: pass a checkpoint file "
        f"(e.g. {path / 'checkpoints' / BEST}) or a run directory that holds one"
    )


def run_dir_of_checkpoint(checkpoint: str | Path) -> Path:
    """``runs/x/checkpoints/best.pt`` → ``runs/x``; a checkpoint elsewhere → its own folder."""
    p = Path(checkpoint).resolve()
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def model_from_state(
    state: dict[str, Any],
    devices: Sequence[str | torch.device] = ("cpu", "cpu"),
    source: str = "<checkpoint>",
) -> tuple[AlexNet, Config]:
    """The two-tower model of a loaded checkpoint on ``devices`` (tower a, tower b), in eval mode,
    with the checkpoint's resolved config."""
    if "model" not in state or "config" not in state:
        raise ValueError(f"{source} is not an AlexNet training checkpoint (needs 'model' and 'config')")
    check_format(state, source)
    cfg = config_from_dict(state["config"], source)
    model = AlexNet(devices=tuple(devices), preset=cfg.model)
    target = model.state_dict()
    model.load_state_dict(
        {k: v.to(target[k].device) if k in target else v for k, v in state["model"].items()}
    )
    model.eval()
    return model, cfg


def load_model(
    checkpoint: str | Path, devices: Sequence[str | torch.device] = ("cpu", "cpu")
) -> tuple[AlexNet, Config]:
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
    return Stats(
        mean, s["eigval"].numpy().astype(np.float32), s["eigvec"].numpy().astype(np.float32), 0, source
    )
