"""``alexnet figures``: the paper's Figures 3 and 4 drawn from a checkpoint (Krizhevsky et al. 2012,
sections 6.1).

- Figure 3: the 96 conv1 kernels (11×11×3), tower a's 48 above tower b's 48, each kernel min-max
  normalised on its own and upscaled.
- Figure 4 (left): validation images with the correct label under each and the net's top-5 labels as
  probability bars; the bar of the correct label, when it is among the five, is red.
- Figure 4 (right): query images (first column) and the training images whose fc7 feature vectors
  (the last 4096-d hidden layer) are nearest in Euclidean distance.

The drawing functions take plain tensors and return uint8 ``(H, W, 3)`` arrays, so they are testable
without a dataset; :func:`make_figures` wires them to a checkpoint and the :class:`ImagePipeline`,
and writes PNG files (pillow) and TensorBoard images.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from alexnet.commands._args import device_request, whole_number
from alexnet.data.pipeline import ImagePipeline
from alexnet.evaluation.checkpoints import (
    checkpoint_stats,
    model_from_state,
    read_checkpoint,
    resolve_checkpoint,
    run_dir_of_checkpoint,
)
from alexnet.evaluation.features import fc7_features
from alexnet.evaluation.network import checked_devices
from alexnet.evaluation.pictures import (
    across_classes,
    conv1_weights,
    kernel_grid,
    nearest_neighbours,
    neighbour_grid,
    resize_images,
    top5_panel,
    write_png,
)


def make_figures(
    checkpoint: str | Path,
    data_root: str | Path,
    *,
    out: str | Path | None = None,
    n_images: int = 8,
    n_queries: int = 5,
    n_neighbours: int = 6,
    max_train: int = 2000,
    max_val: int = 1000,
    thumb: int = 96,
    devices: Sequence[str] | str = "auto",
    seed: int = 0,
    batch_size: int = 64,
) -> list[Path]:
    """Write Figures 3 and 4 for ``checkpoint`` on the dataset at ``data_root`` as PNG files and as
    TensorBoard images (tags ``figures/...``, step = the checkpoint's step) in ``out``.

    Validation images are drawn (seeded, across classes) from the first ``max_val`` of the
    validation set; neighbours are searched among the centre crops of ``max_train`` training images
    (0 = all). ``devices``: as :func:`twogpu.placement.resolve_devices` takes them (checked first,
    with the GPU-to-GPU copy guard on two GPUs: :func:`alexnet.evaluation.network.checked_devices`)."""
    tower_devs = checked_devices(devices)
    checkpoint = resolve_checkpoint(checkpoint)
    state = read_checkpoint(checkpoint)
    model, cfg = model_from_state(state, tower_devs.pair, str(checkpoint))
    out = Path(out) if out is not None else run_dir_of_checkpoint(checkpoint) / "figures"
    step = int(state.get("step", 0))
    dev = tower_devs.a  # the input goes to tower a's device; the model feeds tower b from there
    # Centre crops, no reflections: the pictures show the images as the test views see them.
    data_cfg = dataclasses.replace(cfg.data, root=str(data_root), flip=False, random_crop=False)
    # The mean image the network was trained with, when the checkpoint carries it.
    pipe = ImagePipeline(
        data_cfg,
        batch_size=batch_size,
        seed=seed,
        device=dev,
        input_size=cfg.model.input_size,
        stats=checkpoint_stats(state, str(checkpoint), data_cfg.image_size),
    )
    if "classes" in state and list(state["classes"]) != pipe.classes:
        raise ValueError(
            f"{data_root} has different class folders than the checkpoint {checkpoint} was trained on"
        )
    if pipe.num_classes != cfg.model.num_classes:
        raise ValueError(
            f"{data_root}: {pipe.num_classes} classes but the checkpoint's fc8 has {cfg.model.num_classes}"
        )
    del state

    # Validation images: probabilities and fc7 features.
    imgs, labels, probs, feats = [], [], [], []
    for batch in pipe.val_batches(ten_view=False, batch_size=batch_size, limit=max_val):
        f, logits = fc7_features(model, pipe.to_model_input(batch, dev, train=False))
        imgs.append(batch.images.cpu())
        labels.append(batch.labels.cpu())
        probs.append(logits.float().softmax(1).cpu())
        feats.append(f.float().cpu())
    if not imgs:
        raise ValueError(f"{data_root}: no validation images")
    imgs, labels, probs, feats = (torch.cat(t)[:max_val] for t in (imgs, labels, probs, feats))
    shown, queries = across_classes(labels, n_images, seed), across_classes(labels, n_queries, seed)

    # Training images: fc7 features of centre crops, kept as thumbnails.
    pool_feats, pool_thumbs, seen = [], [], 0
    for batch in pipe.train_batches(epoch=0):
        f, _ = fc7_features(model, pipe.to_model_input(batch, dev, train=False))
        pool_feats.append(f.float().cpu())
        pool_thumbs.append(resize_images(batch.images.cpu(), thumb))
        seen += len(batch.labels)
        if max_train and seen >= max_train:
            break
    pipe.close()
    pool_f = torch.cat(pool_feats)[: max_train or None]
    pool_t = torch.cat(pool_thumbs)[: max_train or None]

    figures = {
        "figure3_conv1_kernels": kernel_grid(conv1_weights(model)),
        "figure4_left_top5": top5_panel(imgs[shown], probs[shown], labels[shown], pipe.class_names),
        "figure4_right_neighbours": neighbour_grid(
            resize_images(imgs[queries], thumb),
            pool_t,
            nearest_neighbours(feats[queries], pool_f, n_neighbours),
        ),
    }
    paths = [write_png(arr, out / f"{name}.png") for name, arr in figures.items()]
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(out)) as writer:
        for name, arr in figures.items():
            writer.add_image(f"figures/{name}", arr, global_step=step, dataformats="HWC")
    return paths


# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="dataset root holding train/ and val/ (as data.root)")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint file (.pt), or a run directory for its checkpoints/best.pt",
    )
    p.add_argument(
        "--out", default=None, help="output folder for PNGs and TensorBoard images (default: <run>/figures)"
    )
    p.add_argument(
        "--images", type=whole_number(1), default=8, metavar="N", help="validation images in Figure 4 (left)"
    )
    p.add_argument(
        "--queries", type=whole_number(1), default=5, metavar="N", help="query images in Figure 4 (right)"
    )
    p.add_argument(
        "--neighbours",
        type=whole_number(1),
        default=6,
        metavar="N",
        help="nearest training images per query",
    )
    p.add_argument(
        "--max-train",
        type=whole_number(0),
        metavar="N",
        default=2000,
        help="training images searched for neighbours (centre crops; 0 = all)",
    )
    p.add_argument(
        "--devices",
        "--device",
        type=device_request,
        default="auto",
        help="'auto', 'single', tower a,tower b (e.g. cuda:0,cuda:1 or cpu,cpu), or one device for both",
    )
    p.add_argument(
        "--seed", type=whole_number(0), default=0, help="seed choosing the validation images shown"
    )


def run(args: argparse.Namespace) -> int:
    paths = make_figures(
        args.checkpoint,
        args.data,
        out=args.out,
        n_images=args.images,
        n_queries=args.queries,
        n_neighbours=args.neighbours,
        max_train=args.max_train,
        devices=args.devices,
        seed=args.seed,
    )
    for path in paths:
        print(path)
    return 0
