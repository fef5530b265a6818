"""The one-GPU check: everything this project can verify on a single CUDA GPU, in under 5 minutes.

    python benchmarks/gpu_check.py OUTDIR        (or benchmarks/gpu_check.sh OUTDIR, make gpu-check)

Steps, each in its own process with a time limit (a crash or a hang fails that step, not the check):

1. ``pytest -m cuda``: the CUDA-marked tests.
2. ``equality``: the two-tower network with the towers on (cuda:0, cuda:0) without and with tower b's
   side stream, and on (cuda:0, cpu) — a real device-to-device copy at every crossing — against the
   same weights on the CPU, in true fp32 (``twogpu.precision.configure("fp32")``: TF32 off for cuDNN
   convolutions and matmuls): logits in eval mode and every gradient of one training step (dropout
   off: the CPU and CUDA draw different masks), worst relative difference below 1e-3.
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
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

LAYOUTS = ("towers", "grouped")
"""Both towers on the one GPU (tower b on its side stream), and the grouped twin."""
TRAIN_STEPS = tuple(f"train-{layout}-{p}" for layout in LAYOUTS for p in ("fp32", "bf16"))
BUDGET_S = {
    "pytest-cuda": 30,
    "equality": 25,
    "bf16": 15,
    "compile": 55,
    "bench-fp32": 32,
    "bench-bf16": 25,
    "data": 15,
    **dict.fromkeys(TRAIN_STEPS, 22),
    "loader": 15,
}
"""Time limit of each step (seconds): 300 s together, so the whole check ends within 5 minutes."""
STEPS = tuple(BUDGET_S)
NEEDS_DATA = (*TRAIN_STEPS, "loader")
MOONSHOT_IMG_S = 10_000
"""The goal: training images per second end to end (data included) on one GPU."""
DATA = "_data"
"""OUTDIR's sub-folder for the generated dataset (removed at the end)."""


# ------------------------------------------------------------------------------------ the checks
def _model(devices, num_classes: int = 1000):
    import torch

    from alexnet.models.model import AlexNet

    torch.manual_seed(0)
    m = AlexNet(num_classes=num_classes, devices=devices)
    for tower in m.towers():  # CPU and CUDA draw different dropout masks
        tower.drop6.p = tower.drop7.p = 0.0
    return m


def _load_same_weights(model, reference) -> None:
    target = model.state_dict()
    model.load_state_dict({k: v.to(target[k].device) for k, v in reference.state_dict().items()})


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
    with precisions.autocast(model.devices[0], precision):
        logits = model(x.to(model.devices[0]))
    loss = torch.nn.functional.cross_entropy(logits.float(), y.to(model.devices[0]))
    loss.backward()
    return float(loss.detach()), {n: p.grad.detach().float().cpu() for n, p in model.named_parameters()}


def _worst_relative(a: dict, b: dict) -> tuple[float, str]:
    worst, where = 0.0, ""
    for k in a:
        d = float((a[k] - b[k]).abs().max() / (b[k].abs().max() + 1e-12))
        if d > worst:
            worst, where = d, k
    return worst, where


def check_equality(gpu: str) -> dict:
    """Step 2: forward and gradient of each layout against the CPU, in true fp32."""
    import torch

    from twogpu import precision as precisions

    print(f"precision: {precisions.configure('fp32')}")
    x, y = _batch(gpu)
    ref = _model(("cpu", "cpu"))
    ref.eval()
    with torch.no_grad():
        ref_logits = ref(x)
    ref_loss, ref_grads = _grads(ref, x, y)
    layouts = {
        "same-device": ((gpu, gpu), False),
        "same-device+side-stream": ((gpu, gpu), True),
        "device+cpu": ((gpu, "cpu"), False),
    }
    results, failed = {}, []
    m = None
    for name, (devices, side) in layouts.items():
        if not side:  # the side-stream run reuses the same-device model
            del m
            m = _model(devices)
            _load_same_weights(m, ref)
        streams = m.use_side_stream(side)
        if side and not streams and torch.device(gpu).type == "cuda":
            failed.append(f"{name}: the side stream was not enabled")
        m.eval()
        with torch.no_grad():
            logits = m(x.to(devices[0])).cpu()
        fwd = float((logits - ref_logits).abs().max() / ref_logits.abs().max())
        loss, grads = _grads(m, x, y)
        worst, where = _worst_relative(grads, ref_grads)
        results[name] = {
            "devices": list(devices),
            "side_stream": streams,
            "forward_max_rel": fwd,
            "grad_max_rel": worst,
            "grad_worst_param": where,
            "loss": loss,
            "cpu_loss": ref_loss,
        }
        print(
            f"{name:<24} devices {devices}  side stream {streams}: logits max rel diff {fwd:.2e}, "
            f"gradients max rel diff {worst:.2e} ({where})"
        )
        if not (fwd < 1e-3 and worst < 1e-3):
            failed.append(f"{name}: forward {fwd:.2e} / gradient {worst:.2e} (limit 1e-3)")
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
    log_every: int  # the first window of log_every steps is warm-up
    loader_batches: int


def _sizes(device: str) -> _Sizes:
    if device.startswith("cuda"):
        return _Sizes(
            unique_per_class=64,
            train_per_class=512,
            val_per_class=10,
            batch=128,
            log_every=8,
            loader_batches=30,
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


def _steady(windows: list[dict]) -> dict:
    """Images/s (data included) and the data-wait share over the windows after the first (warm-up)
    one, weighted by their time; the peak memory of each device over all of them."""
    timed = windows[1:] or windows
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
    figures = _steady(windows.rows)
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
        **figures,
        "moonshot_share": figures["images_per_s"] / MOONSHOT_IMG_S,
        "run_seconds": round(wall, 2),
        "failed": failed,
    }


def check_loader(device: str, out: Path) -> dict:
    """Step 8: the training loader with every core on the 256×256 images, batches fed to ``device``."""
    import torch

    from alexnet.config import DataConfig
    from alexnet.data.pipeline import ImagePipeline

    size, root = _sizes(device), out / DATA
    if not (root / "train").is_dir():
        return {"failed": [f"no generated data in {root} (the data step makes it)"]}
    workers = os.cpu_count() or 1
    dev = torch.device(device)
    pipeline = ImagePipeline(
        DataConfig(root=str(root), workers=workers), batch_size=size.batch, seed=0, device=dev
    )
    gen = torch.Generator(device=dev).manual_seed(0)
    images, start, epoch, n = 0, 0.0, 0, 0
    while n < size.loader_batches:
        for batch in pipeline.train_batches(epoch):
            x = pipeline.to_model_input(batch, dev, train=True, generator=gen)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            n += 1
            if n == 1:  # the first batch waits for the workers to start
                start = time.perf_counter()
            else:
                images += x.shape[0]
            if n == size.loader_batches:
                break
        epoch += 1
    rate = images / (time.perf_counter() - start)
    pipeline.close()
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
        "timed_batches": size.loader_batches - 1,
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
