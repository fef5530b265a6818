"""Datasets and the input pipeline (paper section 2; augmentation in section 4.1, test views in 6).

A dataset is a folder with ``train/<class>/*`` and ``val/<class>/*`` (the ImageNet layout; the
class folders are wnids for ImageNet). Every image is brought to the paper's preprocessing — the
shorter side rescaled to 256 and the central 256×256 square kept — in DataLoader workers, which
then cut the training crop / test views and ship uint8 tensors. The mean subtraction and the
lighting noise run batched in float on the training device (:meth:`ImagePipeline.to_model_input`).

Bad input never stops a run: grayscale, CMYK, palette, 16-bit, RGBA/LA images and EXIF-rotated
photos are converted; images smaller than 256 are upscaled and extreme aspect ratios keep their
central square; files that cannot be decoded (not an image, truncated, corrupt, too large) are
skipped and counted, each path is logged once, and a summary is logged at the end of the epoch.
A missing or empty dataset, or train and val with different class folders, raise one
:class:`DataError` before any work starts.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from alexnet import augment
from alexnet.config import DataConfig

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff",
                              ".webp", ".gif"})
"""Files with these extensions (any case) are dataset images; other files are ignored."""


class DataError(ValueError):
    """A dataset problem found before any work starts (names the folder or file)."""


class BadImage(Exception):
    """One input that cannot be used; ``kind`` is one of :data:`BAD_KINDS`."""

    def __init__(self, kind: str, path: str, detail: str) -> None:
        super().__init__(f"{path}: {kind}: {detail}")
        self.kind, self.path, self.detail = kind, path, detail


BAD_KINDS = ("unreadable", "not-an-image", "truncated", "corrupt", "too-large", "unsupported-mode")


# ------------------------------------------------------------------------------------- decoding
def _to_rgb(img: Image.Image, path: str) -> Image.Image:
    """Any PIL mode → 8-bit RGB. Transparent pixels are composited over white; 16-bit and 32-bit
    integer images are scaled to 8 bits (not clipped)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0                      # 0..65535 → 0..255
        elif mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0                      # 0..1 floats
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    try:
        return img.convert("RGB")                  # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX, ...
    except (ValueError, OSError) as e:
        raise BadImage("unsupported-mode", path, f"cannot convert mode {mode} to RGB ({e})") from None


def resize_centre(img: Image.Image, size: int, window: tuple[int, int, int] | None = None) -> Image.Image:
    """Shorter side to ``size`` and the central ``size``×``size`` square (section 2), in one resample:
    the central square of the original is resized directly (antialiased bilinear), which avoids
    blowing up extreme aspect ratios.

    With ``window = (top, left, crop)`` only that ``crop``×``crop`` window of the result is computed,
    by resampling the matching source box: the same pixels as resizing all and then cropping (PIL's
    filter reads source pixels beyond the box), within ±1 grey level of rounding, ~20 % less work.
    """
    w, h = img.size
    if (w, h) == (size, size):
        return img if window is None else img.crop((window[1], window[0], window[1] + window[2], window[0] + window[2]))
    s = min(w, h)
    x0, y0 = (w - s) / 2, (h - s) / 2
    if window is None:
        return img.resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + s, y0 + s))
    top, left, crop = window
    k = s / size
    box = (x0 + left * k, y0 + top * k, x0 + (left + crop) * k, y0 + (top + crop) * k)
    return img.resize((crop, crop), Image.Resampling.BILINEAR, box=box)


