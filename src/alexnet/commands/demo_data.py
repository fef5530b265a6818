"""``alexnet demo-data``: a small synthetic dataset in the ImageNet folder layout, made offline.

Ten classes, each an object with its own shape, colour and texture (a red disc, a blue square, a
green triangle, a yellow star, a zebra-striped patch, a brown and cream checkerboard, a purple ring, an orange
cross, a cyan dotted ellipse, a magenta crescent) placed at a random position, size, rotation and
stretch over a varied background (smooth two-colour gradients, low-frequency "cloud" noise, grain,
and grey distractor blobs), slightly blurred, saved as JPEG at varied sizes and aspect ratios.
The classes are separable by colour and by shape, so the full network learns them in a few
minutes of CPU time; everything is a function of the seed (same seed, same files).

Default: 100 training and 25 validation images per class (1000 + 250 images, ~15 MB), made in
a few seconds on two cores; the statistics file (``stats.pt``) is computed at the end.
"""

from __future__ import annotations

import argparse
import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from alexnet.commands._args import add_workers_arg, whole_number
from alexnet.data.folders import require_output_folder

CLASSES = (
    "red_disc",
    "blue_square",
    "green_triangle",
    "yellow_star",
    "zebra_patch",
    "checkerboard",
    "purple_ring",
    "orange_cross",
    "cyan_dots",
    "magenta_crescent",
)
"""The demo classes (folder names, sorted order is the label order)."""

_HUE = {  # base RGB of each object
    "red_disc": (210, 40, 35),
    "blue_square": (35, 70, 200),
    "green_triangle": (40, 165, 60),
    "yellow_star": (235, 205, 40),
    "zebra_patch": (20, 20, 20),
    "checkerboard": (120, 70, 30),
    "purple_ring": (130, 50, 170),
    "orange_cross": (245, 140, 30),
    "cyan_dots": (40, 190, 205),
    "magenta_crescent": (205, 45, 150),
}
_SPLIT_ID = {"train": 0, "val": 1}
_SS = 2  # supersampling of the object mask (anti-aliased edges)


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Muted gradient + cloud noise + grain, (h, w, 3) float32 in 0..255."""
    base = rng.uniform(60, 200, size=(2, 3)).astype(np.float32)
    base = base.mean(1, keepdims=True) + (base - base.mean(1, keepdims=True)) * 0.35  # desaturate
    angle = rng.uniform(0, 2 * math.pi)
    t = (
        np.cos(angle) * np.arange(w, dtype=np.float32)[None, :] / w
        + np.sin(angle) * np.arange(h, dtype=np.float32)[:, None] / h
    )  # (h, w)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = base[0] + (base[1] - base[0]) * t[..., None]
    cells = int(rng.integers(3, 9))
    clouds = rng.normal(0, 1, size=(cells, cells)).astype(np.float32)
    clouds = np.asarray(Image.fromarray(clouds, mode="F").resize((w, h), Image.Resampling.BICUBIC))
    img += clouds[..., None] * np.float32(rng.uniform(6, 18))
    img += rng.standard_normal((h, w, 1), dtype=np.float32) * np.float32(rng.uniform(2, 7))
    return img


def _distractors(rng: np.random.Generator, canvas: Image.Image) -> None:
    draw = ImageDraw.Draw(canvas)
    w, h = canvas.size
    for _ in range(int(rng.integers(0, 4))):
        g = int(rng.integers(50, 210))
        tint = tuple(int(np.clip(g + rng.integers(-15, 16), 0, 255)) for _ in range(3))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.05, 0.2) * w, rng.uniform(0.05, 0.2) * h
        if rng.random() < 0.5:
            draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=tint)
        else:
            draw.line((x - rx, y - ry, x + rx, y + ry), fill=tint, width=int(rng.integers(2, 8)))


def _polygon(
    cx: float, cy: float, r: float, n: int, rot: float, inner: float | None = None
) -> list[tuple[float, float]]:
    pts = []
    k = 2 * n if inner else n
    for i in range(k):
        rad = (inner if inner and i % 2 else 1.0) * r
        a = rot + 2 * math.pi * i / k
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


def _mask(name: str, rng: np.random.Generator, size: int) -> Image.Image:
    """The object's shape on a size×size L mask (before stretch/rotation)."""
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    c, r = size / 2, size * 0.46
    rot = rng.uniform(0, 2 * math.pi)
    if name == "red_disc":
        d.ellipse((c - r, c - r, c + r, c + r), fill=255)
    elif name in ("blue_square", "checkerboard", "zebra_patch"):
        d.polygon(_polygon(c, c, r * 1.05, 4, rot), fill=255)
    elif name == "green_triangle":
        d.polygon(_polygon(c, c * 1.1, r, 3, rot), fill=255)
    elif name == "yellow_star":
        d.polygon(_polygon(c, c, r, 5, rot, inner=0.45), fill=255)
    elif name == "purple_ring":
        d.ellipse((c - r, c - r, c + r, c + r), fill=255)
        ri = r * rng.uniform(0.45, 0.65)
        d.ellipse((c - ri, c - ri, c + ri, c + ri), fill=0)
    elif name == "orange_cross":
        a = r * rng.uniform(0.25, 0.38)
        d.rectangle((c - r, c - a, c + r, c + a), fill=255)
        d.rectangle((c - a, c - r, c + a, c + r), fill=255)
        m = m.rotate(math.degrees(rot), resample=Image.Resampling.BILINEAR)
    elif name == "cyan_dots":
        d.ellipse((c - r, c - r * 0.7, c + r, c + r * 0.7), fill=255)
        m = m.rotate(math.degrees(rot), resample=Image.Resampling.BILINEAR)
    elif name == "magenta_crescent":
        d.ellipse((c - r, c - r, c + r, c + r), fill=255)
        off = r * rng.uniform(0.35, 0.55)
        dx, dy = off * math.cos(rot), off * math.sin(rot)
        d.ellipse((c - r + dx, c - r + dy, c + r + dx, c + r + dy), fill=0)
    else:
        raise ValueError(name)
    return m


