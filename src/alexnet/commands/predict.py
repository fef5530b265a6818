"""The five most probable labels of image files, with their probabilities (the paper's Figure 4,
left): ``alexnet predict --checkpoint runs/x/checkpoints/best.pt photo.jpg folder/ ...``.

Each image gets the test-time preprocessing of section 2 and 6: shorter side to 256, the central
256×256 square, the centre view of the model's input size (224, or Caffe's 227; or the ten views
averaged with ``--ten-view``), minus the mean image the network was trained with (stored in the
checkpoint). A folder stands for the images inside it; a run directory for its ``checkpoints/best.pt``.
Several checkpoints are an ensemble (Table 2): their softmax outputs averaged, each member's top-1
beside (docs/ensembles.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alexnet.commands._args import whole_number
from alexnet.data import augment
from alexnet.data.folders import list_images
from alexnet.data.images import BadImage, load_image
from alexnet.data.stats import published_stats
from alexnet.evaluation import ensemble
from alexnet.evaluation.checkpoints import (
    checkpoint_stats,
    model_from_state,
    read_checkpoint,
    resolve_checkpoint,
    split_checkpoints,
)
from alexnet.evaluation.network import network_for
from twogpu.placement import TowerDevices, resolve_devices


@dataclass(frozen=True)
class Prediction:
    """One image's answer, or why its file cannot be used."""

    path: str
    labels: list[tuple[str, float]]
    """The k most probable (label, probability), averaged over the members of an ensemble."""
    members: list[tuple[str, float]]
    """Each member's own most probable (label, probability); empty for one network."""
    error: str | None = None
    """Why the file cannot be used (then no labels)."""


def expand_images(paths: Sequence[str | Path]) -> list[str]:
    """Files as given; each folder replaced by the image files under it (sorted). A folder without
    images is an error naming it."""
    out: list[str] = []
    for path in paths:
        if Path(path).is_dir():
            found = list_images(Path(path))
            if not found:
                raise ValueError(f"{path} is a folder without image files")
            out += found
        else:
            out.append(str(path))
    return out


@torch.no_grad()
def predict(
    checkpoints: str | Path | Sequence[str | Path],
    images: Sequence[str | Path],
    *,
    k: int = 5,
    ten_view: bool = False,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> list[Prediction]:
    """For each image (folders expanded) its ``k`` most probable labels. ``checkpoints``: a file or
    a run directory, or several: an ensemble (Table 2), whose members' softmax outputs are averaged
    (:mod:`alexnet.evaluation.ensemble`; each member with its own views and mean image, one after
    another), with each member's top-1 beside. Every member is checked (class lists) before any
    image is read."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    many = not isinstance(checkpoints, (str, Path))
    paths = expand_images(images)
    checkpoints = [resolve_checkpoint(c) for c in (checkpoints if many else [checkpoints])]
    if len(checkpoints) > 1:
        ensemble.read_members(checkpoints)
    devices = resolve_devices([device, device])
    average = ensemble.ProbabilityAverage()
    errors: dict[int, str] = {}
    tops: list[list[tuple[str, float]]] = [[] for _ in paths]
    names: list[str] = []
    for i, checkpoint in enumerate(checkpoints):
        if len(checkpoints) > 1:
            log(f"member {i + 1} of {len(checkpoints)}: {checkpoint}")
        probs, member_errors, member_names = _probabilities(checkpoint, paths, devices, ten_view, log)
        names = names or member_names
        for j, why in member_errors.items():
            errors.setdefault(j, why)
        average.add(probs)
        best, index = probs.max(1)
        for j in range(len(paths)):
            tops[j].append((names[int(index[j])], float(best[j])))
    mean = average.mean()
    out: list[Prediction] = []
    for j, path in enumerate(paths):
        if j in errors:
            out.append(Prediction(str(path), [], [], errors[j]))
            continue
        p, c = mean[j].topk(min(k, mean.shape[1]))
        labels = [(names[int(i)], float(q)) for q, i in zip(p, c)]
        out.append(Prediction(str(path), labels, tops[j] if len(checkpoints) > 1 else []))
    return out


def _probabilities(
    checkpoint: Path, paths: Sequence[str], devices: TowerDevices, ten_view: bool, log: Callable[[str], None]
) -> tuple[torch.Tensor, dict[int, str], list[str]]:
    """One network's softmax (views averaged) per image, (N, classes) on the CPU, with zeros for the
    files it cannot use; why for those (by index); its class names."""
    state = read_checkpoint(checkpoint)
    model, cfg = model_from_state(state, devices.pair, str(checkpoint))
    net = network_for(model, devices).eval()
    size, crop = cfg.data.image_size, cfg.model.input_size
    stats = checkpoint_stats(state, str(checkpoint), size) or published_stats(size)
    log(f"mean image: {stats.describe()}")
    mean = torch.as_tensor(stats.mean, dtype=torch.float32, device=devices.a)
    names = list(state.get("class_names") or [f"class {i}" for i in range(cfg.model.num_classes)])
    views = augment.ten_views(size, crop) if ten_view else [augment.centre_crop(size, crop)]
    probs = torch.zeros(len(paths), cfg.model.num_classes)
    errors: dict[int, str] = {}
    for j, path in enumerate(paths):
        try:
            image = load_image(path, size)  # (S, S, 3) uint8
        except BadImage as e:
            errors[j] = f"cannot use this file: {e.kind} ({e.detail})"
            continue
        x = torch.from_numpy(np.stack([augment.crop_view(image, v, crop) for v in views]))  # (V, 3, C, C)
        crops = torch.tensor(views, dtype=torch.int64)  # (V, 3)
        x = augment.model_input(x, crops, mean, mean_window=cfg.data.mean_window)  # float, mean subtracted
        probs[j] = net(x).softmax(1).mean(0).cpu()  # (classes,)
    return probs, errors, names


def format_predictions(results: Sequence[Prediction]) -> str:
    lines = []
    for r in results:
        lines.append(r.path)
        if r.error is not None:
            lines.append(f"  error: {r.error}")
            continue
        lines += [f"  {100 * p:6.2f}%  {label}" for label, p in r.labels]
        lines += [
            f"  member {i + 1} top-1: {100 * p:6.2f}%  {label}" for i, (label, p) in enumerate(r.members)
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMG",
        help="image files, or folders (the images under them); they may follow the checkpoints: the "
        "first path that is neither a .pt file nor a run directory",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        nargs="+",
        action="extend",
        metavar="CHECKPOINT",
        help="checkpoint file (.pt), or a run directory for its checkpoints/best.pt; several: an ensemble "
        "(softmax averaged, Table 2), with each member's top-1",
    )
    p.add_argument("--ten-view", action="store_true", help="average the ten views instead of the centre view")
    p.add_argument("--device", default="cpu", help="device for both towers, e.g. cuda:0")
    p.add_argument("-k", type=whole_number(1), default=5, help="labels shown per image")


def run(args: argparse.Namespace) -> int:
    from twogpu.placement import check_device

    device = str(check_device(args.device, "--device"))
    checkpoints, images = split_checkpoints(args.checkpoint)
    images += args.images
    if not images:
        raise ValueError("no image given: name image files or folders after the checkpoints")
    results = predict(checkpoints, images, k=args.k, ten_view=args.ten_view, device=device)
    print(format_predictions(results))
    return 1 if any(r.error is not None for r in results) else 0
