"""Data augmentation of paper section 4.1 and the test views of section 6.

Two halves, split by where they run:

* In DataLoader workers, on uint8 arrays: the geometry. A training view is a random
  ``crop × crop`` window of the 256×256 image, mirrored with probability 1/2; the test views are
  the centre window and the ten views (four corners + centre, and their mirrors). Each view is
  described by ``(top, left, flipped)`` so the device side can cut the same window of the mean
  image. The randomness of a sample comes from ``numpy.random.default_rng`` seeded with
  ``(seed, epoch, index)`` only — never from global state — so it does not depend on the number
  of workers, on the process that decodes the sample, or on what ran before.

* On the device, batched in float32: subtract the per-pixel mean image (section 2: raw 0..255
  values minus the training-set mean, no division by a std), cropped and mirrored like each
  image (``mean_window="crop"``) or its centre window for every view (``"centre"``, cuda-convnet2's
  ``convdata.py``), and add the PCA colour ("lighting") noise; cuda-convnet2 then scales the whole
  training input by 1/(1 + σ) (``rescale``).

Crops are ``model.input_size`` wide: 224 (the paper's; 33 × 33 offsets in a 256 image, as
cuda-convnet2's ``jpeg.cpp`` draws them) or 227 (Caffe's; 30 × 30).

Lighting convention (section 4.1). To each pixel add ``P (α ∘ λ)`` where the columns of ``P`` are
the eigenvectors of the 3×3 RGB covariance, ``λ`` its eigenvalues and ``α ~ N(0, σ²)``, σ = 0.1,
drawn once per image per use. The paper's ``α·λ`` is not unit-free (λ is in pixel units²), so a
scale must be chosen: we keep ``λ`` as the eigenvalues of the covariance of pixel values scaled to
0..1 (the scale of the well-known published ImageNet values) and multiply the offset by 255 to add
it to 0..255 pixels: ``offset = 255 · P (α ∘ λ₀₁)``. (Taking λ of the 0..255 covariance literally
gives offsets 65 025× larger — std ≈ 1400 grey levels — which would wipe out the image.)
``formula = "cuda-convnet"`` instead adds ``P (α ∘ √λ₂₅₅) = 255 · P (α ∘ √λ₀₁)``, what
Krizhevsky's released code does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

Crop = tuple[int, int, int]
"""(top, left, flipped) of one view inside the image_size × image_size image."""

_TAG_CROP = 0xC0
_TAG_ORDER = 0x0D


def _seed(seed: int) -> int:
    return seed % (1 << 64)  # SeedSequence takes non-negative integers only


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation in one epoch: a function of its arguments only."""
    return np.random.default_rng([_TAG_CROP, _seed(seed), epoch, index])


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which the ``n`` training samples are visited in ``epoch``."""
    return np.random.default_rng([_TAG_ORDER, _seed(seed), epoch]).permutation(n)


def train_crop(
    seed: int,
    epoch: int,
    index: int,
    image_size: int,
    crop_size: int,
    *,
    random_crop: bool = True,
    flip: bool = True,
) -> Crop:
    """A random ``crop_size`` window of the ``image_size`` square and a coin flip (section 4.1)."""
    rng = sample_rng(seed, epoch, index)
    span = image_size - crop_size + 1
    top, left = (int(v) for v in rng.integers(0, span, size=2))
    flipped = int(rng.integers(0, 2))
    if not random_crop:
        top = left = (image_size - crop_size) // 2
    return top, left, flipped if flip else 0


def centre_crop(image_size: int, crop_size: int) -> Crop:
    """The central window (the single-view test input)."""
    c = (image_size - crop_size) // 2
    return c, c, 0


def ten_views(image_size: int, crop_size: int) -> list[Crop]:
    """The ten test views of section 6: four corners and the centre, then the same five mirrored."""
    far = image_size - crop_size
    c = far // 2
    five = [(0, 0), (0, far), (far, 0), (far, far), (c, c)]
    return [(t, l, 0) for t, l in five] + [(t, l, 1) for t, l in five]


def crop_view(image: np.ndarray, view: Crop, crop_size: int) -> np.ndarray:
    """Cut one view out of an (H, W, 3) uint8 image: (3, crop, crop) uint8, contiguous."""
    top, left, flipped = view
    if top < 0 or left < 0 or top + crop_size > image.shape[0] or left + crop_size > image.shape[1]:
        raise ValueError(f"crop {view} of size {crop_size} leaves the {image.shape[:2]} image")
    window = image[top : top + crop_size, left : left + crop_size]
    if flipped:
        window = window[:, ::-1]
    return np.ascontiguousarray(window.transpose(2, 0, 1))  # (3, C, C)


# ------------------------------------------------------------------------------------ device side
def mean_windows(mean: torch.Tensor, crops: torch.Tensor, crop_size: int) -> torch.Tensor:
    """The window of the (3, S, S) ``mean`` image under each crop: (M, 3, C, C).

    ``crops`` is (M, 3) = [top, left, flipped], on the same device as ``mean``; one gather, no loop.
    """
    ar = torch.arange(crop_size, device=mean.device)
    top, left, flipped = crops[:, 0:1], crops[:, 1:2], crops[:, 2:3].bool()
    rows = top + ar  # (M, C)
    cols = torch.where(flipped, left + (crop_size - 1 - ar), left + ar)  # (M, C)
    out = mean[:, rows[:, :, None], cols[:, None, :]]  # (3, M, C, C)
    return out.permute(1, 0, 2, 3)  # (M, 3, C, C)


def _cpu_input(
    views: torch.Tensor, mean: torch.Tensor, crops: torch.Tensor, offsets: torch.Tensor | None
) -> torch.Tensor:
    """CPU path of :func:`model_input`: ``views[k] - window k of mean (+ offset k)``, one pass per view,
    in numpy. Many small torch ops would each enter the intra-op thread pool, which on a busy machine
    costs ~100× the arithmetic; numpy's element-wise ops are single-threaded, and a mirrored window is
    just a negative-stride view."""
    m, _, c, _ = views.shape
    src = views.numpy()  # (M, 3, C, C) uint8
    mean_np = mean.numpy()  # (3, S, S) float32
    off = None if offsets is None else offsets.numpy()[:, :, None, None]
    out = np.empty(src.shape, dtype=np.float32)
    for k, (top, left, flipped) in enumerate(crops.tolist()):
        window = mean_np[:, top : top + c, left : left + c]
        np.subtract(src[k], window[:, :, ::-1] if flipped else window, out=out[k])
        if off is not None:
            out[k] += off[k]
    return torch.from_numpy(out)


def lighting_offsets(
    alpha: torch.Tensor,
    eigval: torch.Tensor,
    eigvec: torch.Tensor,
    formula: Literal["paper", "cuda-convnet"] = "paper",
) -> torch.Tensor:
    """Per-image RGB offsets in 0..255 units, (N, 3), from ``alpha`` (N, 3) ~ N(0, σ²).

    ``eigval`` (3,) are the eigenvalues of the RGB covariance of 0..1-scaled pixels, ``eigvec``
    (3, 3) holds the eigenvectors in its columns. See the module docstring for the two formulas.
    """
    if formula == "paper":
        weights = alpha * eigval  # (N, 3)   α_i λ_i
    elif formula == "cuda-convnet":
        weights = alpha * eigval.clamp_min(0).sqrt()  # (N, 3)   α_i √λ_i
    else:
        raise ValueError(f"unknown lighting formula {formula!r}")
    return 255.0 * weights @ eigvec.T  # (N, 3)   Σ_i w_i p_i


def image_offsets(
    n: int,
    eigval: torch.Tensor,
    eigvec: torch.Tensor,
    lighting_std: float,
    *,
    formula: Literal["paper", "cuda-convnet"] = "paper",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Section 4.1's PCA lighting: one RGB offset per image, (n, 3), on ``eigval``'s device, from
    α ~ N(0, σ²) drawn with ``generator``."""
    alpha = torch.randn(n, 3, generator=generator, device=eigval.device) * lighting_std
    return lighting_offsets(alpha, eigval, eigvec.to(eigval.device), formula)


