"""Training-set statistics of paper sections 2 and 4.1: the per-pixel mean image and the
eigen-decomposition of the 3×3 RGB covariance.

``alexnet stats DATA`` decodes the training images exactly as the loader does (shorter side to 256,
central 256×256 square), sums them per pixel, and accumulates Σx and Σxxᵀ over every pixel of
every image in float64. It saves a small ``.pt`` file (``torch.load(..., weights_only=True)``):

* ``mean``   (3, S, S) float32, 0..255 units — subtracted from raw pixels (no std division);
* ``eigval`` (3,) float32, descending — eigenvalues of the covariance of pixels scaled to 0..1
  (the scale of the published ImageNet values λ = [0.2175, 0.0188, 0.0045]);
* ``eigvec`` (3, 3) float32 — eigenvectors in the COLUMNS, rows are R, G, B;
* ``images`` (int) — how many images were used; ``image_size`` (int).

When no file is found the loader falls back, with a warning, to ImageNet's published PCA values
and, for the mean image, ImageNet's per-channel mean (0.485, 0.456, 0.406)·255 broadcast to every
pixel — a per-pixel mean of ImageNet cannot be shipped without the data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.data.folders import DataError, list_samples, validate_split
from alexnet.data.images import BadImage, SkippedImages, load_image
from alexnet.hints import alexnet_command

log = logging.getLogger(__name__)

IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
"""Published eigenvalues of ImageNet's RGB covariance, pixels in 0..1 (the paper gives none: these are
fb.resnet.torch's estimates, ``datasets/imagenet.lua``, the values most reproductions use)."""
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
"""Published eigenvectors: rows R, G, B; column i is the eigenvector of eigenvalue i."""
IMAGENET_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
"""ImageNet's per-channel mean in 0..255 (the fallback mean image, broadcast)."""

STATS_FILE = "stats.pt"
PUBLISHED = "imagenet-published"


@dataclass(frozen=True)
class Stats:
    mean: np.ndarray  # (3, S, S) float32, 0..255
    eigval: np.ndarray  # (3,) float32, descending, covariance of 0..1 pixels
    eigvec: np.ndarray  # (3, 3) float32, eigenvectors in columns
    images: int  # images the statistics were computed from (0: published fallback or unknown)
    source: str  # file it came from, or "imagenet-published"

    def describe(self) -> str:
        """Which mean image this is, in words (printed by the commands that use one)."""
        if self.source == PUBLISHED:
            rgb = ", ".join(f"{v:.1f}" for v in IMAGENET_MEAN_RGB)
            return f"ImageNet's published per-channel mean ({rgb}) broadcast to every pixel"
        of = f" of {self.images} training images" if self.images else ""
        return f"the per-pixel mean image{of} from {self.source}"


def published_stats(image_size: int = 256) -> Stats:
    """ImageNet's published PCA values and per-channel mean broadcast to a mean image."""
    mean = np.broadcast_to(
        np.asarray(IMAGENET_MEAN_RGB, np.float32)[:, None, None], (3, image_size, image_size)
    ).copy()
    return Stats(
        mean, np.asarray(IMAGENET_EIGVAL, np.float32), np.asarray(IMAGENET_EIGVEC, np.float32), 0, PUBLISHED
    )