def load_image(path: str | os.PathLike, size: int = 256, window: tuple[int, int, int] | None = None) -> np.ndarray:
    """Decode ``path`` to the paper's preprocessed (size, size, 3) uint8 RGB image, or only its
    ``window = (top, left, crop)``: a (crop, crop, 3) array (see :func:`resize_centre`).

    Raises :class:`BadImage` when the file cannot be used. JPEGs are decoded at a reduced DCT scale
    (PIL ``draft``) when the shorter side stays >= ``size``; EXIF orientation is applied.
    """
    path = str(path)
    try:
        img = Image.open(path)
    except UnidentifiedImageError:
        kind = "not-an-image"
        try:
            if os.path.getsize(path) == 0:
                raise BadImage(kind, path, "empty file") from None
        except OSError:
            pass
        raise BadImage(kind, path, "not a recognised image format") from None
    except Image.DecompressionBombError as e:
        raise BadImage("too-large", path, str(e)) from None
    except OSError as e:
        raise BadImage("unreadable", path, str(e)) from None
    with img:
        try:
            if img.format == "JPEG":
                img.draft(None, (size, size))      # keeps both sides >= size
            img.load()
            img = ImageOps.exif_transpose(img) or img
        except Image.DecompressionBombError as e:
            raise BadImage("too-large", path, str(e)) from None
        except OSError as e:
            kind = "truncated" if "truncated" in str(e) else "corrupt"
            raise BadImage(kind, path, str(e)) from None
        except (SyntaxError, ValueError, IndexError, TypeError, struct.error) as e:
            raise BadImage("corrupt", path, f"{type(e).__name__}: {e}") from None
        rgb = _to_rgb(img, path)
        out = np.asarray(resize_centre(rgb, size, window), dtype=np.uint8)
    side = size if window is None else window[2]
    if out.shape != (side, side, 3):
        raise BadImage("unsupported-mode", path, f"decoded to shape {out.shape}")
    return out


