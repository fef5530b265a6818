"""Evaluation (section 6): top-1 and top-5 error of a checkpoint on the validation set, for the
centre view (``model.input_size``: 224×224, or Caffe's 227×227) and for the paper's ten views (four
corners and the centre, and their reflections), whose softmax outputs are averaged.

``alexnet evaluate --checkpoint runs/x/checkpoints/best.pt DATA`` prints both and writes
``eval.json`` into the run directory (see the run-directory contract in the README). Only the
checkpoint and ``DATA/val/`` are needed; the mean image is the one the network was trained with
(saved in the checkpoint), and the command says which one it uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from alexnet.commands._console import progress
from alexnet.data.pipeline import ImagePipeline
from alexnet.data.stats import resolve_stats
from alexnet.evaluation.checkpoints import (
    checkpoint_stats,
    model_from_state,
    resolve_checkpoint,
    run_dir_of_checkpoint,
)
from alexnet.evaluation.metrics import topk_mistakes
from alexnet.evaluation.network import network_for, network_inputs
from twogpu import precision
from twogpu.checkpoint import load_checkpoint
from twogpu.files import write_text_atomic
from twogpu.placement import resolve_devices


@torch.no_grad()
def evaluate(
    checkpoint: str | Path,
    data_root: str | None = None,
    *,
    devices: Sequence[str] | str = "auto",
    ten_view: bool | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Centre-view (and ten-view) top-1/top-5 error of ``checkpoint`` (a file, or a run directory
    for its ``checkpoints/best.pt``) on ``data_root``'s validation images; writes the result as
    JSON to ``out`` (default ``<run dir>/eval.json``) and returns it."""
    checkpoint = resolve_checkpoint(checkpoint)
    state = load_checkpoint(checkpoint)
    tower_devs = resolve_devices(devices)
    model, cfg = model_from_state(state, tower_devs.pair, str(checkpoint))
    net = network_for(model, tower_devs).eval()
    data = dataclasses.replace(cfg.data, root=data_root or cfg.data.root)
    # The mean image the network was trained with; older checkpoints without one: the dataset's.
    stats = checkpoint_stats(state, str(checkpoint), data.image_size) or resolve_stats(
        data.stats, data.root, data.image_size
    )
    bs = batch_size or cfg.eval.batch_size
    pipe = ImagePipeline(
        data,
        batch_size=1,
        seed=cfg.train.seed,
        device=tower_devs.a,
        input_size=cfg.model.input_size,
        need_train=False,
        stats=stats,
    )
    if "classes" in state and list(state["classes"]) != pipe.classes:
        raise ValueError(
            f"{data.root} has different class folders than the checkpoint {checkpoint} was trained on"
        )
    log(f"mean image: {stats.describe()}")
    # The arithmetic the network was trained with (train.precision): fp32 is true fp32 on a GPU too.
    log(f"precision: {precision.configure(cfg.train.precision)}")
    dev = tower_devs.a
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": str(data.root),
        "step": int(state.get("step", 0)),
        "epoch": int(state.get("epoch", 0)),
        "mean_image": stats.source,
    }
    views = [("centre", False)] + (
        [("ten_view", True)] if (cfg.eval.ten_view if ten_view is None else ten_view) else []
    )
    n_val = len(pipe.val_indices(limit))
    for name, ten in views:
        n = wrong1 = wrong5 = 0
        batches = pipe.val_batches(ten_view=ten, batch_size=bs, limit=limit)
        for batch in progress(batches, total=(n_val + bs - 1) // bs, desc=f"{name:8s}", unit="batch"):
            # (N, 3, C, C) or (N, 10, 3, C, C); on two devices each tower's copy, normalised there
            xs = network_inputs(pipe, batch, net, tower_devs, train=False)
            y = batch.labels.to(dev)
            flat = tuple(x.reshape(-1, *x.shape[-3:]) for x in xs)  # (N·V, 3, C, C)
            with precision.autocast(dev, cfg.train.precision):
                logits = net(flat if len(flat) == 2 else flat[0]).float()  # (N·V, classes)
            probs = (
                logits.softmax(1).reshape(len(y), -1, logits.shape[1]).mean(1)
            )  # (N, classes), views averaged
            m = topk_mistakes(probs, y)
            n, wrong1, wrong5 = n + len(y), wrong1 + int(m["top1"]), wrong5 + int(m["top5"])
        result[name] = {"top1_err": wrong1 / max(n, 1), "top5_err": wrong5 / max(n, 1)}
        result["images"] = n
        log(
            f"{name:8s}: top-1 error {100 * wrong1 / max(n, 1):.2f}%  top-5 error "
            f"{100 * wrong5 / max(n, 1):.2f}%  "
            f"({n} images)"
        )
    summary = pipe.bad_input_summary()
    if summary:
        log(summary)
    out = Path(out) if out else run_dir_of_checkpoint(checkpoint) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")
    return result


# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        nargs="?",
        default=None,
        metavar="DATA",
        help="dataset root holding val/ (train/ is not needed; default: the checkpoint's data.root)",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        help="checkpoint file (.pt), or a run directory for its checkpoints/best.pt, e.g. runs/<name>",
    )
    p.add_argument(
        "--devices", default="auto", help="'auto', or tower a,tower b, e.g. cuda:0,cuda:1 or cpu,cpu"
    )
    p.add_argument(
        "--no-ten-view",
        dest="ten_view",
        action="store_false",
        default=None,
        help="only the centre view (skip the 10-view average)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: eval.batch_size)")
    p.add_argument("--limit", type=int, default=None, help="evaluate a fixed subset of this many images")
    p.add_argument("--out", default=None, help="JSON output (default: <run dir>/eval.json)")


def run(args: argparse.Namespace) -> int:
    devices = args.devices if args.devices == "auto" else args.devices.split(",")
    evaluate(
        args.checkpoint,
        args.data,
        devices=devices,
        ten_view=args.ten_view,
        batch_size=args.batch_size,
        limit=args.limit,
        out=args.out,
    )
    return 0
