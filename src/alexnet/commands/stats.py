"""``alexnet stats``: mean image and RGB covariance eigen-decomposition of a training set (sections 2,
4.1)."""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet.commands._args import add_workers_arg, whole_number
from alexnet.commands._console import progress
from alexnet.data.stats import STATS_FILE, compute_stats, save_stats


def stats_command(
    data: str | Path,
    out: str | Path | None,
    *,
    train_dir: str = "train",
    image_size: int = 256,
    sample: int = 0,
    seed: int = 0,
    workers: int = -1,
) -> Path:
    """``alexnet stats DATA``: DATA is a dataset root (with ``train_dir``) or a training folder itself;
    the file goes to ``out`` or ``<root>/stats.pt`` (where the loader looks by default; the root is
    DATA, or DATA's parent when DATA is the ``train_dir`` folder)."""
    data = Path(data)
    source = data / train_dir if (data / train_dir).is_dir() else data
    root = source.parent if source.name == train_dir else data  # where the loader looks: <root>/stats.pt
    stats, skipped = compute_stats(
        source,
        image_size=image_size,
        sample=sample,
        seed=seed,
        workers=workers,
        progress=lambda batches, n: progress(batches, total=n, desc="stats", unit="batch"),
    )
    path = save_stats(stats, Path(out) if out else root / STATS_FILE)
    print(f"statistics of {stats.images} images of {source} -> {path}")
    print("mean RGB (0..255): " + ", ".join(f"{v:.2f}" for v in stats.mean.mean(axis=(1, 2))))
    print("eigenvalues (0..1 scale): " + ", ".join(f"{v:.4f}" for v in stats.eigval))
    if skipped:
        print(f"skipped {len(skipped)} unusable file(s) (listed above)")
    return path


# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="dataset root (with train/) or a training folder")
    p.add_argument(
        "--out", "-o", default=None, help="output file (default: DATA/stats.pt, where the loader looks)"
    )
    p.add_argument(
        "--sample",
        type=whole_number(0),
        default=0,
        metavar="N",
        help="use a seeded random sample of N images (0: all)",
    )
    p.add_argument("--seed", type=whole_number(0), default=0, help="seed of the sample")
    p.add_argument(
        "--image-size",
        type=whole_number(1),
        default=256,
        metavar="N",
        help="preprocessed image side (data.image_size)",
    )
    add_workers_arg(p, "decoding the images")


def run(args: argparse.Namespace) -> int:
    stats_command(
        args.data,
        args.out,
        image_size=args.image_size,
        sample=args.sample,
        seed=args.seed,
        workers=args.workers,
    )
    return 0
