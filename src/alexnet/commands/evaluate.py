"""Evaluation (section 6): top-1 and top-5 error of a checkpoint on the validation set, for the
centre view (``model.input_size``: 224×224, or Caffe's 227×227) and for the paper's ten views (four
corners and the centre, and their reflections), whose softmax outputs are averaged.

``alexnet evaluate --checkpoint runs/x/checkpoints/best.pt DATA`` prints both and writes
``eval.json`` into the run directory (see ``docs/evaluation.md``). Only the
checkpoint and ``DATA/val/`` are needed; the mean image is the one the network was trained with
(saved in the checkpoint), and the command says which one it uses.

With several checkpoints (``--checkpoint A B C --out ensemble.json``) it evaluates Table 2's
ensemble (:mod:`alexnet.evaluation.ensemble`): each member's errors, the errors of their averaged
softmax outputs, and the ensemble's gain over the best and the mean member, beside the paper's
(docs/ensembles.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from alexnet.commands._args import whole_number
from alexnet.commands._console import progress
from alexnet.config import Config
from alexnet.data.pipeline import ImagePipeline
from alexnet.data.stats import resolve_stats
from alexnet.evaluation import ensemble
from alexnet.evaluation.checkpoints import (
    checkpoint_stats,
    model_from_state,
    read_checkpoint,
    resolve_checkpoint,
    run_dir_of_checkpoint,
    split_checkpoints,
)
from alexnet.evaluation.intervals import wilson
from alexnet.evaluation.metrics import topk_mistakes
from alexnet.evaluation.network import checked_devices, network_for, network_inputs
from twogpu import precision
from twogpu.files import write_text_atomic
from twogpu.placement import TowerDevices

VIEW_TITLES = {"centre": "centre view", "ten_view": "10 views"}


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
    for its ``checkpoints/best.pt``) on ``data_root``'s validation images (default: the checkpoint's
    ``data.root``); writes the result as JSON to ``out`` (default ``<run dir>/eval.json``) and
    returns it."""
    _check_counts(batch_size, limit)
    checkpoint = resolve_checkpoint(checkpoint)
    state = read_checkpoint(checkpoint)
    tower_devs = checked_devices(devices, log)
    model, cfg = model_from_state(state, tower_devs.pair, str(checkpoint))
    root = _data_root(data_root, cfg, checkpoint)
    pipe = _pipeline(state, cfg, checkpoint, root, tower_devs, cfg.train.seed)
    net = network_for(model, tower_devs).eval()
    views = _views(cfg.eval.ten_view if ten_view is None else ten_view)
    result, _ = _evaluate_member(state, checkpoint, cfg, net, pipe, tower_devs, views, batch_size, limit, log)
    out = Path(out) if out else run_dir_of_checkpoint(checkpoint) / "eval.json"
    _write(out, result, log)
    return result


