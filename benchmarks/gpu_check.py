"""The one-GPU check: everything this project can verify on a single CUDA GPU, in under 5 minutes.

    python benchmarks/gpu_check.py OUTDIR        (or benchmarks/gpu_check.sh OUTDIR, make gpu-check)

Steps, each in its own process with a time limit (a crash or a hang fails that step, not the check):

1. ``pytest -m cuda``: the CUDA-marked tests.
2. ``equality``: the two-tower network with the towers on (cuda:0, cuda:0) without and with tower b's
   side stream, and on (cuda:0, cpu) — a real device-to-device copy at every crossing — against the
   same weights on the CPU in float64: logits in eval mode and every gradient of one training step
   (dropout off: the CPU and CUDA draw different masks). In float64 on the device, worst relative
   difference below 1e-9; in true fp32 (``twogpu.precision.configure("fp32")``: TF32 off for cuDNN
   convolutions and matmuls), logits below 1e-3 and gradients below 5e-2 (ReLU's kink: see
   ``FP32_GRAD_LIMIT``).
3. ``bf16``: one training step under bf16 autocast, its loss beside the fp32 loss of the same weights
   and batch (within 5 %), every gradient finite.
4. ``compile``: two ``torch.compile``d training steps, their losses beside eager ones (within 1e-3).
5. ``bench-fp32`` / ``bench-bf16``: ``benchmarks/bench.py --quick`` on cuda:0: training and inference
   img/s and peak memory of both layouts (two towers with the side stream, and the grouped twin)
   beside torchvision's AlexNet in the same run, and the share of the GPU's measured ceiling.
6. ``data``: a generated dataset prepared as for GPU training (``alexnet prepare --resize 256``):
   ``alexnet demo-data`` images (64 per class, shorter side 256-320) resized to 256×256, linked
   to 512 training images per class; 10 validation images per class.
7. ``train-towers-fp32`` / ``-bf16``, ``train-grouped-fp32`` / ``-bf16``: a whole short run of
   ``alexnet train`` (the trainer, the loader with every core, validation, checkpoints) on those
   images with both towers on cuda:0 (tower b on its side stream) or the grouped twin: one epoch,
   40 steps of 128. Reports images/s including data (the steps after the first 8, which warm up),
   the share of step time spent waiting for data, peak memory, and the whole run's seconds.
8. ``loader``: the training loader alone with every core on the 256×256 images, fed to cuda:0
   (uint8 batches to normalised float input), in images/s, per worker, and the workers needed
   for the moonshot.

The moonshot is 10,000 training images/s end to end on one GPU; ``summary.txt`` puts the train
and loader figures beside it.

Writes ``OUTDIR/gpu_check.json`` (every step: status, seconds, figures) and ``OUTDIR/summary.txt``,
each step's output to ``OUTDIR/<step>.txt``; exits 0 only when every step passed, 1 when one
failed, 2 when there is no CUDA device (the JSON and summary say so too). The generated data and
the runs' folders are removed at the end.

``--device cpu`` runs steps 2-4 and 6-8 with the CPU standing in for cuda:0 (the plumbing, not the
GPU, at small sizes: the test suite uses it); ``--only`` runs a subset (with ``data`` added when a
train or loader step needs it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]

LAYOUTS = ("towers", "grouped")
"""Both towers on the one GPU (tower b on its side stream), and the grouped twin."""
TRAIN_STEPS = tuple(f"train-{layout}-{p}" for layout in LAYOUTS for p in ("fp32", "bf16"))
BUDGET_S = {
    "pytest-cuda": 24,
    "equality": 30,
    "bf16": 12,
    "compile": 55,
    "bench-fp32": 25,
    "bench-bf16": 25,
    "data": 13,
    **dict.fromkeys(TRAIN_STEPS, 25),
    "loader": 13,
}
"""Time limit of each step (seconds): 300 s together, so the whole check ends within 5 minutes."""
STEPS = tuple(BUDGET_S)
NEEDS_DATA = (*TRAIN_STEPS, "loader")
MOONSHOT_IMG_S = 10_000
"""The goal: training images per second end to end (data included) on one GPU."""
DATA = "_data"
"""OUTDIR's sub-folder for the generated dataset (removed at the end)."""


