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
Decoding lives in :mod:`alexnet.data.images`, the folder checks in :mod:`alexnet.data.folders`, the
worker processes' set-up in :mod:`alexnet.data.workers`.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alexnet.config import DataConfig
from alexnet.data import augment
from alexnet.data.classes import class_names
from alexnet.data.folders import DataError, list_samples, validate_dataset
from alexnet.data.images import BadImage, SkippedImages, load_image, quiet_pil_warnings
from alexnet.data.stats import Stats, resolve_stats
from alexnet.data.workers import worker_init
from twogpu.placement import feed

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- worker side
_Key = tuple[int, int, str]  # (sample index, epoch, view kind)


class _Decoder(torch.utils.data.Dataset):
    """Worker side: decode, preprocess, cut the views; returns uint8 tensors or the failure."""

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        image_size: int,
        crop_size: int,
        seed: int,
        random_crop: bool,
        flip: bool,
    ) -> None:
        self.samples = samples
        self.image_size, self.crop_size, self.seed = image_size, crop_size, seed
        self.random_crop, self.flip = random_crop, flip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: _Key):
        index, epoch, kind = key
        path, label = self.samples[index]
        side = self.crop_size
        views = augment.views_for(
            kind,
            self.image_size,
            side,
            seed=self.seed,
            epoch=epoch,  # type: ignore[arg-type]
            index=index,
            random_crop=self.random_crop,
            flip=self.flip,
        )
        try:
            if kind == "ten":
                image = load_image(path, self.image_size)  # (S, S, 3)
                crops = np.stack([augment.crop_view(image, v, side) for v in views])  # (10, 3, C, C)
                return torch.from_numpy(crops), label, torch.tensor(views, dtype=torch.int64), None
            top, left, flipped = views[0]
            window = load_image(path, self.image_size, (top, left, side))  # (C, C, 3)
        except BadImage as e:
            return None, label, None, (e.path, e.kind, e.detail)
        crop = augment.crop_view(window, (0, 0, flipped), side)  # (3, C, C)
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


# ------------------------------------------------------------------------------------ main side
@dataclass
class Batch:
    """A batch of uint8 views and where each came from."""

    images: torch.Tensor  # uint8 (N, 3, C, C), or (N, 10, 3, C, C) for the ten views
    labels: torch.Tensor  # int64 (N,)
    crops: torch.Tensor  # int64 (N, 3) = [top, left, flipped] in the 256x256 image; (N, 10, 3) for ten views


