"""Are the training images already at the paper's preprocessed size (section 2)?

The loader's workers bring every training image to ``data.image_size`` (shorter side 256, then the
central square) each epoch. On raw ImageNet photos (shorter side ~330-500) decoding and resizing is
most of a worker's time. On a 16-core GPU host (an H200 machine, 2026-12-04) with all 16 workers
busy, one worker delivered 214 images/s on such JPEGs against 393 on the same images after
``alexnet prepare --resize 256`` (a single worker alone: 293 against 871; an idle 2-core VM: 498-558
against 1,109). Re-measure with ``benchmarks/bench_loader.py``, which prints both per-worker rates.
A CPU run never waits for that (its network is slower still); a GPU run that trains at thousands of
images/s does.
:func:`preparation_advice` reads the headers of a few training files (PIL reads the size without
decoding) and returns one line for the start of a CUDA run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    from alexnet.data.pipeline import ImagePipeline

log = logging.getLogger(__name__)

RAW_PER_WORKER = 210
"""Images/s one loader worker delivers from ImageNet-sized JPEGs with every core of a GPU host busy
(bench_loader.py, 16 workers on a 16-core H200 host: 214, rounded down)."""
PREPARED_PER_WORKER = 390
"""The same from 256×256 JPEGs written by ``alexnet prepare --resize 256`` (same run: 393)."""
TARGET = 10_000
"""Images/s of the GPU goal the advice is sized for."""
SAMPLE = 16
"""Training files whose header is read (spread evenly over the sorted file list, so over the classes)."""


def sampled_sizes(samples: Sequence[tuple[str, int]], n: int = SAMPLE) -> list[tuple[str, tuple[int, int]]]:
    """(path, (width, height)) of ``n`` of the (path, label) ``samples`` spread evenly over the list;
    unreadable files are left out (the loader reports those itself)."""
    step = max(len(samples) / n, 1.0)
    sizes = []
    for i in sorted({int(i * step) for i in range(min(n, len(samples)))}):
        path = str(samples[i][0])
        try:
            with Image.open(path) as im:  # the header only: no pixel is decoded
                sizes.append((path, im.size))
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
            log.debug("size check: %s unreadable (%s)", path, e)
    return sizes


def preparation_advice(pipeline: ImagePipeline, devices: Sequence[torch.device]) -> str | None:
    """One line when a run with a tower on a CUDA device trains on ``pipeline``'s images that are not
    ``data.image_size`` squares (what that costs the loader, and the command that prepares them);
    else None (the CPU, or prepared images)."""
    if not any(torch.device(d).type == "cuda" for d in devices):
        return None
    size, workers = pipeline.cfg.image_size, pipeline.workers
    sizes = sampled_sizes(pipeline.train_samples)
    other = [(p, wh) for p, wh in sizes if wh != (size, size)]
    if not other:
        return None
    path, (w, h) = other[0]
    root = str(pipeline.cfg.root).rstrip("/") or "."
    return (
        f"training images are not {size}×{size} ({len(other)} of {len(sizes)} sampled, e.g. {w}×{h} "
        f"{path}): each loader worker decodes and resizes them every epoch, about {RAW_PER_WORKER:,} "
        f"images/s per worker against about {PREPARED_PER_WORKER:,} for images prepared at 256×256 "
        f"(benchmarks/bench_loader.py, every core of a 16-core GPU host busy), so this run's "
        f"{workers} worker(s) feed at most "
        f"~{max(workers, 1) * RAW_PER_WORKER:,} images/s and {TARGET:,} images/s needs "
        f"~{-(-TARGET // RAW_PER_WORKER)} workers instead of ~{-(-TARGET // PREPARED_PER_WORKER)}. "
        f"Prepare a copy once and train on it: alexnet prepare --resize {size} {root} {root}-{size}"
    )