def _texture(name: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """The object's colour and texture, (size, size, 3) float32 0..255."""
    base = (np.asarray(_HUE[name], np.float32) * rng.uniform(0.8, 1.1) + rng.normal(0, 10, 3)).astype(
        np.float32
    )
    xx = np.arange(size, dtype=np.float32)[None, :] / size
    yy = np.arange(size, dtype=np.float32)[:, None] / size
    a = rng.uniform(0, 2 * math.pi)
    shade = (0.85 + 0.3 * (np.cos(a) * xx + np.sin(a) * yy)).astype(np.float32)[..., None]  # soft lighting
    tex = base * shade
    if name == "zebra_patch":
        period = rng.uniform(0.08, 0.16)
        u = np.cos(a + 0.7) * xx + np.sin(a + 0.7) * yy
        stripes = (np.sin(2 * math.pi * u / period) > 0)[..., None]
        tex = np.where(stripes, np.float32(235), np.float32(25)) * shade * np.ones(3, np.float32)
    elif name == "checkerboard":
        n = int(rng.integers(3, 7))
        check = ((np.floor(xx * n) + np.floor(yy * n)) % 2)[..., None]
        tex = np.where(check > 0, base, np.asarray([235, 225, 195], np.float32)) * shade
    elif name == "cyan_dots":
        n = int(rng.integers(4, 8))
        fx, fy = (xx * n) % 1 - 0.5, (yy * n) % 1 - 0.5
        dots = ((fx**2 + fy**2) < 0.06)[..., None]
        tex = np.where(dots, np.float32(245), tex)
    return tex + rng.standard_normal((size, size, 1), dtype=np.float32) * np.float32(5)


def make_image(name: str, rng: np.random.Generator, short_side: tuple[int, int] = (200, 320)) -> Image.Image:
    """One demo image of class ``name`` (shorter side drawn from ``short_side``), randomness from ``rng``."""
    short = int(rng.integers(short_side[0], short_side[1] + 1))
    aspect = float(np.exp(rng.uniform(math.log(0.7), math.log(1.5))))
    w, h = (int(short * aspect), short) if aspect >= 1 else (short, int(short / aspect))
    canvas = Image.fromarray(np.clip(_background(rng, w, h), 0, 255).astype(np.uint8))
    _distractors(rng, canvas)
    side = int(min(w, h) * rng.uniform(0.4, 0.75))
    stretch = float(np.exp(rng.uniform(-0.25, 0.25)))
    ow, oh = max(8, int(side * stretch)), max(8, int(side / stretch))
    mask = _mask(name, rng, side * _SS).resize((ow, oh), Image.Resampling.BILINEAR)
    obj = Image.fromarray(np.clip(_texture(name, rng, max(ow, oh)), 0, 255).astype(np.uint8)).crop(
        (0, 0, ow, oh)
    )
    x = int(rng.integers(0, max(1, w - ow))) if w > ow else 0
    y = int(rng.integers(0, max(1, h - oh))) if h > oh else 0
    canvas.paste(obj, (x, y), mask)
    return canvas.filter(ImageFilter.BoxBlur(float(rng.uniform(0.3, 0.8))))


def _write(job: tuple[int, str, int, int, str, tuple[int, int]]) -> None:
    seed, split, label, i, path, short_side = job
    rng = np.random.default_rng([seed % (1 << 64), _SPLIT_ID[split], label, i])
    make_image(CLASSES[label], rng, short_side).save(path, "JPEG", quality=90)


def make_demo_data(
    out: str | Path = "data/demo",
    *,
    seed: int = 0,
    train_per_class: int = 100,
    val_per_class: int = 25,
    workers: int = -1,
    stats: bool = True,
    short_side: tuple[int, int] = (200, 320),
) -> dict[str, int]:
    """Write ``out/{train,val}/<class>/<class>_NNNN.jpg`` (and ``out/stats.pt``); returns image counts.
    ``short_side`` is the range of the images' shorter side (ImageNet's photos: ~330-500)."""
    out = Path(out)
    require_output_folder(out, "--out")
    jobs = []
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for label, name in enumerate(CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            jobs += [
                (seed, split, label, i, str(folder / f"{name}_{i:04d}.jpg"), short_side)
                for i in range(per_class)
            ]
    workers = (os.cpu_count() or 1) if workers == -1 else workers
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write, jobs, chunksize=16))
    else:
        for job in jobs:
            _write(job)
    if stats:
        from alexnet.data.stats import STATS_FILE, compute_stats, save_stats

        computed, _ = compute_stats(out / "train", workers=min(workers, 2))
        save_stats(computed, out / STATS_FILE)
    return {
        "classes": len(CLASSES),
        "train": train_per_class * len(CLASSES),
        "val": val_per_class * len(CLASSES),
    }


# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="data/demo", help="output dataset root")
    p.add_argument(
        "--seed", type=whole_number(0), default=0, help="seed of every image (same seed, same files)"
    )
    p.add_argument(
        "--train-per-class", type=whole_number(1), default=100, metavar="N", help="training images per class"
    )
    p.add_argument(
        "--val-per-class", type=whole_number(1), default=25, metavar="N", help="validation images per class"
    )
    add_workers_arg(p, "drawing the images")
    p.add_argument("--no-stats", action="store_true", help="do not compute OUT/stats.pt")


def run(args: argparse.Namespace) -> int:
    import time

    start = time.monotonic()
    counts = make_demo_data(
        args.out,
        seed=args.seed,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        workers=args.workers,
        stats=not args.no_stats,
    )
    print(
        f"{counts['classes']} classes, {counts['train']} training and {counts['val']} validation images "
        f"in {args.out} ({time.monotonic() - start:.1f} s)"
    )
    return 0