# ------------------------------------------------------------------------------------ the checks
def _model(devices, num_classes: int = 1000, dtype=None):
    import torch

    from alexnet.models.model import AlexNet

    torch.manual_seed(0)
    m = AlexNet(num_classes=num_classes, devices=devices)
    for tower in m.towers():  # CPU and CUDA draw different dropout masks
        tower.drop6.p = tower.drop7.p = 0.0
    return m if dtype is None else m.to(dtype)


def _load_same_weights(model, reference) -> None:
    target = model.state_dict()
    model.load_state_dict(
        {k: v.to(target[k].device, target[k].dtype) for k, v in reference.state_dict().items()}
    )


def _batch(device: str):
    import torch

    from alexnet.config import ModelConfig

    n = 8 if torch.device(device).type == "cuda" else 2  # the CPU rehearsal stays short
    side = ModelConfig().input_size  # the paper preset's input
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, side, side, generator=g) * 50, torch.randint(0, 1000, (n,), generator=g)


def _grads(model, x, y, precision: str = "fp32"):
    import torch

    from twogpu import precision as precisions

    model.train()
    model.zero_grad(set_to_none=True)
    dtype = next(model.parameters()).dtype
    with precisions.autocast(model.devices[0], precision):
        logits = model(x.to(model.devices[0], dtype))
    loss = torch.nn.functional.cross_entropy(logits.to(dtype), y.to(model.devices[0]))
    loss.backward()
    return float(loss.detach()), {n: p.grad.detach().double().cpu() for n, p in model.named_parameters()}


def _logits(model, x):
    import torch

    model.eval()
    with torch.no_grad():
        return model(x.to(model.devices[0], next(model.parameters()).dtype)).double().cpu()


def _relative(a, b) -> float:
    """Largest difference relative to the reference's largest magnitude."""
    return float((a - b).abs().max() / (b.abs().max() + 1e-300))


def _worst_relative(a: dict, b: dict) -> tuple[float, str]:
    worst, where = 0.0, ""
    for k in a:
        d = _relative(a[k], b[k])
        if d > worst:
            worst, where = d, k
    return worst, where


FP64_LIMIT = 1e-9
"""float64 on the device against float64 on the CPU: the same function, rounded at 1e-16."""
FP32_LOGITS_LIMIT = 1e-3
FP32_GRAD_LIMIT = 5e-2
"""fp32 gradients against float64. Not tighter, because of ReLU's kink: among the ~750,000 conv2
pre-activations of the batch of 8 one lies 3e-7 from zero, fp32 puts it on the other side, and its
whole term comes or goes from conv2's and conv1's weight gradients. Measured on the CPU: 5.6e-3 at
conv1's weight, 8.8e-3 at conv2's (2.2e-2 with the first 3 images); the first GPU run (2026-12-04,
H200) differed from the CPU's fp32 by 1.5e-2 at conv1's weight. A misrouted gradient or a lost
crossing is off by its whole size, and the float64 check is the exact one."""