def mean_crops(
    crops: torch.Tensor, image_size: int, crop_size: int, mean_window: Literal["crop", "centre"]
) -> torch.Tensor:
    """The windows of the mean image to subtract from views cut at ``crops`` (..., 3): the views' own
    (``"crop"``) or the unmirrored centre window for all (``"centre"``, cuda-convnet2's
    ``data_mean_crop``)."""
    if mean_window == "crop":
        return crops
    if mean_window != "centre":
        raise ValueError(f"unknown mean window {mean_window!r}")
    c = (image_size - crop_size) // 2
    return torch.tensor([c, c, 0], dtype=crops.dtype, device=crops.device).expand(crops.shape)


def model_input(
    images: torch.Tensor,
    crops: torch.Tensor,
    mean: torch.Tensor,
    *,
    eigval: torch.Tensor | None = None,
    eigvec: torch.Tensor | None = None,
    lighting_std: float = 0.0,
    formula: Literal["paper", "cuda-convnet"] = "paper",
    generator: torch.Generator | None = None,
    offsets: torch.Tensor | None = None,
    mean_window: Literal["crop", "centre"] = "crop",
    rescale: bool = False,
) -> torch.Tensor:
    """uint8 views → float32 network input on ``mean``'s device.

    ``images`` (N, 3, C, C) or (N, V, 3, C, C) uint8, ``crops`` (N, 3) or (N, V, 3). Subtracts the
    mean image's window (:func:`mean_crops`); adds lighting noise (one α per image, shared by its
    views) when ``lighting_std > 0``, or the per-image RGB ``offsets`` (N, 3) given (already drawn,
    e.g. for the other tower's copy of the batch); then, with ``rescale`` and ``lighting_std > 0``,
    multiplies the whole input by 1 / (1 + lighting_std) (cuda-convnet2 ``convdata.py``,
    ``add_color_noise``).
    """
    device = mean.device
    shape = images.shape
    c = shape[-1]
    crops = mean_crops(crops, mean.shape[-1], c, mean_window)
    views = images.reshape(-1, 3, c, c)  # (M, 3, C, C)
    if offsets is None and lighting_std > 0:
        if eigval is None or eigvec is None:
            raise ValueError("lighting needs the eigenvalues and eigenvectors")
        offsets = image_offsets(
            shape[0], eigval.to(device), eigvec, lighting_std, formula=formula, generator=generator
        )  # (N, 3)
    if offsets is not None:
        offsets = offsets.to(device).repeat_interleave(views.shape[0] // shape[0], dim=0)  # (M, 3)
    if device.type == "cpu":
        flat = _cpu_input(views.cpu(), mean, crops.reshape(-1, 3), offsets)
    else:
        flat = views.to(device, non_blocking=True).float()
        flat -= mean_windows(mean, crops.reshape(-1, 3).to(device, non_blocking=True), c)
        if offsets is not None:
            flat += offsets[:, :, None, None]
    if rescale and lighting_std > 0:
        flat *= 1.0 / (1.0 + lighting_std)
    return flat.reshape(shape)


def views_for(
    kind: Literal["train", "centre", "ten"],
    image_size: int,
    crop_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    index: int = 0,
    random_crop: bool = True,
    flip: bool = True,
) -> Sequence[Crop]:
    """The views a sample gets: one random training view, the centre, or the ten test views."""
    if kind == "train":
        return [train_crop(seed, epoch, index, image_size, crop_size, random_crop=random_crop, flip=flip)]
    if kind == "centre":
        return [centre_crop(image_size, crop_size)]
    if kind == "ten":
        return ten_views(image_size, crop_size)
    raise ValueError(f"unknown view kind {kind!r}")
