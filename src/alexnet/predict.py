"""The five most probable labels of image files, with their probabilities (the paper's Figure 4,
left): ``alexnet predict --checkpoint runs/x/checkpoints/best.pt photo.jpg ...``.

Each image gets the test-time preprocessing of section 2 and 6: shorter side to 256, the central
256×256 square, the centre view of the model's input size (224, or Caffe's 227; or the ten views
averaged with ``--ten-view``), minus the mean image the network was trained with (stored in the
checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from alexnet.evaluate import checkpoint_stats, model_from_state
from alexnet.grouped import grouped_from
from twogpu.checkpoint import load_checkpoint


@torch.no_grad()
def predict(checkpoint: str | Path, images: Sequence[str | Path], *, k: int = 5, ten_view: bool = False,
            device: str = "cpu") -> list[tuple[str, list[tuple[str, float]] | str]]:
    """For each image: (path, [(label, probability)] * k), or (path, error message) if it cannot be read."""
    from alexnet import augment
    from alexnet.images import BadImage, load_image
    from alexnet.stats import published_stats

    state = load_checkpoint(checkpoint)
    model, cfg = model_from_state(state, (device, device), str(checkpoint))
    net = grouped_from(model).eval() if cfg.model.towers == 2 else model
    size, crop = cfg.data.image_size, cfg.model.input_size
    stats = checkpoint_stats(state, str(checkpoint), size) or published_stats(size)
    mean = torch.as_tensor(stats.mean, dtype=torch.float32, device=device)
    names = list(state.get("class_names") or [f"class {i}" for i in range(cfg.model.num_classes)])
    views = augment.ten_views(size, crop) if ten_view else [augment.centre_crop(size, crop)]
    out: list[tuple[str, list[tuple[str, float]] | str]] = []
    for path in images:
        try:
            image = load_image(path, size)                                          # (S, S, 3) uint8
        except BadImage as e:
            out.append((str(path), f"cannot use this file: {e.kind} ({e.detail})"))
            continue
        x = torch.from_numpy(np.stack([augment.crop_view(image, v, crop) for v in views]))  # (V, 3, C, C)
        crops = torch.tensor(views, dtype=torch.int64)                              # (V, 3)
        x = augment.model_input(x, crops, mean, mean_window=cfg.data.mean_window)   # float, mean subtracted
        probs = net(x).softmax(1).mean(0)                                           # (classes,)
        p, i = probs.topk(min(k, probs.numel()))
        out.append((str(path), [(names[int(j)], float(q)) for q, j in zip(p, i)]))
    return out


def format_predictions(results: Sequence[tuple[str, list[tuple[str, float]] | str]]) -> str:
    lines = []
    for path, preds in results:
        lines.append(path)
        if isinstance(preds, str):
            lines.append(f"  error: {preds}")
            continue
        lines += [f"  {100 * p:6.2f}%  {label}" for label, p in preds]
    return "\n".join(lines)