def check_equality(gpu: str) -> dict:
    """Step 2: logits and gradients of each layout against the CPU's float64, in float64 and in fp32.

    float64 is the exact check: on the device and on the CPU the network must compute the same
    function (within ``FP64_LIMIT``), so any slip of placement, crossings or streams shows. In true
    fp32 (TF32 off) the logits must be within 1e-3 of float64's and the gradients within
    ``FP32_GRAD_LIMIT``; the CPU's own fp32 error is reported beside them."""
    import torch

    from twogpu import precision as precisions

    print(f"precision: {precisions.configure('fp32')}")
    x, y = _batch(gpu)
    ref = _model(("cpu", "cpu"))
    ref64 = _model(("cpu", "cpu"), dtype=torch.float64)
    _load_same_weights(ref64, ref)
    ref_logits, ref_logits32 = _logits(ref64, x), _logits(ref, x)
    ref_loss, ref_grads = _grads(ref64, x, y)
    cpu32_fwd = _relative(ref_logits32, ref_logits)
    cpu32_grad, cpu32_where = _worst_relative(_grads(ref, x, y)[1], ref_grads)
    print(
        f"the CPU's own fp32 against its float64: logits {cpu32_fwd:.2e}, gradients {cpu32_grad:.2e} "
        f"({cpu32_where})"
    )
    layouts = {
        "same-device": ((gpu, gpu), False),
        "same-device+side-stream": ((gpu, gpu), True),
        "device+cpu": ((gpu, "cpu"), False),
    }
    results, failed = {"cpu-fp32": {"forward_max_rel": cpu32_fwd, "grad_max_rel": cpu32_grad}}, []
    for name, (devices, side) in layouts.items():
        for dtype, label in ((torch.float64, "float64"), (torch.float32, "fp32")):
            m = _model(devices, dtype=dtype)
            _load_same_weights(m, ref)
            streams = m.use_side_stream(side)
            if side and not streams and torch.device(gpu).type == "cuda":
                failed.append(f"{name}: the side stream was not enabled")
            fwd = _relative(_logits(m, x), ref_logits)
            loss, grads = _grads(m, x, y)
            worst, where = _worst_relative(grads, ref_grads)
            del m
            fwd_limit, g_limit = (
                (FP64_LIMIT, FP64_LIMIT) if label == "float64" else (FP32_LOGITS_LIMIT, FP32_GRAD_LIMIT)
            )
            results[f"{name}/{label}"] = {
                "devices": list(devices),
                "side_stream": streams,
                "forward_max_rel": fwd,
                "grad_max_rel": worst,
                "grad_worst_param": where,
                "limits": [fwd_limit, g_limit],
                "loss": loss,
                "cpu_float64_loss": ref_loss,
            }
            print(
                f"{name:<24} {label:<8} devices {devices}  side stream {streams}: against the CPU's float64, "
                f"logits {fwd:.2e}, gradients {worst:.2e} ({where})"
            )
            if not (fwd < fwd_limit and worst < g_limit):
                failed.append(
                    f"{name} {label}: forward {fwd:.2e} / gradient {worst:.2e} (limits {fwd_limit:.0e} / "
                    f"{g_limit:.1e})"
                )
    return {"layouts": results, "failed": failed}


def check_bf16(gpu: str) -> dict:
    """Step 3: a bf16 autocast step against fp32 on the same weights and batch."""
    import torch

    from twogpu import precision as precisions

    precisions.configure("bf16")
    x, y = _batch(gpu)
    m = _model((gpu, gpu))
    fp32_loss, _ = _grads(m, x, y, "fp32")
    bf16_loss, grads = _grads(m, x, y, "bf16")
    finite = all(bool(torch.isfinite(g).all()) for g in grads.values())
    rel = abs(bf16_loss - fp32_loss) / abs(fp32_loss)
    print(f"bf16 loss {bf16_loss:.5f} vs fp32 {fp32_loss:.5f} (rel {rel:.2e}); gradients finite: {finite}")
    failed = [] if finite and rel < 0.05 else [f"bf16 loss rel diff {rel:.2e} or non-finite gradients"]
    if torch.device(gpu).type != "cuda":
        print("(the CPU computes bf16 runs in fp32: this only checks the plumbing)")
    return {"fp32_loss": fp32_loss, "bf16_loss": bf16_loss, "rel": rel, "finite": finite, "failed": failed}


