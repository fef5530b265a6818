"""The five most probable labels of image files, with their probabilities (the paper's Figure 4,
left): ``alexnet predict --checkpoint runs/x/checkpoints/best.pt photo.jpg folder/ ...``.

Each image gets the test-time preprocessing of section 2 and 6: shorter side to 256, the central
256×256 square, the centre view of the model's input size (224, or Caffe's 227; or the ten views
averaged with ``--ten-view``), minus the mean image the network was trained with (stored in the
checkpoint). A folder stands for the images inside it; a run directory for its ``checkpoints/best.pt``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from alexnet.data import augment
from alexnet.data.folders import list_images
from alexnet.data.images import BadImage, load_image
from alexnet.data.stats import published_stats
from alexnet.evaluation.checkpoints import checkpoint_stats, model_from_state, resolve_checkpoint
from alexnet.evaluation.network import network_for
from twogpu.checkpoint import load_checkpoint
from twogpu.placement import resolve_devices

Prediction = tuple[str, list[tuple[str, float]] | str]
"""(path, [(label, probability), ...]) or (path, why the file cannot be used)."""


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
    checkpoint: str | Path,
    images: Sequence[str | Path],
    *,
    k: int = 5,
    ten_view: bool = False,
    device: str = "cpu",
    log: Callable[[str], None] = print,
) -> list[Prediction]:
    """For each image (folders expanded): (path, [(label, probability)] * k), or (path, error
    message) if it cannot be read. ``checkpoint`` is a file or a run directory."""
    checkpoint = resolve_checkpoint(checkpoint)
    paths = expand_images(images)
    state = load_checkpoint(checkpoint)
    devices = resolve_devices([device, device])
    model, cfg = model_from_state(state, devices.pair, str(checkpoint))
    net = network_for(model, devices).eval()
    size, crop = cfg.data.image_size, cfg.model.input_size
    stats = checkpoint_stats(state, str(checkpoint), size) or published_stats(size)
    log(f"mean image: {stats.describe()}")
    mean = torch.as_tensor(stats.mean, dtype=torch.float32, device=devices.a)
    names = list(state.get("class_names") or [f"class {i}" for i in range(cfg.model.num_classes)])
    views = augment.ten_views(size, crop) if ten_view else [augment.centre_crop(size, crop)]
    out: list[Prediction] = []
    for path in paths:
        try:
            image = load_image(path, size)  # (S, S, 3) uint8
        except BadImage as e:
            out.append((str(path), f"cannot use this file: {e.kind} ({e.detail})"))
            continue
        x = torch.from_numpy(np.stack([augment.crop_view(image, v, crop) for v in views]))  # (V, 3, C, C)
        crops = torch.tensor(views, dtype=torch.int64)  # (V, 3)
        x = augment.model_input(x, crops, mean, mean_window=cfg.data.mean_window)  # float, mean subtracted
        probs = net(x).softmax(1).mean(0)  # (classes,)
        p, i = probs.topk(min(k, probs.numel()))
        out.append((str(path), [(names[int(j)], float(q)) for q, j in zip(p, i)]))
    return out


def format_predictions(results: Sequence[Prediction]) -> str:
    lines = []
    for path, preds in results:
        lines.append(path)
        if isinstance(preds, str):
            lines.append(f"  error: {preds}")
            continue
        lines += [f"  {100 * p:6.2f}%  {label}" for label, p in preds]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMG", help="image files, or folders (the images under them)")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint file (.pt), or a run directory for its checkpoints/best.pt",
    )
    p.add_argument("--ten-view", action="store_true", help="average the ten views instead of the centre view")
    p.add_argument("--device", default="cpu", help="device for both towers, e.g. cuda:0")
    p.add_argument("-k", type=int, default=5, help="labels shown per image")


def run(args: argparse.Namespace) -> int:
    from twogpu.placement import check_device

    device = str(check_device(args.device, "--device"))
    results = predict(args.checkpoint, args.images, k=args.k, ten_view=args.ten_view, device=device)
    print(format_predictions(results))
    return 1 if any(isinstance(r, str) for _, r in results) else 0
