"""A trained network from its checkpoint (section 6): finding the file (a run directory stands for its
``checkpoints/best.pt``), rebuilding the model with its config, and the dataset statistics it was
trained with. Evaluation, prediction, the figures and torch.hub use these."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.config import Config, config_from_dict
from alexnet.data.stats import Stats
from alexnet.models.model import AlexNet
from twogpu.checkpoint import CheckpointError, UnreadableCheckpoint, check_format, load_checkpoint

BEST = "best.pt"
_ZIP_MAGIC = b"PK\x03\x04"
"""How a file of ``torch.save`` (its zip format) begins."""
_PICKLE_MAGIC = b"\x80"
"""How a file of ``torch.save``'s legacy format (a pickle, protocol 2 and later) begins."""


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


def split_checkpoints(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--checkpoint A B C DATA`` (or ``... IMG ...``): an option taking several paths swallows the
    positional arguments after it, so the list of checkpoints ends before the first path (after the
    first, always a checkpoint) that is neither a ``.pt`` file nor a run directory (a folder holding
    ``checkpoints/`` or ``best.pt``). Returns (checkpoints, the rest)."""
    for i, path in enumerate(paths[1:], start=1):
        p = Path(path)
        if not (p.suffix == ".pt" or (p.is_dir() and ((p / "checkpoints").is_dir() or (p / BEST).is_file()))):
            return list(paths[:i]), list(paths[i:])
    return list(paths), []


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """:func:`twogpu.checkpoint.load_checkpoint` (tensors and plain values only), saying "not a
    checkpoint" for a file ``torch.save`` did not write (an image, a text file) and for a complete
    archive that holds pickled Python objects (a whole ``nn.Module``), instead of torch's advice to
    load it with ``weights_only=False``, which would run the code inside it."""
    path = Path(path)
    try:
        return load_checkpoint(path)
    except UnreadableCheckpoint:
        _explain_unreadable(path)
        raise


def _explain_unreadable(path: Path) -> None:
    """Raise "not a checkpoint" for ``path`` that ``load_checkpoint`` refused, unless it is a
    ``torch.save`` file cut short (then the loader's "truncated or corrupt" is the right message)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_PICKLE_MAGIC) or (head == _ZIP_MAGIC and not zipfile.is_zipfile(path)):
        return  # a torch file cut short, or a legacy pickle: truncated or corrupt
    use = (
        "pass a .pt file written by `alexnet train` (runs/<name>/checkpoints/) or `alexnet import-caffe`, "
        "or a run directory"
    )
    if head == _ZIP_MAGIC:
        raise CheckpointError(
            f"{path} is not a training checkpoint: a complete torch archive that holds pickled Python "
            f"objects (such as a whole nn.Module), which are never loaded since that can run code; {use}"
        )
    raise CheckpointError(f"{path} is not a checkpoint (not a file written by torch.save): {use}")


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
    weights = state["model"]
    _check_weights_fit(weights, target, source)
    model.load_state_dict({k: v.to(target[k].device) for k, v in weights.items()})
    model.eval()
    return model, cfg


def _check_weights_fit(weights: Any, target: dict[str, torch.Tensor], source: str) -> None:
    """A checkpoint whose weights are another network's than its config describes (other names or
    shapes): one line naming the file and the first differences, instead of ``load_state_dict``'s
    list of every key."""
    if not isinstance(weights, dict):
        raise ValueError(f"{source} is not an AlexNet training checkpoint ('model' is not a state dict)")
    missing = [k for k in target if k not in weights]
    unexpected = [k for k in weights if k not in target]
    shapes = [
        f"{k} {_shape(weights[k])} where the config's network has {tuple(target[k].shape)}"
        for k in target
        if k in weights and _shape(weights[k]) != tuple(target[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    found = [
        f"{len(keys)} {what} (e.g. {keys[0]})"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes))
        if keys
    ]
    raise ValueError(
        f"{source} holds the weights of another network than its config describes: "
        f"{', '.join(found)} parameters; it is not a checkpoint of this AlexNet"
    )


def _shape(value: Any) -> tuple[int, ...] | str:
    return tuple(value.shape) if torch.is_tensor(value) else f"({type(value).__name__}, not a tensor)"


def load_model(
    checkpoint: str | Path, devices: Sequence[str | torch.device] = ("cpu", "cpu")
) -> tuple[AlexNet, Config]:
    """Rebuild the two-tower model of a checkpoint file on ``devices``, in eval mode, with its config."""
    return model_from_state(read_checkpoint(checkpoint), devices, source=str(checkpoint))


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