def check_compile(gpu: str) -> dict:
    """Step 4: torch.compile'd training steps against eager ones."""
    import torch

    from alexnet.models.speed import prepare_for_speed
    from twogpu import precision as precisions

    precisions.configure("fp32")
    x, y = _batch(gpu)
    eager, compiled = _model((gpu, gpu)), _model((gpu, gpu))
    _load_same_weights(compiled, eager)
    prepare_for_speed(compiled, compile=True)
    t0 = time.perf_counter()
    losses = []
    for m in (eager, compiled):
        opt = torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9)
        run = []
        for _ in range(2):
            loss, _ = _grads(m, x, y)
            opt.step()
            run.append(loss)
        losses.append(run)
    rel = max(abs(a - b) / abs(a) for a, b in zip(*losses))
    print(
        f"eager losses {losses[0]}, compiled {losses[1]} (max rel {rel:.2e}); "
        f"{time.perf_counter() - t0:.0f} s "
        f"including compilation"
    )
    return {
        "eager": losses[0],
        "compiled": losses[1],
        "rel": rel,
        "failed": [] if rel < 1e-3 else [f"compiled loss rel diff {rel:.2e}"],
    }


@dataclass(frozen=True)
class _Sizes:
    """How much the data, train and loader steps do: on a GPU, enough to time; on the CPU, a rehearsal."""

    unique_per_class: int  # generated training images per class
    train_per_class: int  # after linking copies of them
    val_per_class: int
    batch: int
    log_every: int
    loader_batches: int  # timed (0: bench_loader's default, six per worker)


def _sizes(device: str) -> _Sizes:
    if device.startswith("cuda"):
        return _Sizes(
            unique_per_class=64,
            train_per_class=2560,  # 200 steps of 128: 168 timed after the warm-up
            val_per_class=10,
            batch=128,
            log_every=8,
            loader_batches=0,
        )
    return _Sizes(
        unique_per_class=1, train_per_class=1, val_per_class=1, batch=2, log_every=2, loader_batches=4
    )


def check_data(device: str, out: Path) -> dict:
    """Step 6: demo images, ``alexnet prepare --resize 256``, copies linked to the training size."""
    from alexnet.commands.demo_data import make_demo_data
    from alexnet.commands.prepare import resize_tree
    from alexnet.data.stats import STATS_FILE

    size = _sizes(device)
    root, raw = out / DATA, out / "_raw"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(raw, ignore_errors=True)
    t0 = time.perf_counter()
    made = make_demo_data(
        raw, train_per_class=size.unique_per_class, val_per_class=size.val_per_class, short_side=(256, 320)
    )
    resize_tree(raw, root, size=256, show_progress=False)
    shutil.copy2(raw / STATS_FILE, root / STATS_FILE)
    shutil.rmtree(raw)
    for folder in sorted((root / "train").iterdir()):
        originals = sorted(folder.iterdir())
        for i in range(len(originals), size.train_per_class):
            original = originals[i % len(originals)]
            os.link(original, folder / f"{original.stem}_copy{i}{original.suffix}")
    train = sum(1 for _ in (root / "train").rglob("*.*"))
    print(
        f"{train} training images ({made['train']} generated), {made['val']} validation, 256x256, in {root}"
    )
    return {
        "root": str(root),
        "train_images": train,
        "unique_train_images": made["train"],
        "val_images": made["val"],
        "seconds": round(time.perf_counter() - t0, 2),
        "failed": [],
    }


PREFETCH = 2
"""Batches each loader worker makes ahead (the DataLoader's default prefetch_factor)."""


def warm_up_steps(log_every: int, workers: int) -> int:
    """Steps left out of the train steps' figures: at least the first progress window (cuDNN's
    algorithm search, the first allocations), and at least the batches the workers can have queued
    by then (``workers × PREFETCH``), which the steps after it take without waiting; on the first
    GPU run (40 steps, 16 workers) the timed steps were all such batches, and the data wait read 1 %."""
    return max(log_every, workers * PREFETCH)


