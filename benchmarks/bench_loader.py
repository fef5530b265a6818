"""Training-loader throughput: images/s per worker on raw-size and on prepared 256×256 images, and
ours against torchvision's standard ImageNet training preset.

Each data set is read by both loaders in the same run, with the same batch size, worker count and
pinning:

* ours — :class:`alexnet.data.pipeline.ImagePipeline`: PIL decode (JPEG ``draft``), shorter side 256 +
  central square, random crop + flip in the workers to uint8; then ``to_model_input``
  (mean-image subtraction + PCA lighting, batched float) on the target device;
* torchvision — ``ImageFolder`` + ``RandomResizedCrop(224)``, ``RandomHorizontalFlip()``,
  ``PILToTensor()``, ``ConvertImageDtype(float32)``, ``Normalize(ImageNet mean, std)`` (the
  classification reference's training preset) in the workers, then ``.to(device)``.

The data sets: ``raw`` — ImageNet-like JPEGs (with no ``--data``, demo images generated in a
temporary folder with their shorter sides drawn from 330-500 pixels like ImageNet's photos, ~460×460
on average over both orientations; ``--short-side``); ``prepared`` — the same images as
``alexnet prepare --resize 256`` writes them (256×256 JPEGs; with no ``--prepared``, made from the
raw set in a temporary folder). For each, ours gives images/s per worker (from the fewest workers
measured, where the machine's other cores leave a worker alone) and the workers needed to feed
10,000 images/s (the GPU goal) at that rate.

Images/s are counted from the end of a warm-up of one batch per worker (the workers start together
and deliver their first batches together) to the end of the last timed batch (``--batches``; by
default six per worker, at least 12), best of ``repeats`` interleaved runs (the machine may be
shared). Files are read once beforehand so both loaders find them in the page cache.

    python benchmarks/bench_loader.py [--data ROOT] [--prepared ROOT] [--workers 1 4] [--out bench-results]

writes ``OUT/loader.json`` (``--out`` is a folder, as for benchmarks/bench.py); from Python,
``bench_loader(root, ...)`` returns the same dictionary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

TARGET = 10_000
"""Images/s the GPU goal needs from the loader."""


def _warm_cache(root: Path) -> tuple[int, float, float]:
    """Read every training file once; returns (files, mean width, mean height)."""
    from PIL import Image

    from alexnet.data.folders import find_classes, list_samples

    train = root / "train"
    samples = list_samples(train, find_classes(train))
    ws, hs = [], []
    for path, _ in samples:
        with open(path, "rb") as f:
            f.read()
        if len(ws) < 200:
            with Image.open(path) as im:
                ws.append(im.size[0]), hs.append(im.size[1])
    return len(samples), sum(ws) / len(ws), sum(hs) / len(hs)


def _timed(batches, count: int, consume, warmup: int = 1) -> tuple[float, int]:
    """Images/s of an iterator of batches over ``count`` batches after its first ``warmup`` ones.

    The warm-up is one batch per worker: the workers start together, so their first batches arrive
    together, and a clock started at the first one would credit the loader with batches it made
    before the clock started (with 16 workers, 15 of them: the first GPU run's loader figure was
    eight times too high that way)."""
    it = iter(batches)
    for _ in range(warmup):
        consume(next(it))
    start, images, n = time.perf_counter(), 0, 0
    for b in it:
        images += consume(b)
        n += 1
        if n >= count:
            break
    elapsed = time.perf_counter() - start
    return images / elapsed if elapsed > 0 else 0.0, images


def warm_up_batches(workers: int) -> int:
    """Batches left out before the clock starts: one per worker (the main process's one with none)."""
    return max(1, workers)


def timed_batches(workers: int, batches: int | None = None) -> int:
    """Batches timed per measurement: ``batches``, or by default six rounds of one per worker (at
    least 12), so that the rounds' bursts average out."""
    return batches if batches else max(12, 6 * workers)


def time_our_loader(
    root: Path, workers: int, batch_size: int, batches: int | None, device: torch.device
) -> tuple[float, int]:
    """Images/s (and images timed) of our training loader, batches made model input on ``device``."""
    from alexnet.config import DataConfig
    from alexnet.data.pipeline import ImagePipeline

    p = ImagePipeline(
        DataConfig(root=str(root), workers=workers), batch_size=batch_size, seed=0, device=device
    )
    gen = torch.Generator(device=device).manual_seed(0)

    def consume(b) -> int:
        x = p.to_model_input(b, device, train=True, generator=gen)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return x.shape[0]

    def stream():
        epoch = 0
        while True:
            yield from p.train_batches(epoch)
            epoch += 1

    result = _timed(stream(), timed_batches(workers, batches), consume, warmup=warm_up_batches(workers))
    p.close()
    return result


def _torchvision(
    root: Path, workers: int, batch_size: int, batches: int | None, device: torch.device
) -> tuple[float, int]:
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.PILToTensor(),
            transforms.ConvertImageDtype(torch.float32),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )

    def consume(b) -> int:
        x = b[0].to(device, non_blocking=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return x.shape[0]

    def stream():
        while True:
            yield from loader

    return _timed(stream(), timed_batches(workers, batches), consume, warmup=warm_up_batches(workers))


def _measure(
    root: Path, workers: Sequence[int], batch_size: int, batches: int | None, repeats: int, dev
) -> dict:
    files, mean_w, mean_h = _warm_cache(root)
    rows = []
    for w in workers:
        n = (os.cpu_count() or 1) if w == -1 else w
        ours, tv = [], []
        for _ in range(repeats):  # interleaved, best of
            tv.append(_torchvision(root, n, batch_size, batches, dev)[0])
            ours.append(time_our_loader(root, n, batch_size, batches, dev)[0])
        rows.append(
            {
                "workers": n,
                "warm_up_batches": warm_up_batches(n),
                "batches_timed": timed_batches(n, batches),
                "ours_img_s": max(ours),
                "ours_img_s_per_worker": max(ours) / max(n, 1),  # 0 workers: the main process loads
                "torchvision_img_s": max(tv),
                "ratio": max(ours) / max(tv) if max(tv) > 0 else float("nan"),
                "ours_runs": ours,
                "torchvision_runs": tv,
            }
        )
    per_worker = min(rows, key=lambda r: r["workers"])["ours_img_s_per_worker"]
    return {
        "files": files,
        "mean_image_size": [round(mean_w), round(mean_h)],
        "per_worker_img_s": per_worker,
        f"workers_for_{TARGET}_img_s": math.ceil(TARGET / per_worker) if per_worker > 0 else None,
        "results": rows,
    }


def _prepare_copy(raw: Path, dst: Path) -> Path:
    """``alexnet prepare --resize 256 raw dst``, with the raw set's statistics beside it."""
    from alexnet.commands.prepare import resize_tree
    from alexnet.data.stats import STATS_FILE

    resize_tree(raw, dst, size=256, show_progress=False)
    if (raw / STATS_FILE).is_file():
        shutil.copy2(raw / STATS_FILE, dst / STATS_FILE)
    return dst


def bench_loader(
    root: str | Path | None = None,
    *,
    prepared: str | Path | None = None,
    workers: Sequence[int] = (1, -1),
    batch_size: int = 64,
    batches: int | None = None,
    repeats: int = 2,
    device: str = "cpu",
    out: str | Path | None = None,
    short_side: tuple[int, int] = (330, 500),
) -> dict:
    """Measure both loaders on the raw and the prepared set for each worker count (-1 = all cores);
    returns the results and writes them to ``out/loader.json`` when ``out`` (a folder) is given.
    ``root`` None: raw images are generated; ``prepared`` None: made from the raw set unless ``root``
    was given (a user's data set is not copied)."""
    tmp = tempfile.TemporaryDirectory(prefix="bench-loader-")
    sets: dict[str, Path] = {}
    if root is None:
        from alexnet.commands.demo_data import make_demo_data

        sets["raw"] = Path(tmp.name) / "raw"
        make_demo_data(sets["raw"], seed=0, stats=True, short_side=tuple(short_side))
    else:
        sets["raw"] = Path(root)
    if prepared is not None:
        sets["prepared"] = Path(prepared)
    elif root is None:
        sets["prepared"] = _prepare_copy(sets["raw"], Path(tmp.name) / "prepared")
    dev = torch.device(device)
    datasets = {}
    for name, path in sets.items():
        m = _measure(path, workers, batch_size, batches, repeats, dev)
        m["data"] = f"{name} (generated)" if path.is_relative_to(tmp.name) else str(path)
        datasets[name] = m
        for row in m["results"]:
            w, h = m["mean_image_size"]
            print(
                f"{name:8s} {w}x{h}  workers {row['workers']:3d}: "
                f"ours {row['ours_img_s']:8.1f} img/s ({row['ours_img_s_per_worker']:6.1f} per worker)   "
                f"torchvision preset {row['torchvision_img_s']:8.1f} img/s   ratio {row['ratio']:.2f}x",
                flush=True,
            )
    for name, m in datasets.items():
        print(
            f"{name}: {m['per_worker_img_s']:.0f} img/s per worker -> {m[f'workers_for_{TARGET}_img_s']} "
            f"workers for {TARGET:,} img/s",
            flush=True,
        )
    tmp.cleanup()
    result = {
        "benchmark": "loader",
        "batch_size": batch_size,
        "repeats": repeats,
        "device": str(dev),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "target_img_s": TARGET,
        "datasets": datasets,
    }
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "loader.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", default=None, help="raw dataset root with train/<class>/ (default: generated demo data)"
    )
    ap.add_argument(
        "--prepared",
        default=None,
        help="the same data as `alexnet prepare --resize 256` writes it (default: made from the "
        "generated raw set; none with --data)",
    )
    ap.add_argument("--workers", type=int, nargs="+", default=[1, -1], help="worker counts (-1: all cores)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--batches",
        type=int,
        default=None,
        help="batches timed per measurement, after one warm-up batch per worker (default: six per "
        "worker, at least 12)",
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="bench-results", help="folder for loader.json")
    ap.add_argument(
        "--short-side",
        type=int,
        nargs=2,
        default=[330, 500],
        help="shorter-side range of the generated images (without --data)",
    )
    args = ap.parse_args(argv)
    bench_loader(
        args.data,
        prepared=args.prepared,
        workers=args.workers,
        batch_size=args.batch_size,
        batches=args.batches,
        repeats=args.repeats,
        device=args.device,
        out=args.out,
        short_side=tuple(args.short_side),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