def save_stats(stats: Stats, path: str | Path) -> Path:
    """Write ``stats`` as a .pt file (atomically: a partial file never replaces a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "mean": torch.from_numpy(np.ascontiguousarray(stats.mean, np.float32)),
            "eigval": torch.from_numpy(np.asarray(stats.eigval, np.float32)),
            "eigvec": torch.from_numpy(np.asarray(stats.eigvec, np.float32)),
            "images": int(stats.images),
            "image_size": int(stats.mean.shape[-1]),
        },
        tmp,
    )
    os.replace(tmp, path)
    return path


def load_stats(path: str | Path) -> Stats:
    """Read a file written by :func:`save_stats`; a clear ``DataError`` names a bad file."""
    path = Path(path)
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        mean, eigval, eigvec = (saved[k].numpy().astype(np.float32) for k in ("mean", "eigval", "eigvec"))
    except FileNotFoundError:
        raise DataError(f"statistics file {path} does not exist (make it with 'alexnet stats')") from None
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same message
        raise DataError(f"statistics file {path} is not a file written by 'alexnet stats': {e}") from None
    if (
        mean.ndim != 3
        or mean.shape[0] != 3
        or mean.shape[1] != mean.shape[2]
        or eigval.shape != (3,)
        or eigvec.shape != (3, 3)
    ):
        raise DataError(
            f"statistics file {path}: unexpected shapes mean {mean.shape}, eigval {eigval.shape}, "
            f"eigvec {eigvec.shape}"
        )
    return Stats(mean, eigval, eigvec, int(saved.get("images", 0)), str(path))


def resolve_stats(configured: str, root: str | Path, image_size: int) -> Stats:
    """The statistics the loader uses: ``configured`` if set (must exist), else ``<root>/stats.pt``
    if present, else the published ImageNet values with a warning."""
    if configured:
        stats = load_stats(configured)
    elif (Path(root) / STATS_FILE).is_file():
        stats = load_stats(Path(root) / STATS_FILE)
    else:
        log.warning(
            "no dataset statistics found (data.stats is empty and %s does not exist): using "
            "ImageNet's published PCA lighting values and ImageNet's per-channel mean "
            "(123.7, 116.3, 103.5) broadcast as the mean image. Run '%s' for the paper's "
            "per-pixel mean image of this training set.",
            Path(root) / STATS_FILE,
            alexnet_command("stats", str(root)),
        )
        return published_stats(image_size)
    if stats.mean.shape[-1] != image_size:
        raise DataError(
            f"statistics file {stats.source} has a {stats.mean.shape[-1]}-pixel mean image but "
            f"data.image_size is {image_size}; recompute it with 'alexnet stats'"
        )
    return stats


# ------------------------------------------------------------------------------------- compute
def _partial_sums(items):
    """Worker-side reduction of a batch of decoded images: (n, Σ image, Σ x, Σ xxᵀ, failures)."""
    good = [it[0] for it in items if it[0] is not None]
    bad = [it[1] for it in items if it[0] is None]
    if not good:
        return 0, None, None, None, bad
    stack = np.stack(good).astype(np.float64)  # (B, S, S, 3)
    pixels = stack.reshape(-1, 3)  # (B·S·S, 3)
    return len(good), stack.sum(0), pixels.sum(0), pixels.T @ pixels, bad


class _Images(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], size: int) -> None:
        self.paths, self.size = paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            return load_image(self.paths[i], self.size), None
        except BadImage as e:
            return None, (e.path, e.kind, e.detail)


def stats_from_sums(
    n: int, image_sum: np.ndarray, pixel_sum: np.ndarray, outer_sum: np.ndarray, pixels: int
) -> Stats:
    """Mean image and covariance eigen-decomposition from the accumulated sums (0..255 pixels)."""
    mean_image = (image_sum / n).transpose(2, 0, 1).astype(np.float32)  # (3, S, S)
    mu = pixel_sum / pixels  # (3,)
    cov = (outer_sum / pixels - np.outer(mu, mu)) / 255.0**2  # (3, 3), 0..1 units
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    # Sign of each eigenvector as the published ones (the noise is symmetric; this only eases comparison).
    signs = np.sign(np.sum(eigvec * np.asarray(IMAGENET_EIGVEC), axis=0))
    eigvec = eigvec * np.where(signs == 0, 1.0, signs)
    return Stats(
        mean_image, np.clip(eigval, 0, None).astype(np.float32), eigvec.astype(np.float32), n, "computed"
    )


def compute_stats(
    train_dir: str | Path,
    *,
    image_size: int = 256,
    sample: int = 0,
    seed: int = 0,
    workers: int = -1,
    batch_size: int = 32,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
) -> tuple[Stats, dict[str, str]]:
    """Statistics of every image under ``train_dir``'s class folders (or a seeded ``sample`` of them).
    ``progress`` wraps the iterable of batches and is given their number (e.g. a command's progress bar).

    Returns the stats and the skipped files (path -> kind), each of which is logged once.
    """
    train_dir = Path(train_dir)
    classes = validate_split(train_dir, "training")
    paths = [p for p, _ in list_samples(train_dir, classes)]
    if sample and sample < len(paths):
        pick = np.sort(np.random.default_rng(seed).choice(len(paths), size=sample, replace=False))
        paths = [paths[i] for i in pick]
    workers = (os.cpu_count() or 1) if workers == -1 else workers
    loader = torch.utils.data.DataLoader(
        _Images(paths, image_size), batch_size=batch_size, num_workers=workers, collate_fn=_partial_sums
    )
    n, image_sum, pixel_sum, outer_sum = 0, None, np.zeros(3), np.zeros((3, 3))
    skipped = SkippedImages()
    batches = progress(loader, len(loader)) if progress is not None else loader
    for count, isum, psum, osum, bad in batches:
        for path, kind, detail in bad:
            skipped.record(path, kind, detail)
        if count:
            n += count
            image_sum = isum if image_sum is None else image_sum + isum
            pixel_sum += psum
            outer_sum += osum
    if n == 0:
        raise DataError(f"{train_dir}: no usable images to compute statistics from")
    return stats_from_sums(n, image_sum, pixel_sum, outer_sum, n * image_size * image_size), skipped.kinds