def _steady(windows: list[dict], warm_up: int = 0) -> dict:
    """Images/s (data included) and the data-wait share over the progress windows after the first
    ``warm_up`` steps (at least the first window), weighted by their time; the peak memory of each
    device over all of them."""
    done, first = 0, len(windows) - 1
    for i, w in enumerate(windows):
        done += w["window_steps"]
        if done >= max(warm_up, 1):
            first = i + 1
            break
    timed = windows[first:] or windows[-1:]
    seconds = sum(w["step_time_s"] * w["window_steps"] for w in timed)
    images = sum(w["images_per_s"] * w["step_time_s"] * w["window_steps"] for w in timed)
    memory = {
        k.split("/", 1)[1]: max(w[k] for w in windows) for k in windows[0] if k.startswith("memory_mib/")
    }
    return {
        "images_per_s": images / seconds if seconds > 0 else 0.0,
        "data_wait_share": sum(w["data_wait_share"] * w["step_time_s"] * w["window_steps"] for w in timed)
        / max(seconds, 1e-12),
        "timed_steps": sum(w["window_steps"] for w in timed),
        "step_time_s": seconds / max(sum(w["window_steps"] for w in timed), 1),
        "peak_memory_mib": memory,
    }


def check_train(device: str, out: Path, *, layout: str, precision: str) -> dict:
    """Step 7: a short whole run of the trainer on the generated data (one epoch)."""
    from alexnet.config import load_config, toml_string
    from alexnet.training.train import train
    from twogpu.task import Hook

    size, root = _sizes(device), out / DATA
    if not (root / "train").is_dir():
        return {"failed": [f"no generated data in {root} (the data step makes it)"]}
    runs = out / f"_runs-{layout}-{precision}"
    shutil.rmtree(runs, ignore_errors=True)
    cfg = load_config(
        None,
        [
            f"data.root={toml_string(str(root))}",
            f"train.runs_dir={toml_string(str(runs))}",
            f"train.devices={json.dumps([device, device])}",
            f"train.grouped_when_single_device={str(layout == 'grouped').lower()}",
            f"train.precision={toml_string(precision)}",
            f"train.batch_size={size.batch}",
            f"train.log_every={size.log_every}",
            f"eval.batch_size={10 * size.val_per_class}",
            "train.epochs=1",
            "train.checkpoint_minutes=0.0",
            "train.stall_warn_steps=0",
        ],
    )

    class Windows(Hook):
        def __init__(self) -> None:
            self.rows: list[dict] = []
            self.side_stream = False

        def on_start(self, trainer) -> None:
            self.side_stream = getattr(trainer.task.model, "side_stream", None) is not None

        def on_log(self, trainer, stats) -> None:
            self.rows.append(dict(stats))

    windows = Windows()
    t0 = time.perf_counter()
    result = train(cfg, dashboards=False, hooks=[windows])
    wall = time.perf_counter() - t0
    shutil.rmtree(runs, ignore_errors=True)  # ~0.5 GB of checkpoints
    failed = [] if result.status == "finished" else [f"the run ended '{result.status}': {result.message}"]
    if not windows.rows:
        return {"failed": failed or ["no progress line was logged"]}
    if layout == "towers" and device.startswith("cuda") and not windows.side_stream:
        failed.append("tower b's side stream was not in use")
    warm_up = warm_up_steps(size.log_every, os.cpu_count() or 1)
    figures = _steady(windows.rows, warm_up)
    print(
        f"{layout} {precision}: {figures['images_per_s']:.1f} img/s with data, data wait "
        f"{100 * figures['data_wait_share']:.0f}%, peak memory {figures['peak_memory_mib']} MiB; "
        f"whole run {wall:.1f} s"
    )
    return {
        "layout": layout,
        "precision": precision,
        "side_stream": windows.side_stream,
        "batch_size": size.batch,
        "steps": result.step,
        "warm_up_steps": warm_up,
        **figures,
        "moonshot_share": figures["images_per_s"] / MOONSHOT_IMG_S,
        "run_seconds": round(wall, 2),
        "failed": failed,
    }


