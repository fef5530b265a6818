"""The dataset layout (paper section 2, ImageNet's folders): ``<root>/train/<class>/<image>`` and
``<root>/val/<class>/<image>``, class folders sorted by name (wnids for ImageNet). A missing or empty
dataset, or train and val with different class folders, raise one :class:`DataError` before any
work starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from alexnet.data.images import is_image_name
from alexnet.hints import alexnet_command


class DataError(ValueError):
    """A dataset problem found before any work starts (names the folder or file)."""


def require_folder(path: Path, what: str, expected: str = "") -> None:
    """A :class:`DataError` unless ``path`` is a folder, saying which way it is not: a file where a
    folder belongs, or nothing there. ``what`` names it (e.g. "dataset root"); ``expected``, when
    given, says what the folder should hold."""
    if path.is_dir():
        return
    why = "is a file, not a folder" if path.exists() else "does not exist"
    raise DataError(f"{what} {path} {why}" + (f" (expected {expected})" if expected else ""))


def require_output_folder(path: Path, what: str) -> None:
    """A :class:`DataError` when ``path`` cannot be (or become) a folder: it, or the nearest existing
    folder above it, is a file."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                where = "" if p == path else f": {p}"
                raise DataError(f"{what} {path}{where} is a file, not a folder")
            return


def find_classes(split_dir: Path) -> list[str]:
    """Sorted names of the class folders of one split (hidden folders ignored)."""
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def list_images(folder: Path) -> list[str]:
    """Sorted image files directly inside ``folder`` (and its sub-folders)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in filenames if is_image_name(f)]
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
    require_folder(split_dir, f"{what} folder", f"{split_dir}/<class>/<image>")
    classes = find_classes(split_dir)
    if not classes:
        raise DataError(
            f"{what} folder {split_dir} has no class folders (expected {split_dir}/<class>/<image>)"
        )
    empty = [
        c for c in classes if not any(is_image_name(f) for _, _, fs in os.walk(split_dir / c) for f in fs)
    ]
    if empty:
        raise DataError(f"{what} folder {split_dir}: class folder(s) without images: {_names(empty)}")
    return classes


def _did_you_mean(root: Path, split_dirs: Sequence[str]) -> str:
    """' Did you mean PARENT?' when ``root`` is itself a split folder of a dataset (one level too deep)."""
    parent = root.parent
    if root.name in split_dirs and parent != root and all((parent / d).is_dir() for d in split_dirs):
        return f" Did you mean {parent}? (the dataset root is the folder holding {' and '.join(split_dirs)})"
    return ""


def validate_dataset(
    root: str | Path, train_dir: str = "train", val_dir: str = "val", *, need_train: bool = True
) -> list[str]:
    """Check the layout of a dataset root before any work starts; returns the sorted class names.

    One :class:`DataError` for: unset, missing or empty root; missing or empty split folders (with
    "did you mean ...?" when ``root`` is one level too deep); class folders without images; train
    and val with different class folders. With ``need_train=False`` (evaluation) only ``val_dir``
    must exist.
    """
    if not str(root):
        raise DataError(
            "data.root is not set: point it at a folder with train/<class>/ and val/<class>/ "
            f"(e.g. --set data.root=data/demo after '{alexnet_command('demo-data')}')"
        )
    root = Path(root)
    require_folder(root, "dataset root")
    splits = [train_dir, val_dir] if need_train else [val_dir]
    if not any(root.iterdir()):
        raise DataError(
            f"dataset root {root} is empty (expected "
            + " and ".join(f"{root}/{s}/<class>/" for s in splits)
            + ")"
        )
    for split in splits:
        if not (root / split).is_dir() and (hint := _did_you_mean(root, splits)):
            raise DataError(f"{root} holds no {split}/ folder.{hint}")
    if not need_train:
        return validate_split(root / val_dir, "validation")
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
