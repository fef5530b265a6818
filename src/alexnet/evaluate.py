"""Evaluation (section 6): top-1 and top-5 error of a checkpoint on the validation set, for the
centre view (``model.input_size``: 224×224, or Caffe's 227×227) and for the paper's ten views (four
corners and the centre, and their reflections), whose softmax outputs are averaged.

``alexnet evaluate --checkpoint runs/x/checkpoints/best.pt DATA`` prints both and writes
``eval.json`` into the run directory (see the run-directory contract in the README).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from alexnet.config import Config, config_from_dict
from alexnet.grouped import grouped_from
from alexnet.model import AlexNet
from twogpu.checkpoint import load_checkpoint


def load_model(checkpoint: str | Path, devices: Sequence[str | torch.device] = ("cpu", "cpu")) -> tuple[AlexNet, Config]:
    """Rebuild the two-tower model of a checkpoint on ``devices`` (tower a, tower b), in eval mode,
    with the checkpoint's resolved config."""
    state = load_checkpoint(checkpoint)
    return model_from_state(state, devices, source=str(checkpoint))


def model_from_state(state: dict[str, Any], devices: Sequence[str | torch.device] = ("cpu", "cpu"),
                     source: str = "<checkpoint>") -> tuple[AlexNet, Config]:
    if "model" not in state or "config" not in state:
        raise ValueError(f"{source} is not an AlexNet training checkpoint (needs 'model' and 'config')")
    cfg = config_from_dict(state["config"], source)
    model = AlexNet(devices=tuple(devices), preset=cfg.model)
    target = model.state_dict()
    model.load_state_dict({k: v.to(target[k].device) if k in target else v for k, v in state["model"].items()})
    model.eval()
    return model, cfg


def checkpoint_stats(state: dict[str, Any], source: str, image_size: int):
    """The dataset statistics the checkpoint was trained with (a :class:`alexnet.stats.Stats`), or None."""
    from alexnet.stats import Stats
    s = state.get("stats")
    if not s:
        return None
    mean = s["mean"].numpy().astype(np.float32)
    if mean.shape[-1] != image_size:
        return None
    return Stats(mean, s["eigval"].numpy().astype(np.float32), s["eigvec"].numpy().astype(np.float32), 0, source)


def run_dir_of_checkpoint(checkpoint: str | Path) -> Path:
    """``runs/x/checkpoints/best.pt`` → ``runs/x``; a checkpoint elsewhere → its own folder."""
    p = Path(checkpoint).resolve()
    return p.parent.parent if p.parent.name == "checkpoints" else p.parent


def topk_errors(probs: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """(top-1 wrong, top-5 wrong) counts for (N, classes) scores."""
    k = min(5, probs.shape[1])
    top = probs.topk(k, dim=1).indices
    hit = top == labels[:, None]
    return int((~hit[:, 0]).sum()), int((~hit.any(1)).sum())


@torch.no_grad()
def evaluate(checkpoint: str | Path, data_root: str | None = None, *, devices: Sequence[str] | str = "auto",
             ten_view: bool | None = None, batch_size: int | None = None, limit: int | None = None,
             out: str | Path | None = None, log=print) -> dict[str, Any]:
    """Centre-view (and ten-view) top-1/top-5 error of ``checkpoint`` on ``data_root``'s validation
    images; writes the result as JSON to ``out`` (default ``<run dir>/eval.json``) and returns it."""
    from alexnet.console import progress
    from alexnet.data import ImagePipeline
    from twogpu.placement import resolve_devices

    state = load_checkpoint(checkpoint)
    tower_devs = resolve_devices(devices)
    model, cfg = model_from_state(state, tower_devs.pair, str(checkpoint))
    net: nn.Module = grouped_from(model, tower_devs.a).eval() if tower_devs.same and cfg.model.towers == 2 else model
    data = dataclasses.replace(cfg.data, root=data_root or cfg.data.root)
    bs = batch_size or cfg.eval.batch_size
    pipe = ImagePipeline(data, batch_size=1, seed=cfg.train.seed, device=tower_devs.a,
                         input_size=cfg.model.input_size)
    if "classes" in state and list(state["classes"]) != pipe.classes:
        raise ValueError(f"{data.root} has different class folders than the checkpoint {checkpoint} was trained on")
    stats = checkpoint_stats(state, str(checkpoint), data.image_size)
    if stats is not None:
        pipe.stats = stats                                     # the mean image the network was trained with
    dev = tower_devs.a
    result: dict[str, Any] = {"checkpoint": str(checkpoint), "data": str(data.root),
                              "step": int(state.get("step", 0)), "epoch": int(state.get("epoch", 0))}
    views = [("centre", False)] + ([("ten_view", True)] if (cfg.eval.ten_view if ten_view is None else ten_view) else [])
    n_val = len(pipe.val_indices(limit))
    for name, ten in views:
        n = wrong1 = wrong5 = 0
        batches = pipe.val_batches(ten_view=ten, batch_size=bs, limit=limit)
        for batch in progress(batches, total=(n_val + bs - 1) // bs, desc=f"{name:8s}", unit="batch"):
            # (N, 3, C, C) or (N, 10, 3, C, C); on two devices each tower's copy, normalised there
            xs = (pipe.to_tower_inputs(batch, tower_devs.pair, train=False) if not tower_devs.same
                  else (pipe.to_model_input(batch, dev, train=False),))
            y = batch.labels.to(dev)
            flat = tuple(x.reshape(-1, *x.shape[-3:]) for x in xs)                 # (N·V, 3, C, C)
            logits = net(flat if len(flat) == 2 else flat[0])                      # (N·V, classes)
            probs = logits.softmax(1).reshape(len(y), -1, logits.shape[1]).mean(1)  # (N, classes), views averaged
            w1, w5 = topk_errors(probs, y)
            n, wrong1, wrong5 = n + len(y), wrong1 + w1, wrong5 + w5
        result[name] = {"top1_err": wrong1 / max(n, 1), "top5_err": wrong5 / max(n, 1)}
        result["images"] = n
        log(f"{name:8s}: top-1 error {100 * wrong1 / max(n, 1):.2f}%  top-5 error {100 * wrong5 / max(n, 1):.2f}%  "
            f"({n} images)")
    summary = pipe.bad_input_summary()
    if summary:
        log(summary)
    out = Path(out) if out else run_dir_of_checkpoint(checkpoint) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out)
    log(f"wrote {out}")
    return result