def check_loader(device: str, out: Path) -> dict:
    """Step 8: the training loader with every core on the 256×256 images, batches fed to ``device``
    (benchmarks/bench_loader.py's measurement: timed after one warm-up batch per worker)."""
    import torch
    from bench_loader import time_our_loader, timed_batches, warm_up_batches

    size, root = _sizes(device), out / DATA
    if not (root / "train").is_dir():
        return {"failed": [f"no generated data in {root} (the data step makes it)"]}
    workers = os.cpu_count() or 1
    dev = torch.device(device)
    batches = timed_batches(workers, size.loader_batches)
    rate, _ = time_our_loader(root, workers, size.batch, batches, dev)
    per_worker = rate / workers
    needed = math.ceil(MOONSHOT_IMG_S / per_worker) if per_worker > 0 else None
    print(
        f"loader, {workers} workers, 256x256 images to {dev}: {rate:.0f} img/s ({per_worker:.0f} per worker; "
        f"{needed} workers for {MOONSHOT_IMG_S} img/s)"
    )
    return {
        "workers": workers,
        "images_per_s": rate,
        "per_worker_images_per_s": per_worker,
        "workers_for_moonshot": needed,
        "moonshot_share": rate / MOONSHOT_IMG_S,
        "batch_size": size.batch,
        "warm_up_batches": warm_up_batches(workers),
        "timed_batches": batches,
        "failed": [],
    }


CHECKS: dict[str, Callable[[str, Path], dict]] = {
    "equality": lambda device, out: check_equality(device),
    "bf16": lambda device, out: check_bf16(device),
    "compile": lambda device, out: check_compile(device),
    "data": check_data,
    **{
        f"train-{layout}-{p}": partial(check_train, layout=layout, precision=p)
        for layout in LAYOUTS
        for p in ("fp32", "bf16")
    },
    "loader": check_loader,
}


# ------------------------------------------------------------------------------------ the runner
def _run_step(name: str, cmd: Sequence[str], out: Path, limit: float) -> dict:
    t0 = time.monotonic()
    log = out / f"{name}.txt"
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=limit, cwd=ROOT).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    row = {
        "status": "passed" if rc == 0 else "failed",
        "exit": rc,
        "seconds": round(time.monotonic() - t0, 1),
        "log": str(log),
    }
    result = out / f"{name}.json"
    if result.exists():
        row["result"] = json.loads(result.read_text())
    return row


def _bench_figures(out: Path, name: str) -> dict:
    path = out / name / "bench.json"
    if not path.exists():
        return {}
    r = json.loads(path.read_text())
    return {
        "train_img_s": r["train_img_s"],
        "train_ratio_to_torchvision": r["train_ratio_to_torchvision"],
        "infer_img_s": r["infer_img_s"],
        "peak_memory_bytes": r["peak_memory_bytes"],
        "train_share_of_peak": r["train_share_of_peak"],
        "matmul_ceiling": r["matmul_ceiling"],
    }


def _moonshot_line(res: dict) -> str:
    """A train or loader step's figures beside the moonshot."""
    beside = f"{res['images_per_s']:8.1f} img/s = {res['moonshot_share']:.2f}x the moonshot"
    if "workers" in res:
        return (
            f"    loader, {res['workers']} workers: {beside}; {res['per_worker_images_per_s']:.0f} img/s per "
            f"worker, {res['workers_for_moonshot']} workers for {MOONSHOT_IMG_S:,} img/s"
        )
    mem = "/".join(f"{v:.0f}" for v in res["peak_memory_mib"].values())
    return (
        f"    with data: {beside}; waiting for data {100 * res['data_wait_share']:.0f}% of step time; "
        f"peak memory {mem} MiB; whole run {res['run_seconds']:.1f} s"
    )