@torch.no_grad()
def evaluate_ensemble(
    checkpoints: Sequence[str | Path],
    data_root: str | None = None,
    *,
    out: str | Path,
    devices: Sequence[str] | str = "auto",
    ten_view: bool | None = None,
    batch_size: int | None = None,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Table 2's ensemble (section 6): each member's top-1/top-5 error and the error of the members'
    softmax outputs averaged per image (over views and members), on the same validation images in
    the same order: ``data_root`` (default: the first member's ``data.root``), the ``limit`` subset
    drawn with the first member's seed. Members may differ in preset, tower layout and input size;
    each gets its own views and mean image. Every member is checked (a loadable checkpoint, the same
    class list, the same images) before any is evaluated; then they run one after another, keeping
    only their probabilities. Writes the result as JSON to ``out`` (each member's own eval.json is
    left as it is) and returns it."""
    _check_counts(batch_size, limit)
    members = ensemble.read_members(checkpoints)
    tower_devs = checked_devices(devices, log)
    first = members[0]
    root = _data_root(data_root, first.config, first.checkpoint)
    seed = first.config.train.seed
    views = _views(all(m.config.eval.ten_view for m in members) if ten_view is None else ten_view)
    pipes = [_pipeline(m.state, m.config, m.checkpoint, root, tower_devs, seed) for m in members]
    _check_same_images(members, pipes, limit)
    averages = {name: ensemble.ProbabilityAverage() for name, _ in views}
    labels: torch.Tensor | None = None
    results = []
    for i, (m, pipe) in enumerate(zip(members, pipes)):
        log(f"member {i + 1} of {len(members)}: {m.checkpoint}")
        state = read_checkpoint(m.checkpoint)
        model, cfg = model_from_state(state, tower_devs.pair, str(m.checkpoint))
        net = network_for(model, tower_devs).eval()
        result, kept = _evaluate_member(
            state, m.checkpoint, cfg, net, pipe, tower_devs, views, batch_size, limit, log, keep=True
        )
        del state, model, net  # the next member's weights take their place
        for name, (probs, y) in kept.items():
            if labels is None:
                labels = y
            elif not torch.equal(y, labels):
                raise ValueError(f"{m.checkpoint} saw other images than {first.checkpoint} (unusable files?)")
            averages[name].add(probs)
        results.append(result)
    assert labels is not None  # at least one view of one member
    n = len(labels)
    out_result: dict[str, Any] = {"data": str(root), "images": n, "members": results, "ensemble": {}}
    out_result["gain_over_best"], out_result["gain_over_mean"] = {}, {}
    for name, _ in views:
        m = topk_mistakes(averages[name].mean(), labels)
        errors = {f"top{k}_err": int(m[f"top{k}"]) / n for k in (1, 5)}
        out_result["ensemble"][name] = errors | {f"{k}_ci": list(wilson(e, n)) for k, e in errors.items()}
        for which in ("best", "mean"):
            out_result[f"gain_over_{which}"][name] = {
                k.removesuffix("_err"): ensemble.estimate_dict(
                    ensemble.gains([r[name][k] for r in results], e, n)[which]
                )
                for k, e in errors.items()
            }
    out_result["paper"] = {
        "members": ensemble.PAPER_MEMBERS,
        "one_cnn": ensemble.PAPER_ONE_CNN,
        "ensemble": ensemble.PAPER_ENSEMBLE,
        "source": "Table 2, ILSVRC-2012 validation",
    }
    log(format_ensemble(out_result))
    _write(Path(out), out_result, log)
    return out_result


def format_ensemble(result: dict[str, Any]) -> str:
    """The ensemble table: per view, each member's errors, the ensemble's, and its gains over the
    best and the mean member, in % with 95 % intervals (``?``: the interval contains 0), beside the
    paper's gain of five CNNs over one."""
    n, members = result["images"], result["members"]

    def row(label: str, top1: str, top5: str) -> str:
        return f"  {label:28s}{top1:28s}{top5}"

    lines = [f"ensemble of {len(members)} (softmax averaged per image), errors in % [95 % interval]:"]
    one, many = ensemble.PAPER_ONE_CNN, ensemble.PAPER_ENSEMBLE
    paper = [f"{100 * (one[k] - many[k]):+.1f} ({100 * one[k]:.1f} → {100 * many[k]:.1f})" for k in one]
    for name in result["ensemble"]:
        lines.append(f"{VIEW_TITLES[name] + f', {n} images':30s}{'top-1 error':28s}top-5 error")
        for i, r in enumerate(members):
            lines.append(row(f"member {i + 1}", *(_pct_cell(r[name][k], wilson(r[name][k], n)) for k in one)))
        e = result["ensemble"][name]
        lines.append(row("ensemble", *(_pct_cell(e[k], e[f"{k}_ci"]) for k in one)))
        for which in ("best", "mean"):
            g = result[f"gain_over_{which}"][name]
            lines.append(row(f"gain over the {which} member", _gain_cell(g["top1"]), _gain_cell(g["top5"])))
        lines.append(
            row(f"paper: {ensemble.PAPER_MEMBERS} CNNs over 1", *paper) + "  (Table 2, ILSVRC-2012 val)"
        )
    lines += [
        "gain = a member's error minus the ensemble's (positive: averaging helps), best member per column;",
        "intervals: Wilson for errors, Newcombe for gains (conservative: all networks see the same images);",
        "? marks a gain these images cannot tell from 0.",
    ]
    return "\n".join(lines)


def _pct_cell(value: float, ci: Sequence[float]) -> str:
    return f"{100 * value:.2f} [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


def _gain_cell(g: dict[str, Any]) -> str:
    text = f"{100 * g['value']:+.2f} [{100 * g['lo']:+.2f}, {100 * g['hi']:+.2f}]"
    return text if g["resolved"] else text + " ?"


def _check_counts(batch_size: int | None, limit: int | None) -> None:
    """Counts the parser also refuses, for callers of the library (0 images is never an answer)."""
    for name, value in (("batch_size", batch_size), ("limit", limit)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


def _data_root(data_root: str | None, cfg: Config, checkpoint: Path) -> str:
    """DATA, else the checkpoint's ``data.root`` — said to come from the checkpoint when it is not a
    folder from here (a relative path is relative to the folder training ran in)."""
    if data_root:
        return data_root
    root = cfg.data.root
    if not root or not Path(root).is_dir():
        relative = (
            " (relative to the folder training ran in)" if root and not Path(root).is_absolute() else ""
        )
        raise ValueError(
            f"no DATA given, and {checkpoint}'s data.root {root!r}{relative} is not a folder from here "
            f"({Path.cwd()}): pass the dataset root holding val/ as DATA"
        )
    return root


def _pipeline(
    state: dict[str, Any], cfg: Config, checkpoint: Path, root: str, tower_devs: TowerDevices, seed: int
) -> ImagePipeline:
    """The validation images of ``root`` as the network of ``state`` was trained to see them: its
    input size, and its mean image (that of the dataset for older checkpoints without one)."""
    data = dataclasses.replace(cfg.data, root=root)
    stats = checkpoint_stats(state, str(checkpoint), data.image_size) or resolve_stats(
        data.stats, data.root, data.image_size
    )
    pipe = ImagePipeline(
        data,
        batch_size=1,
        seed=seed,
        device=tower_devs.a,
        input_size=cfg.model.input_size,
        need_train=False,
        stats=stats,
    )
    if "classes" in state and list(state["classes"]) != pipe.classes:
        raise ValueError(
            f"{data.root} has different class folders than the checkpoint {checkpoint} was trained on"
        )
    return pipe


def _check_same_images(members: Sequence[ensemble.Member], pipes: Sequence[ImagePipeline], limit: int | None):
    """Every member's validation images, in order, are the first member's (data.val_dir and
    data.max_per_class come from each member's config)."""
    first = [pipes[0].val_samples[i] for i in pipes[0].val_indices(limit)]
    for m, pipe in zip(members[1:], pipes[1:]):
        if [pipe.val_samples[i] for i in pipe.val_indices(limit)] != first:
            raise ValueError(
                f"{members[0].checkpoint} and {m.checkpoint} would be evaluated on different images "
                "(their data.val_dir or data.max_per_class differ): an ensemble needs the same images"
            )


def _views(ten_view: bool) -> list[tuple[str, bool]]:
    return [("centre", False)] + ([("ten_view", True)] if ten_view else [])


def _evaluate_member(
    state: dict[str, Any],
    checkpoint: Path,
    cfg: Config,
    net: torch.nn.Module,
    pipe: ImagePipeline,
    tower_devs: TowerDevices,
    views: Sequence[tuple[str, bool]],
    batch_size: int | None,
    limit: int | None,
    log: Callable[[str], None],
    keep: bool = False,
) -> tuple[dict[str, Any], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """One network's errors for each view ((name, ten views?)), as eval.json holds them; with
    ``keep``, also its probabilities (N, classes) on the CPU and the labels (N,) per view."""
    log(f"mean image: {pipe.stats.describe()}")
    # The arithmetic the network was trained with (train.precision): fp32 is true fp32 on a GPU too.
    log(f"precision: {precision.configure(cfg.train.precision)}")
    dev = tower_devs.a
    bs = batch_size or cfg.eval.batch_size
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": str(pipe.cfg.root),
        "step": int(state.get("step", 0)),
        "epoch": int(state.get("epoch", 0)),
        "mean_image": pipe.stats.source,
    }
    kept: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    n_val = len(pipe.val_indices(limit))
    for name, ten in views:
        n = wrong1 = wrong5 = 0
        all_probs, all_labels = [], []
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
            if keep:
                all_probs.append(probs.cpu())
                all_labels.append(batch.labels.cpu())
        if n == 0:
            raise ValueError(f"{pipe.cfg.root}: no usable validation image to evaluate on")
        result[name] = {"top1_err": wrong1 / n, "top5_err": wrong5 / n}
        result["images"] = n
        log(
            f"{name:8s}: top-1 error {100 * wrong1 / n:.2f}%  top-5 error {100 * wrong5 / n:.2f}%  "
            f"({n} images)"
        )
        if keep:
            kept[name] = (torch.cat(all_probs), torch.cat(all_labels))
    summary = pipe.bad_input_summary()
    if summary:
        log(summary)
    return result, kept


def _write(out: Path, result: dict[str, Any], log: Callable[[str], None]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}")


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
        nargs="+",
        action="extend",
        metavar="CHECKPOINT",
        help="checkpoint file (.pt), or a run directory for its checkpoints/best.pt, e.g. runs/<name>; "
        "several: evaluate them as an ensemble (softmax averaged, Table 2; needs --out). DATA may follow: "
        "the first path that is neither a .pt file nor a run directory",
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
    p.add_argument(
        "--batch-size", type=whole_number(1), default=None, help="images per batch (default: eval.batch_size)"
    )
    p.add_argument(
        "--limit", type=whole_number(1), default=None, help="evaluate a fixed subset of this many images"
    )
    p.add_argument(
        "--out",
        default=None,
        help="JSON output (default: <run dir>/eval.json; required with several checkpoints)",
    )


def run(args: argparse.Namespace) -> int:
    devices = args.devices if args.devices == "auto" else args.devices.split(",")
    checkpoints, rest = split_checkpoints(args.checkpoint)
    if len(rest) + (args.data is not None) > 1:
        raise ValueError(f"one DATA folder expected after the checkpoints, got {' '.join(rest)}")
    data = rest[0] if rest else args.data
    common = dict(devices=devices, ten_view=args.ten_view, batch_size=args.batch_size, limit=args.limit)
    if len(checkpoints) == 1:
        evaluate(checkpoints[0], data, out=args.out, **common)
        return 0
    if args.out is None:
        raise ValueError(
            f"{len(checkpoints)} checkpoints make an ensemble: give --out FILE for its JSON "
            "(the members' own eval.json files are left as they are)"
        )
    evaluate_ensemble(checkpoints, data, out=args.out, **common)
    return 0
