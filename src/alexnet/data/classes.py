"""Human-readable class names, with no download.

ImageNet's 1000 ILSVRC-2012 classes are indexed by the lexicographic order of their wnids (the
folder names ``n01440764`` ... ``n15075141``): the order torchvision's ``ImageFolder``/``ImageNet``,
its pretrained weights and most other frameworks use. torchvision ships the matching English names
in its weights metadata (``AlexNet_Weights.IMAGENET1K_V1.meta["categories"]``, index i = the i-th
sorted wnid), but no list of the wnids themselves. So:

1. if the dataset root holds torchvision's ``meta.bin`` (written from the devkit by
   ``torchvision.datasets.ImageNet`` or ``alexnet prepare``), names come from it, wnid by wnid —
   this also names any subset of ImageNet's classes;
2. else, with exactly 1000 wnid-shaped class folders, the i-th sorted folder gets the i-th
   category name;
3. else the folder names themselves are the class names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

WNID = re.compile(r"^n\d{8}$")


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names in sorted-wnid order (from torchvision's weights metadata)."""
    from torchvision.models import AlexNet_Weights

    return list(AlexNet_Weights.IMAGENET1K_V1.meta["categories"])


def _from_meta_bin(classes: Sequence[str], root: Path) -> list[str] | None:
    meta = root / "meta.bin"
    if not meta.is_file():
        return None
    try:
        import torch

        wnid_to_classes, _val_wnids = torch.load(meta, weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable meta.bin just means no names from it
        return None
    if not all(c in wnid_to_classes for c in classes):
        return None
    names = []
    for c in classes:
        value = wnid_to_classes[c]
        names.append(value[0] if isinstance(value, (tuple, list)) else str(value))
    return names


def class_names(classes: Sequence[str], root: str | Path | None = None) -> list[str]:
    """Readable names for the sorted class folders ``classes`` (see the module docstring)."""
    if root is not None:
        named = _from_meta_bin(classes, Path(root))
        if named is not None:
            return named
    if len(classes) == 1000 and all(WNID.match(c) for c in classes) and list(classes) == sorted(classes):
        return imagenet_categories()
    return list(classes)