def summary_lines(report: dict) -> list[str]:
    lines = [f"gpu_check {report['date']}  {report['device_name']}  torch {report['torch']}"]
    if report.get("error"):
        return lines + [f"error: {report['error']}"]
    lines.append(f"moonshot: {MOONSHOT_IMG_S:,} training images/s end to end (data included) on one GPU")
    for name, row in report["steps"].items():
        extra = ""
        res = row.get("result", {})
        if res.get("failed"):
            extra = "  " + "; ".join(res["failed"])
        lines.append(f"{name:<18} {row['status']:<7} exit {row['exit']!s:<8} {row['seconds']:>6.1f} s{extra}")
        if "moonshot_share" in res:
            lines.append(_moonshot_line(res))
        for model, v in row.get("bench", {}).get("train_img_s", {}).items():
            mem = "/".join(f"{b / 2**20:.0f}" for b in row["bench"]["peak_memory_bytes"][model].values())
            lines.append(
                f"    {model:<12} train {v:8.1f} img/s  x tv "
                f"{row['bench']['train_ratio_to_torchvision'][model]:.2f}"
                f"  {100 * row['bench']['train_share_of_peak'][model]:5.1f}% of ceiling  peak mem {mem} MiB"
            )
    lines.append(f"overall: {'passed' if report['passed'] else 'FAILED'}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="output folder")
    ap.add_argument("--device", default="cuda:0", help="the GPU (cpu: rehearse steps 2-4 without one)")
    ap.add_argument("--only", nargs="+", choices=STEPS, default=None, help="run these steps only")
    ap.add_argument(
        "--check", choices=tuple(CHECKS), default=None, help=argparse.SUPPRESS
    )  # in the step's process
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.check:
        result = CHECKS[a.check](a.device, a.out)
        (a.out / f"{a.check}.json").write_text(json.dumps(result, indent=2))
        return 1 if result["failed"] else 0

    import torch

    report: dict = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "device": a.device,
        "steps": {},
        "passed": False,
    }
    on_gpu = torch.device(a.device).type == "cuda"
    if on_gpu and not torch.cuda.is_available():
        report.update(
            device_name="no GPU",
            error=f"no CUDA device is visible (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda}): nothing was checked",
        )
    else:
        report["device_name"] = (
            torch.cuda.get_device_name(a.device) if on_gpu else "CPU rehearsal (no GPU checked)"
        )
    if "error" not in report:
        steps = a.only or (STEPS if on_gpu else tuple(CHECKS))
        if "data" not in steps and any(name in NEEDS_DATA for name in steps):
            steps = ("data", *steps)
        py = sys.executable
        for name in steps:
            if name == "pytest-cuda":
                cmd = [py, "-m", "pytest", "tests", "-m", "cuda", "-q", "-p", "no:cacheprovider"]
            elif name.startswith("bench-"):
                prec = name.split("-", 1)[1]
                cmd = [
                    py,
                    "benchmarks/bench.py",
                    "--devices",
                    a.device,
                    a.device,
                    "--quick",
                    "--no-loader",
                    "--precision",
                    prec,
                    "--out",
                    str(a.out / name),
                ]
            else:
                cmd = [py, __file__, str(a.out), "--device", a.device, "--check", name]
            row = _run_step(name, cmd, a.out, BUDGET_S[name] * (1 if on_gpu else 20))  # the CPU is slower
            if name.startswith("bench-"):
                row["bench"] = _bench_figures(a.out, name)
            report["steps"][name] = row
            print(f"{name}: {row['status']} ({row['seconds']} s)", flush=True)
        report["passed"] = all(r["status"] == "passed" for r in report["steps"].values())
        shutil.rmtree(a.out / DATA, ignore_errors=True)
    (a.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    text = "\n".join(summary_lines(report))
    (a.out / "summary.txt").write_text(text + "\n")
    if "error" in report:  # said once, on stderr
        print(f"gpu_check: {report['error']}", file=sys.stderr)
        return 2
    print(text)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