# -------------------------------------------------------------------------------------- folders
def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def find_classes(split_dir: Path) -> list[str]:
    """Sorted names of the class folders of one split (hidden folders ignored)."""
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def list_images(folder: Path) -> list[str]:
    """Sorted image files directly inside ``folder`` (and its sub-folders)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in filenames if _is_image(f)]
    return sorted(found)


def list_samples(split_dir: Path, classes: Sequence[str], max_per_class: int = 0) -> list[tuple[str, int]]:
    """(path, label) of every image of a split, labels by position in the sorted ``classes``."""
    samples = []
    for label, name in enumerate(classes):
        files = list_images(split_dir / name)
        if max_per_class > 0:
            files = files[:max_per_class]
        samples += [(f, label) for f in files]
    return samples


def _names(items: Iterable[str], limit: int = 5) -> str:
    items = sorted(items)
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def validate_split(split_dir: Path, what: str) -> list[str]:
    """Class folders of one split, or a :class:`DataError` naming what is wrong."""
    if not split_dir.is_dir():
        raise DataError(f"{what} folder {split_dir} does not exist (expected {split_dir}/<class>/<image>)")
    classes = find_classes(split_dir)
    if not classes:
        raise DataError(f"{what} folder {split_dir} has no class folders (expected {split_dir}/<class>/<image>)")
    empty = [c for c in classes if not any(_is_image(f) for _, _, fs in os.walk(split_dir / c) for f in fs)]
    if empty:
        raise DataError(f"{what} folder {split_dir}: class folder(s) without images: {_names(empty)}")
    return classes


def validate_dataset(root: str | Path, train_dir: str = "train", val_dir: str = "val") -> list[str]:
    """Check the layout of a dataset root before any work starts; returns the sorted class names.

    One :class:`DataError` for: unset, missing or empty root; missing or empty split folders;
    class folders without images; train and val with different class folders.
    """
    if not str(root):
        raise DataError("data.root is not set: point it at a folder with train/<class>/ and val/<class>/ "
                        "(e.g. --set data.root=data/demo after 'alexnet demo-data')")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root {root} does not exist")
    if not any(root.iterdir()):
        raise DataError(f"dataset root {root} is empty (expected {root}/{train_dir}/<class>/ and "
                        f"{root}/{val_dir}/<class>/)")
    train = validate_split(root / train_dir, "training")
    val = validate_split(root / val_dir, "validation")
    if train != val:
        only_train, only_val = set(train) - set(val), set(val) - set(train)
        parts = []
        if only_train:
            parts.append(f"only in {root / train_dir}: {_names(only_train)}")
        if only_val:
            parts.append(f"only in {root / val_dir}: {_names(only_val)}")
        raise DataError(f"train and val class folders differ under {root}: " + "; ".join(parts))
    return train


# ---------------------------------------------------------------------------------- worker side
_Key = tuple[int, int, str]   # (sample index, epoch, view kind)


class _Decoder(torch.utils.data.Dataset):
    """Worker side: decode, preprocess, cut the views; returns uint8 tensors or the failure."""

    def __init__(self, samples: Sequence[tuple[str, int]], image_size: int, crop_size: int, seed: int,
                 random_crop: bool, flip: bool) -> None:
        self.samples = samples
        self.image_size, self.crop_size, self.seed = image_size, crop_size, seed
        self.random_crop, self.flip = random_crop, flip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: _Key):
        index, epoch, kind = key
        path, label = self.samples[index]
        c = self.crop_size
        views = augment.views_for(kind, self.image_size, c, seed=self.seed, epoch=epoch,  # type: ignore[arg-type]
                                  index=index, random_crop=self.random_crop, flip=self.flip)
        try:
            if kind == "ten":
                image = load_image(path, self.image_size)                                 # (S, S, 3)
                crops = np.stack([augment.crop_view(image, v, c) for v in views])         # (10, 3, C, C)
                return torch.from_numpy(crops), label, torch.tensor(views, dtype=torch.int64), None
            top, left, flipped = views[0]
            window = load_image(path, self.image_size, (top, left, c))                    # (C, C, 3)
        except BadImage as e:
            return None, label, None, (e.path, e.kind, e.detail)
        crop = augment.crop_view(window, (0, 0, flipped), c)                              # (3, C, C)
        return torch.from_numpy(crop), label, torch.tensor(views[0], dtype=torch.int64), None


def _collate(items):
    """Stack the good samples; the failures travel beside them to the main process."""
    good = [it for it in items if it[0] is not None]
    bad = [it[3] for it in items if it[0] is None]
    if not good:
        return None, None, None, bad
    images = torch.stack([it[0] for it in good])
    labels = torch.tensor([it[1] for it in good], dtype=torch.int64)
    crops = torch.stack([it[2] for it in good])
    return images, labels, crops, bad


class _Keys:
    """A batch sampler whose batches are set before each pass (lets persistent workers be reused)."""

    def __init__(self) -> None:
        self.batches: list[list[_Key]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _worker_init(_worker_id: int, parent: int | None = None) -> None:
    torch.set_num_threads(1)
    quiet_pil_warnings()
    if parent is not None:
        die_with_parent(parent)


def die_with_parent(parent: int) -> bool:
    """Linux: ask the kernel to SIGKILL this process when ``parent`` (the process that started it)
    ends; exit at once if it has already gone. True if armed.

    Loader workers inherit the trainer's SIGTERM/SIGINT handler, which ignores signals in forked
    children (a terminal's Ctrl-C or ``timeout`` reaches the whole process group, and only the main
    process decides when to stop), so the loader's own ``terminate()`` cannot end a worker stuck in a
    read. With this, such a worker still ends with the run, however the run ends (even SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import signal
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent ended before the request was made
        os._exit(0)
    return True


# ------------------------------------------------------------------------------------ main side
@dataclass
class Batch:
    """A batch of uint8 views and where each came from (CONTRACTS.md)."""

    images: torch.Tensor   # uint8 (N, 3, C, C), or (N, 10, 3, C, C) for the ten views
    labels: torch.Tensor   # int64 (N,)
    crops: torch.Tensor    # int64 (N, 3) = [top, left, flipped] in the 256x256 image; (N, 10, 3) for ten views


class ImagePipeline:
    """The training and evaluation input of one rank (section 2, 4.1, 6)."""

    def __init__(self, data: DataConfig, *, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, device: torch.device | str = "cpu") -> None:
        from alexnet.classes import class_names
        from alexnet.stats import resolve_stats

        if batch_size <= 0:
            raise DataError(f"batch_size must be > 0, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} outside world size {world_size}")
        if data.workers < -1:
            raise DataError(f"data.workers must be -1 (one per core) or >= 0, got {data.workers}")
        self.cfg = data
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.device = torch.device(device)
        root = Path(data.root)
        self.classes: list[str] = validate_dataset(root, data.train_dir, data.val_dir)
        self.class_names: list[str] = class_names(self.classes, root)
        self.num_classes = len(self.classes)
        self.train_samples = list_samples(root / data.train_dir, self.classes, data.max_per_class)
        self.val_samples = list_samples(root / data.val_dir, self.classes, data.max_per_class)
        if len(self.train_samples) // world_size < batch_size:
            raise DataError(f"{root / data.train_dir}: {len(self.train_samples)} training images are fewer "
                            f"than one batch of {batch_size} per rank ({world_size} rank(s))")
        self._device_stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.stats = resolve_stats(data.stats, root, data.image_size)
        quiet_pil_warnings()
        self.workers = (os.cpu_count() or 1) if data.workers == -1 else data.workers
        self._pin = self.device.type == "cuda" and torch.cuda.is_available()
        self._train_keys = _Keys()
        self._train_loader: torch.utils.data.DataLoader | None = None
        self._skipped: dict[str, str] = {}          # path -> kind, over the pipeline's life
        self._epoch_skipped: Counter[str] = Counter()

    # ---------------------------------------------------------------------------------- loaders
    def _decoder(self, samples: Sequence[tuple[str, int]]) -> _Decoder:
        c = self.cfg
        return _Decoder(samples, c.image_size, c.crop_size, self.seed, c.random_crop, c.flip)

    def _loader(self, decoder: _Decoder, keys: _Keys, persistent: bool) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            decoder, batch_sampler=keys, num_workers=self.workers, collate_fn=_collate,
            pin_memory=self._pin,
            worker_init_fn=functools.partial(_worker_init, parent=os.getpid()) if self.workers > 0 else None,
            persistent_workers=persistent and self.workers > 0)

    def _run(self, loader: torch.utils.data.DataLoader) -> Iterator[Batch]:
        for images, labels, crops, bad in loader:
            for path, kind, detail in bad:
                self._record_bad(path, kind, detail)
            if images is not None:
                yield Batch(images, labels, crops)

    def _record_bad(self, path: str, kind: str, detail: str) -> None:
        self._epoch_skipped[kind] += 1
        if path not in self._skipped:
            self._skipped[path] = kind
            log.warning("skipping %s (%s: %s)", path, kind, detail)

    def _end_of_pass(self, what: str) -> None:
        if self._epoch_skipped:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(self._epoch_skipped.items()))
            log.warning("%s: skipped %d unusable image(s): %s", what, sum(self._epoch_skipped.values()), counts)
        self._epoch_skipped = Counter()

    # ------------------------------------------------------------------------------------ train
    def _rank_order(self, epoch: int) -> np.ndarray:
        n = len(self.train_samples)
        perm = augment.epoch_permutation(self.seed, epoch, n)
        used = (n // self.world_size) * self.world_size
        return perm[self.rank:used:self.world_size]

    def steps_per_epoch(self) -> int:
        """Training batches per epoch for this rank (incomplete last batch dropped)."""
        return (len(self.train_samples) // self.world_size) // self.batch_size

    def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """The batches of one epoch from ``start_step`` on; the skipped ones are never decoded.

        Order, crops and flips are functions of (seed, epoch, rank, world_size, sample index) only.
        A batch holding an unusable image is yielded without it (one image shorter).
        """
        order = self._rank_order(epoch)
        bs = self.batch_size
        self._train_keys.batches = [[(int(i), epoch, "train") for i in order[s * bs:(s + 1) * bs]]
                                    for s in range(start_step, self.steps_per_epoch())]
        if self._train_loader is None:
            self._train_loader = self._loader(self._decoder(self.train_samples), self._train_keys, True)
        planned = len(self._train_keys.batches)
        for i, batch in enumerate(self._run(self._train_loader)):
            if i == planned - 1:  # the trainer stops asking after the last batch: summarise now
                self._end_of_pass(f"epoch {epoch}")
            yield batch
        self._end_of_pass(f"epoch {epoch}")  # reached only if batches were dropped (no-op otherwise)

    # -------------------------------------------------------------------------------------- val
    def val_indices(self, limit: int | None = None) -> list[int]:
        """The validation samples of this rank: all (or a fixed spread subset of ``limit``), sharded."""
        n = len(self.val_samples)
        idx = np.arange(n)
        if limit is not None and limit < n:
            idx = np.sort(np.random.default_rng([0x7A1, augment._seed(self.seed)]).permutation(n)[:limit])
        return [int(i) for i in idx[self.rank::self.world_size]]

    def val_batches(self, ten_view: bool = False, batch_size: int | None = None,
                    limit: int | None = None) -> Iterator[Batch]:
        """Validation batches (centre view, or the ten views) of this rank's shard, in file order."""
        bs = batch_size or self.batch_size
        kind = "ten" if ten_view else "centre"
        idx = self.val_indices(limit)
        keys = _Keys()
        keys.batches = [[(i, 0, kind) for i in idx[s:s + bs]] for s in range(0, len(idx), bs)]
        yield from self._run(self._loader(self._decoder(self.val_samples), keys, False))
        self._end_of_pass("validation")

    # ----------------------------------------------------------------------------------- device
    @property
    def stats(self):
        """The :class:`alexnet.stats.Stats` in use (mean image, eigen-decomposition); assignable,
        e.g. to evaluate with the statistics a checkpoint was trained with."""
        return self._stats

    @stats.setter
    def stats(self, value) -> None:
        self._stats = value
        self._device_stats = {}

    def _stats_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._device_stats:
            s = self.stats
            self._device_stats[device] = (torch.as_tensor(s.mean, dtype=torch.float32).to(device),
                                          torch.as_tensor(s.eigval, dtype=torch.float32).to(device),
                                          torch.as_tensor(s.eigvec, dtype=torch.float32).to(device))
        return self._device_stats[device]

    def to_model_input(self, batch: Batch, device: torch.device, *, train: bool,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """float32 network input on ``device``: raw 0..255 minus the mean image (cropped/flipped like
        each view), plus PCA lighting noise in training (section 2 and 4.1)."""
        mean, eigval, eigvec = self._stats_on(torch.device(device))
        std = self.cfg.lighting_std if train else 0.0
        return augment.model_input(batch.images, batch.crops, mean, eigval=eigval, eigvec=eigvec,
                                   lighting_std=std, formula=self.cfg.lighting_formula, generator=generator)

    def bad_input_summary(self) -> str:
        """'' if nothing was skipped; else the number of skipped files per kind (each logged once)."""
        if not self._skipped:
            return ""
        counts = Counter(self._skipped.values())
        return (f"skipped {len(self._skipped)} unusable file(s): "
                + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))

    def close(self) -> None:
        """Stop the persistent training workers."""
        self._train_loader = None


# ------------------------------------------------------------------------------------- progress
T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "img",
             every_s: float = 0.5, stream=None) -> Iterator[T]:
    """A dependency-free progress bar on stderr (a line every 10 s when stderr is not a terminal)."""
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    every = every_s if tty else 10.0
    start = last = time.monotonic()
    done = 0

    def show(final: bool = False) -> None:
        elapsed = max(time.monotonic() - start, 1e-9)
        rate = done / elapsed
        frac = f" {100 * done / total:5.1f}%" if total else ""
        eta = f" eta {int((total - done) / rate) if rate > 0 else 0}s" if total and not final else ""
        line = f"{desc} {done}/{total or '?'}{frac} {rate:.1f} {unit}/s{eta} {elapsed:.0f}s"
        stream.write(("\r" + line.ljust(70)) if tty else line + "\n")
        if final and tty:
            stream.write("\n")
        stream.flush()

    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every:
            last = now
            show()
    show(final=True)


def quiet_pil_warnings() -> None:
    """PIL's DecompressionBomb and EXIF warnings are per-file noise; bad files are reported by us."""
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", message=".*(Corrupt EXIF|Possibly corrupt|Truncated File).*")
