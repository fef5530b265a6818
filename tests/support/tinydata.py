"""Tiny image folders for end-to-end tests (importable from any test: setup.cfg puts tests/support on
the path)."""

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"blue": (30, 40, 200), "red": (200, 40, 30), "green": (40, 180, 50)}


def make_tiny_dataset(root: Path, classes=("blue", "red"), train_n: int = 4, val_n: int = 2) -> Path:
    """``root/{train,val}/<colour>/<i>.jpg``: noisy 48×64 images of one colour per class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train_n), ("val", val_n)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = np.clip(rng.normal(COLOURS[c], 40, size=(48, 64, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.jpg")
    return root