class ImagePipeline:
    """The training and evaluation input of one rank (section 2, 4.1, 6).

    ``need_train=False`` (evaluation): only the validation folder is read and required. ``stats``:
    the mean image and PCA to use (e.g. a checkpoint's); by default they are looked up by
    :func:`alexnet.data.stats.resolve_stats`."""

    def __init__(
        self,
        data: DataConfig,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str = "cpu",
        input_size: int = 224,
        need_train: bool = True,
        stats: Stats | None = None,
    ) -> None:
        if batch_size <= 0:
            raise DataError(f"batch_size must be > 0, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} outside world size {world_size}")
        if data.workers < -1:
            raise DataError(f"data.workers must be -1 (one per core) or >= 0, got {data.workers}")
        if not 0 < input_size <= data.image_size:
            raise DataError(f"input_size {input_size} must be in 1..data.image_size ({data.image_size})")
        self.cfg = data
        self.input_size = input_size  # side of crops and views: the model's input_size
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.device = torch.device(device)
        root = Path(data.root)
        self.classes: list[str] = validate_dataset(root, data.train_dir, data.val_dir, need_train=need_train)
        self.class_names: list[str] = class_names(self.classes, root)
        self.num_classes = len(self.classes)
        self.train_samples = (
            list_samples(root / data.train_dir, self.classes, data.max_per_class) if need_train else []
        )
        self.val_samples = list_samples(root / data.val_dir, self.classes, data.max_per_class)
        if need_train and len(self.train_samples) // world_size < batch_size:
            raise DataError(
                f"{root / data.train_dir}: {len(self.train_samples)} training images are fewer "
                f"than one batch of {batch_size} per rank ({world_size} rank(s))"
            )
        self._device_stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.stats = stats if stats is not None else resolve_stats(data.stats, root, data.image_size)
        quiet_pil_warnings()
        self.workers = (os.cpu_count() or 1) if data.workers == -1 else data.workers
        self._pin = self.device.type == "cuda" and torch.cuda.is_available()
        self._train_keys = _Keys()
        self._train_loader: torch.utils.data.DataLoader | None = None
        self._skipped = SkippedImages()  # over the pipeline's life
        self._epoch_skipped: Counter[str] = Counter()

    # ---------------------------------------------------------------------------------- loaders
    def _decoder(self, samples: Sequence[tuple[str, int]]) -> _Decoder:
        cfg = self.cfg
        return _Decoder(samples, cfg.image_size, self.input_size, self.seed, cfg.random_crop, cfg.flip)

    def _loader(self, decoder: _Decoder, keys: _Keys, persistent: bool) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            decoder,
            batch_sampler=keys,
            num_workers=self.workers,
            collate_fn=_collate,
            pin_memory=self._pin,
            worker_init_fn=functools.partial(worker_init, parent=os.getpid()) if self.workers > 0 else None,
            persistent_workers=persistent and self.workers > 0,
        )

    def _run(self, loader: torch.utils.data.DataLoader) -> Iterator[Batch]:
        for images, labels, crops, bad in loader:
            for path, kind, detail in bad:
                self._record_bad(path, kind, detail)
            if images is not None:
                yield Batch(images, labels, crops)

    def _record_bad(self, path: str, kind: str, detail: str) -> None:
        self._epoch_skipped[kind] += 1
        self._skipped.record(path, kind, detail)

    def _end_of_pass(self, what: str) -> None:
        if self._epoch_skipped:
            counts = ", ".join(f"{n} {k}" for k, n in sorted(self._epoch_skipped.items()))
            log.warning(
                "%s: skipped %d unusable image(s): %s", what, sum(self._epoch_skipped.values()), counts
            )
        self._epoch_skipped = Counter()

    # ------------------------------------------------------------------------------------ train
    def _rank_order(self, epoch: int) -> np.ndarray:
        n = len(self.train_samples)
        perm = augment.epoch_permutation(self.seed, epoch, n)
        used = (n // self.world_size) * self.world_size
        return perm[self.rank : used : self.world_size]

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
        self._train_keys.batches = [
            [(int(i), epoch, "train") for i in order[s * bs : (s + 1) * bs]]
            for s in range(start_step, self.steps_per_epoch())
        ]
        if self._train_loader is None:
            self._train_loader = self._loader(self._decoder(self.train_samples), self._train_keys, True)
        planned = len(self._train_keys.batches)
        for i, batch in enumerate(self._run(self._train_loader)):
            if i == planned - 1:  # the trainer stops asking after the last batch: summarise now
                self._end_of_pass(f"epoch {epoch + 1}")  # counted from 1, as the progress lines count
            yield batch
        self._end_of_pass(f"epoch {epoch + 1}")  # reached only if batches were dropped (no-op otherwise)

    # -------------------------------------------------------------------------------------- val
    def val_indices(self, limit: int | None = None) -> list[int]:
        """The validation samples of this rank: all (or a fixed spread subset of ``limit``), sharded."""
        n = len(self.val_samples)
        idx = np.arange(n)
        if limit is not None and limit < n:
            idx = np.sort(np.random.default_rng([0x7A1, augment._seed(self.seed)]).permutation(n)[:limit])
        return [int(i) for i in idx[self.rank :: self.world_size]]

    def val_batches(
        self, ten_view: bool = False, batch_size: int | None = None, limit: int | None = None
    ) -> Iterator[Batch]:
        """Validation batches (centre view, or the ten views) of this rank's shard, in file order."""
        bs = batch_size or self.batch_size
        kind = "ten" if ten_view else "centre"
        idx = self.val_indices(limit)
        keys = _Keys()
        keys.batches = [[(i, 0, kind) for i in idx[s : s + bs]] for s in range(0, len(idx), bs)]
        yield from self._run(self._loader(self._decoder(self.val_samples), keys, False))
        self._end_of_pass("validation")

    # ----------------------------------------------------------------------------------- device
    @property
    def stats(self) -> Stats:
        """The :class:`alexnet.data.stats.Stats` in use (mean image, eigen-decomposition); assignable,
        e.g. to evaluate with the statistics a checkpoint was trained with."""
        return self._stats

    @stats.setter
    def stats(self, value: Stats) -> None:
        self._stats = value
        self._device_stats = {}

    def _stats_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._device_stats:
            stats = self.stats
            self._device_stats[device] = (
                torch.as_tensor(stats.mean, dtype=torch.float32).to(device),
                torch.as_tensor(stats.eigval, dtype=torch.float32).to(device),
                torch.as_tensor(stats.eigvec, dtype=torch.float32).to(device),
            )
        return self._device_stats[device]

    def to_model_input(
        self, batch: Batch, device: torch.device, *, train: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """float32 network input on ``device``: raw 0..255 minus the mean image's window
        (``data.mean_window``), plus PCA lighting noise in training (section 2 and 4.1)."""
        mean, eigval, eigvec = self._stats_on(torch.device(device))
        std = self.cfg.lighting_std if train else 0.0
        return augment.model_input(
            batch.images,
            batch.crops,
            mean,
            eigval=eigval,
            eigvec=eigvec,
            lighting_std=std,
            formula=self.cfg.lighting_formula,
            generator=generator,
            mean_window=self.cfg.mean_window,
            rescale=self.cfg.lighting_rescale,
        )

    def to_tower_inputs(
        self,
        batch: Batch,
        devices: Sequence[torch.device],
        *,
        train: bool,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each tower's float32 input, normalised on its own device (section 3.2: each GPU sees
        every image). The uint8 batch goes from the host to each tower's device (3·224·224 =
        150,528 B per image each, instead of a float32 copy of 602,112 B from GPU 0 to GPU 1); the
        lighting offsets are drawn once, on tower a's device, and sent to tower b (12 B per image).
        On one device both towers share one input."""
        a, b = torch.device(devices[0]), torch.device(devices[1])
        if a == b:
            x = self.to_model_input(batch, a, train=train, generator=generator)
            return x, x
        std = self.cfg.lighting_std if train else 0.0
        (mean_a, eigval_a, eigvec_a), (mean_b, _, _) = self._stats_on(a), self._stats_on(b)
        offsets = (
            augment.image_offsets(
                batch.images.shape[0],
                eigval_a,
                eigvec_a,
                std,
                formula=self.cfg.lighting_formula,
                generator=generator,
            )
            if std > 0
            else None
        )  # (N, 3) on a
        images_a, images_b = feed(batch.images, (a, b))  # uint8, host → each tower
        offsets_a, offsets_b = feed(offsets, (a, b)) if offsets is not None else (None, None)
        same = dict(lighting_std=std, mean_window=self.cfg.mean_window, rescale=self.cfg.lighting_rescale)
        return (
            augment.model_input(images_a, batch.crops, mean_a, offsets=offsets_a, **same),
            augment.model_input(images_b, batch.crops, mean_b, offsets=offsets_b, **same),
        )

    def bad_input_summary(self) -> str:
        """'' if nothing was skipped; else the number of skipped files per kind (each logged once)."""
        return self._skipped.summary()

    def close(self) -> None:
        """Stop the persistent training workers."""
        self._train_loader = None
