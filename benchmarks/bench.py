"""Side-by-side speed of the faithful network and torchvision's AlexNet, measured in one run.

    python benchmarks/bench.py [--quick] [--devices cuda:0 cuda:0] [--batch 128] [--no-channels-last]
                               [--precision fp32|tf32|bf16] [--compile] [--out bench-results]

Measures, each as the median of interleaved repetitions after warm-up (the machine may be shared,
so every figure is also given as a ratio to a baseline measured in the same run):

* training-step images/s (forward + backward + SGD-with-momentum update) of the two-tower model,
  the grouped twin (both towers on one device only) and ``torchvision.models.alexnet`` (one column
  64/192/384/256/256, no LRN, its native 224×224 input), and each as a ratio to torchvision's;
* inference images/s of the same three;
* the LRN layer alone (forward + backward, on conv1's output as in the network) against
  ``nn.LocalResponseNorm`` on the same input and against conv1 (forward + weight gradient);
* achieved FLOP/s (conv + fc FLOPs counted analytically, benchmarks/flops.py) as a share of the
  device's ceiling: the best rate of square GEMMs (``out=`` buffers, so no page faults) over
  several sizes and of a dense 3×3 convolution (the convolution library can outrun the GEMM), over
  repeats, with all of the machine's threads, in fp32 and — where the device has
  it — bf16 (and tf32 on a GPU); the step is compared with the ceiling of its own precision;
* peak memory per device (CUDA: ``max_memory_allocated`` in one step; CPU: peak RSS growth of a
  fresh process that builds the model and runs two steps);
* loader images/s, from benchmarks/bench_loader.py when present.

Prints a table and writes JSON to ``--out`` (bench-results/ by default).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median, quantiles

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]

from flops import forward_flops, layer_macs, training_flops  # noqa: E402

from alexnet.models import native  # noqa: E402
from alexnet.models.grouped import GroupedAlexNet  # noqa: E402
from alexnet.models.layers import LocalResponseNorm, local_response_norm  # noqa: E402
from alexnet.models.model import AlexNet  # noqa: E402
from alexnet.models.speed import prepare_for_speed, to_input, tune_cpu_allocator  # noqa: E402
from twogpu import precision as precisions  # noqa: E402
from twogpu.placement import resolve_devices  # noqa: E402


# ------------------------------------------------------------------------------------------ timing
def _sync(devices: Sequence[torch.device]) -> None:
    for d in {d for d in devices if d.type == "cuda"}:
        torch.cuda.synchronize(d)


def interleaved(
    fns: dict[str, Callable[[], None]], *, reps: int, warmup: int, iters: int, devices: Sequence[torch.device]
) -> dict[str, list[float]]:
    """Seconds per call of each function: ``warmup`` untimed rounds, then ``reps`` rounds in which
    every function runs ``iters`` times in turn (so load changes hit all of them alike)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(devices)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            _sync(devices)
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            _sync(devices)
            times[name].append((time.perf_counter() - t0) / iters)
    return times


def ratios(times: dict[str, list[float]], baseline: str = "torchvision") -> dict[str, float]:
    """Speed of each entry relative to ``baseline``: the median over rounds of the ratio within a
    round (robust when the machine's load changes between rounds)."""
    return {k: median(b / a for a, b in zip(v, times[baseline])) for k, v in times.items()}


def ratio_spread(times: dict[str, list[float]], baseline: str = "torchvision") -> dict[str, list[float]]:
    """The interquartile range ``[q1, q3]`` of each entry's within-round ratios to ``baseline``
    (the rounds' own scatter: a target inside it is not met or missed beyond the noise)."""
    out = {}
    for k, v in times.items():
        r = sorted(b / a for a, b in zip(v, times[baseline]))
        q = quantiles(r, n=4, method="inclusive") if len(r) > 1 else [r[0]] * 3
        out[k] = [q[0], q[2]]
    return out


# ------------------------------------------------------------------------------------------ models
def build_models(
    devices: tuple[torch.device, torch.device], *, channels_last: bool, compile: bool, only: str | None = None
) -> dict[str, tuple[nn.Module, tuple[int, int, int], torch.device]]:
    """name → (model, input shape, input device). The grouped twin only when the towers share a device."""
    import torchvision

    ours = lambda m: (m, m.input_shape, devices[0])  # noqa: E731  (3, 224, 224): model.input_size
    builders = {"two-tower": lambda: ours(AlexNet(devices=devices))}
    if devices[0] == devices[1]:
        builders["grouped"] = lambda: ours(GroupedAlexNet(device=devices[0]))
    builders["torchvision"] = lambda: (torchvision.models.alexnet().to(devices[0]), (3, 224, 224), devices[0])
    models = {k: b() for k, b in builders.items() if only in (None, k)}
    for model, _, _ in models.values():
        prepare_for_speed(model, channels_last=channels_last, compile=compile)
    return models


def make_train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    dev = x.device

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with precisions.autocast(dev, precision, on_cpu=True):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def make_infer(model: nn.Module, x: torch.Tensor, precision: str) -> Callable[[], None]:
    def infer() -> None:
        with torch.inference_mode(), precisions.autocast(x.device, precision, on_cpu=True):
            model(x)

    return infer


# ------------------------------------------------------------------------------------------ memory
class RssPeak:
    """Peak resident set size of this process while the block runs, sampled every millisecond."""

    def __init__(self) -> None:
        self.peak = self.start = self._rss()
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __enter__(self) -> RssPeak:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def peak_memory(step: Callable[[], None], devices: Sequence[torch.device]) -> dict[str, int]:
    """Bytes allocated at the peak of one training step, per CUDA device (``max_memory_allocated``)."""
    cuda = sorted({str(d) for d in devices if d.type == "cuda"})
    for d in cuda:
        torch.cuda.reset_peak_memory_stats(d)
    step()
    _sync(devices)
    return {d: torch.cuda.max_memory_allocated(d) for d in cuda}


def cpu_peak_rss(
    name: str,
    devices: tuple[torch.device, torch.device],
    batch: int,
    *,
    channels_last: bool,
    tune_malloc: bool,
) -> int:
    """Peak RSS growth of a fresh process that builds model ``name`` and runs two training steps
    (a fresh process, because freed memory stays mapped and would hide the next model's peak)."""
    cmd = [
        sys.executable,
        __file__,
        "--memory-probe",
        name,
        "--batch",
        str(batch),
        "--devices",
        *map(str, devices),
        "--channels-last" if channels_last else "--no-channels-last",
        "--tune-malloc" if tune_malloc else "--no-tune-malloc",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return -1
    return int(proc.stdout.strip().splitlines()[-1])


def memory_probe(
    name: str, devices: tuple[torch.device, torch.device], batch: int, channels_last: bool
) -> int:
    """Run in the probe process: RSS growth (bytes) from before the model exists to the peak."""
    with RssPeak() as rss:  # sampled: ru_maxrss would be inherited from the parent across exec
        model, shape, dev = build_models(devices, channels_last=channels_last, compile=False, only=name)[name]
        x = to_input(torch.randn(batch, *shape), dev, channels_last=channels_last)
        y = torch.randint(0, 1000, (batch,), device=dev)
        step = make_train_step(model, x, y, "fp32")
        step()
        step()
    return rss.peak - rss.start


# ------------------------------------------------------------------------------------------ sections
def has_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls natively (CUDA: Ampere+; CPU: oneDNN's AVX-512 BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def ceiling_kinds(device: torch.device) -> list[str]:
    """The arithmetic kinds whose matmul ceiling is measured on ``device``."""
    kinds = ["fp32"] + (["tf32"] if device.type == "cuda" else [])
    return kinds + (["bf16"] if has_bf16(device) else [])


def matmul_ceiling(
    device: torch.device, *, sizes: Sequence[int], repeats: int, kinds: Sequence[str] | None = None
) -> dict[str, dict]:
    """The device's practical ceiling per arithmetic kind: the best FLOP/s of an n×n by n×n GEMM
    over ``sizes``, or of a dense 3×3 convolution (:func:`_conv_rate`), whichever is faster, over
    ``repeats`` (best, not median: the ceiling is what the device can do;
    load from other processes only lowers a repeat). Written into preallocated outputs (``out=``),
    so no page faults or allocator time are counted; on the CPU with every core the process may use
    (``torch.set_num_threads`` restored after); on a GPU 5 GEMMs per timed repeat. ``tf32`` is the
    fp32 GEMM with TF32 allowed (GPUs); the precision flags are restored after."""
    threads = torch.get_num_threads()
    flags = precisions.tf32_enabled()
    if device.type == "cpu":
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    iters = 5 if device.type == "cuda" else 1
    result: dict[str, dict] = {}
    try:
        for kind in kinds or ceiling_kinds(device):
            dtype = torch.bfloat16 if kind == "bf16" else torch.float32
            precisions.configure("tf32" if kind == "tf32" else "fp32")
            by_size = {}
            for n in sizes:
                a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
                c = torch.empty(n, n, device=device, dtype=dtype)
                t = interleaved(
                    {"mm": lambda a=a, b=b, c=c: torch.mm(a, b, out=c)},
                    reps=repeats,
                    warmup=1,
                    iters=iters,
                    devices=[device],
                )["mm"]
                by_size[n] = 2 * n**3 / min(t)
                del a, b, c
            conv = _conv_rate(device, dtype, repeats=repeats, iters=iters)
            result[kind] = {
                "flop_s": max(*by_size.values(), conv),
                "by_size": by_size,
                "conv3x3": conv,
            }
    finally:
        torch.set_num_threads(threads)
        precisions.configure("tf32" if flags["cudnn_conv"] else "fp32")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def _conv_rate(device: torch.device, dtype: torch.dtype, *, repeats: int, iters: int) -> float:
    """FLOP/s of a dense 3×3 convolution, 256 → 384 channels on 13×13 maps, batch 64 (conv3's shape,
    ungrouped), channels_last: the convolution library (oneDNN, cuDNN) can beat the BLAS GEMM on the
    same device — on an AMD EPYC VM oneDNN ran 3×3 convolutions at ~1.3× MKL's best sgemm — so a
    ceiling of GEMMs alone would put the network's own convolutions above 100 %."""
    n, c, k, hw = 64, 256, 384, 13
    x = torch.randn(n, c, hw, hw, device=device).to(dtype, memory_format=torch.channels_last)
    w = torch.randn(k, c, 3, 3, device=device).to(dtype, memory_format=torch.channels_last)
    t = interleaved(
        {"conv": lambda: F.conv2d(x, w, padding=1)},
        reps=repeats,
        warmup=1,
        iters=iters,
        devices=[device],
    )["conv"]
    return 2 * n * k * hw * hw * c * 9 / min(t)


def ceiling_for(precision: str, device: torch.device, ceilings: dict[str, dict]) -> str:
    """Which measured ceiling a step run at ``precision`` on ``device`` is compared with."""
    want = {"fp32": "fp32", "tf32": "tf32" if device.type == "cuda" else "fp32", "bf16": "bf16"}[precision]
    return want if want in ceilings else "fp32"


def lrn_section(
    device: torch.device, batch: int, *, reps: int, warmup: int, iters: int, channels_last: bool
) -> dict:
    """LRN (forward + backward) on conv1's output (N, 96, 55, 55): ours as the network runs it (the
    fused native kernel on the CPU when it is available, with conv1's ReLU fused in), ours in eager
    PyTorch, nn.LocalResponseNorm, and conv1 (forward + weight gradient)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ours = LocalResponseNorm(5, 1e-4, 0.75, 2.0, groups=2, relu=True)  # LRN1 as the network runs it
    eager_window = "shift" if device.type != "cpu" else ("conv" if channels_last else "mm")
    ours_eager = lambda t: local_response_norm(t, 5, 1e-4, 0.75, 2.0, 2, window=eager_window)  # noqa: E731
    torch_lrn = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # same α once divided by n
    conv1 = nn.Conv2d(3, 96, 11, stride=4).to(device, memory_format=fmt)
    image = torch.randn(batch, 3, 227, 227, device=device).contiguous(memory_format=fmt)
    act = torch.randn(batch, 96, 55, 55, device=device).relu_().mul_(10).contiguous(memory_format=fmt)
    act.requires_grad_(True)
    grad = torch.randn_like(act)

    def run(layer: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def fn() -> None:
            act.grad = None
            layer(act).backward(grad)

        return fn

    def conv() -> None:
        conv1.zero_grad(set_to_none=True)
        conv1(image).backward(grad)  # the image needs no gradient (as in the net)

    t = interleaved(
        {
            "ours": run(ours),
            "ours eager": run(ours_eager),
            "nn.LocalResponseNorm": run(torch_lrn),
            "conv1": conv,
        },
        reps=reps,
        warmup=warmup,
        iters=iters,
        devices=[device],
    )
    ms = {k: 1e3 * median(v) for k, v in t.items()}
    kernel = native.status() if device.type == "cpu" else f"eager PyTorch (window '{eager_window}')"
    return {
        "shape": [batch, 96, 55, 55],
        "ms": ms,
        "kernel": kernel,
        "eager_over_conv1": ms["ours eager"] / ms["conv1"],
        "ours_over_conv1": ms["ours"] / ms["conv1"],
        "nn_over_conv1": ms["nn.LocalResponseNorm"] / ms["conv1"],
        "ours_over_nn": ms["ours"] / ms["nn.LocalResponseNorm"],
    }


def plain_defaults_section(batch: int, *, reps: int, warmup: int, out_dir: Path) -> dict:
    """The training step and inference with plain PyTorch defaults (NCHW, glibc's allocator as it
    comes: ``--no-channels-last --no-tune-malloc``), in a fresh process because the allocator
    setting is process-wide and irreversible; only those two sections, same batch and threads."""
    out = out_dir / "plain-defaults"
    cmd = [sys.executable, __file__, "--steps-only", "--no-channels-last", "--no-tune-malloc", "--no-loader"]
    cmd += ["--devices", "cpu", "cpu", "--batch", str(batch), "--reps", str(reps), "--warmup", str(warmup)]
    cmd += ["--threads", str(torch.get_num_threads()), "--out", str(out)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        return {"skipped": "the plain-defaults run took over 1800 s"}
    if proc.returncode != 0 or not (out / "bench.json").exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"skipped": f"the plain-defaults run failed (exit {proc.returncode}): {tail[0]}"}
    r = json.loads((out / "bench.json").read_text())
    keys = ("train_img_s", "train_ratio_to_torchvision", "infer_img_s", "infer_ratio_to_torchvision")
    keys += ("train_ratio_spread", "infer_ratio_spread", "train_runs_s", "infer_runs_s")
    return {k: r[k] for k in keys}


def loader_section(device: torch.device, quick: bool, out_dir: Path) -> dict:
    """Run benchmarks/bench_loader.py (the data pipeline's benchmark) if it is there."""
    script = ROOT / "benchmarks" / "bench_loader.py"
    if not script.exists():
        return {"skipped": "benchmarks/bench_loader.py not found"}
    out = out_dir / "loader.json"
    cmd = [sys.executable, str(script), "--device", str(device), "--out", str(out_dir), "--workers", "-1"]
    if quick:
        cmd += ["--batches", "4", "--repeats", "1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"skipped": "bench_loader.py took over 600 s"}
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"skipped": f"bench_loader.py failed (exit {proc.returncode}): {tail[0]}"}
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------------------ main
def run(
    devices: tuple[torch.device, torch.device],
    batch: int,
    *,
    reps: int,
    warmup: int,
    iters: int,
    channels_last: bool,
    precision: str,
    compile: bool,
    loader: bool,
    quick: bool,
    out_dir: Path,
    tune_malloc: bool = False,
    steps_only: bool = False,
) -> dict:
    """Every section; with ``steps_only`` just the training-step and inference ratios (the
    plain-defaults run, :func:`plain_defaults_section`)."""
    dev = devices[0]
    infer_iters = iters if dev.type == "cuda" else 4 * iters  # a CPU forward is a quarter of a step
    result: dict = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        },
        "settings": {
            "devices": [str(d) for d in devices],
            "batch": batch,
            "reps": reps,
            "warmup": warmup,
            "iters_per_rep": iters,
            "infer_iters_per_rep": infer_iters,
            "channels_last": channels_last,
            "precision": precision,
            "compile": compile,
        },
    }
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    models = build_models(devices, channels_last=channels_last, compile=compile)
    y = torch.randint(0, 1000, (batch,), device=dev)
    inputs = {
        k: to_input(torch.randn(batch, *shape).mul_(50), d, channels_last=channels_last)
        for k, (_, shape, d) in models.items()
    }
    all_devs = list(devices)

    # FLOPs per image, from each architecture's own layer shapes
    import torchvision

    two_tower = AlexNet(devices=("meta", "meta"))
    meta = {
        "two-tower": (two_tower, two_tower.input_shape),
        "torchvision": (torchvision.models.alexnet().to("meta"), (3, 224, 224)),
    }
    meta["grouped"] = meta["two-tower"]
    flops = {
        k: {"forward": forward_flops(layer_macs(m, s)), "training": training_flops(layer_macs(m, s))}
        for k, (m, s) in meta.items()
        if k in models
    }
    result["flops_per_image"] = flops

    # training step
    for m, _, _ in models.values():
        m.train()
    steps = {k: make_train_step(m, inputs[k], y, precision) for k, (m, _, _) in models.items()}
    t = interleaved(steps, reps=reps, warmup=warmup, iters=iters, devices=all_devs)
    train = {k: batch / median(v) for k, v in t.items()}
    result["train_img_s"] = train
    result["train_ratio_to_torchvision"] = ratios(t)
    result["train_ratio_spread"] = ratio_spread(t)
    result["train_runs_s"] = t

    # peak memory of one training step per model
    result["peak_memory_bytes"] = {k: peak_memory(s, all_devs) for k, s in steps.items()}
    if any(d.type == "cpu" for d in devices) and not steps_only:
        for k in steps:
            result["peak_memory_bytes"][k]["cpu_rss_growth"] = cpu_peak_rss(
                k, devices, batch, channels_last=channels_last, tune_malloc=tune_malloc
            )

    # inference
    for m, _, _ in models.values():
        m.eval()
    infers = {k: make_infer(m, inputs[k], precision) for k, (m, _, _) in models.items()}
    t = interleaved(infers, reps=reps, warmup=warmup, iters=infer_iters, devices=all_devs)
    infer = {k: batch / median(v) for k, v in t.items()}
    result["infer_img_s"] = infer
    result["infer_ratio_to_torchvision"] = ratios(t)
    result["infer_ratio_spread"] = ratio_spread(t)
    result["infer_runs_s"] = t
    del steps, infers, models, inputs
    if steps_only:
        return result

    # the device's matmul ceiling, and the share of it the steps achieve
    if dev.type == "cuda":
        sizes = (4096, 8192) if quick else (4096, 8192, 12288)
    else:
        sizes = (1024, 2048) if quick else (1024, 2048, 3072, 4096)
    ceilings = matmul_ceiling(dev, sizes=sizes, repeats=3 if quick else 5)
    kind = ceiling_for(precision, dev, ceilings)
    ref_peak = ceilings[kind]["flop_s"]
    result["matmul_ceiling"] = {
        "kinds": ceilings,
        "sizes": list(sizes),
        "compared_with": kind,
        "threads": len(os.sched_getaffinity(0)) if dev.type == "cpu" else None,
    }
    result["train_share_of_peak"] = {k: train[k] * flops[k]["training"] / ref_peak for k in train}
    result["infer_share_of_peak"] = {k: infer[k] * flops[k]["forward"] / ref_peak for k in infer}

    # LRN alone
    result["lrn"] = lrn_section(
        dev, batch, reps=reps, warmup=warmup, iters=iters, channels_last=channels_last
    )
    result["process_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # loader
    result["loader"] = loader_section(dev, quick, out_dir) if loader else {"skipped": "--no-loader"}
    del fmt
    return result


def table(r: dict) -> str:
    s = r["settings"]
    lines = [
        f"AlexNet benchmark {r['date']}  {r['machine']['processor']}  torch {r['machine']['torch']}  "
        f"threads {r['machine']['torch_threads']}  cuda {r['machine']['cuda'] or 'none'}",
        f"devices {s['devices']}  batch {s['batch']}  channels_last {s['channels_last']}  "
        f"precision {s['precision']}  "
        f"compile {s['compile']}  tune_malloc {s.get('tune_malloc')}  medians of {s['reps']} reps x "
        f"{s['iters_per_rep']} (inference x {s.get('infer_iters_per_rep', s['iters_per_rep'])})",
        "",
        f"{'model':<12} {'train img/s':>12} {'x tv':>6} {'infer img/s':>12} {'x tv':>6} "
        f"{'GFLOP/img':>10} {'train %peak':>12} {'peak mem MB':>12}",
    ]
    for k in r["train_img_s"]:
        mem = r["peak_memory_bytes"][k]
        mem_s = "/".join(f"{v / 2**20:.0f}" for v in mem.values())
        lines.append(
            f"{k:<12} {r['train_img_s'][k]:>12.1f} {r['train_ratio_to_torchvision'][k]:>6.2f} "
            f"{r['infer_img_s'][k]:>12.1f} {r['infer_ratio_to_torchvision'][k]:>6.2f} "
            f"{r['flops_per_image'][k]['training'] / 1e9:>10.2f} "
            f"{100 * r['train_share_of_peak'][k]:>11.1f}% {mem_s:>12}"
        )
    ceil = r["matmul_ceiling"]
    peaks = ", ".join(f"{k} {v['flop_s'] / 1e9:.0f} GFLOP/s" for k, v in ceil["kinds"].items())
    lines.append(
        f"ceiling (best of n×n GEMMs, n in {ceil['sizes']}, and a 3×3 convolution): {peaks}; "
        f"'%peak' is against "
        f"{ceil['compared_with']}   (peak mem: "
        + ", ".join(r["peak_memory_bytes"]["torchvision"].keys())
        + ")"
    )
    over = [k for k, v in r["train_share_of_peak"].items() if v > 1.0]
    if over:
        lines.append(
            f"WARNING: {', '.join(over)} above 100 % of the measured ceiling: the ceiling was measured "
            f"too low (load from other processes?) or the FLOP count is wrong"
        )
    lrn = r["lrn"]
    lines += [
        "",
        f"LRN fwd+bwd on {tuple(lrn['shape'])}: ours {lrn['ms']['ours']:.1f} ms, "
        f"ours eager {lrn['ms']['ours eager']:.1f} ms, "
        f"nn.LocalResponseNorm {lrn['ms']['nn.LocalResponseNorm']:.1f} ms, conv1 {lrn['ms']['conv1']:.1f} ms"
        f"  -> ours/conv1 {lrn['ours_over_conv1']:.2f}, eager/conv1 {lrn['eager_over_conv1']:.2f}, "
        f"nn/conv1 {lrn['nn_over_conv1']:.2f}",
        f"LRN kernel: {lrn['kernel']}",
    ]
    ld = r["loader"]
    if "skipped" in ld:
        lines.append(f"loader: skipped ({ld['skipped']})")
    else:
        for name, data in ld.get("datasets", {}).items():
            for row in data["results"]:
                lines.append(
                    f"loader, {name} images ({row['workers']} workers, batch {ld['batch_size']}): ours "
                    f"{row['ours_img_s']:.0f} img/s, torchvision preset {row['torchvision_img_s']:.0f} "
                    f"img/s, ratio {row['ratio']:.2f}"
                )
            lines.append(
                f"loader, {name} images: {data['per_worker_img_s']:.0f} img/s per worker, "
                f"{data['workers_for_10000_img_s']} workers for 10,000 img/s"
            )
    return "\n".join(lines)


def targets(r: dict) -> str:
    """The ratios issue 18 asks for, each beside its target (same-run ratios to torchvision)."""
    ours = [k for k in ("two-tower", "grouped") if k in r["train_ratio_to_torchvision"]]

    def row(label: str, res: dict, kind: str, target: str) -> str:
        ratio, spread = res[f"{kind}_ratio_to_torchvision"], res.get(f"{kind}_ratio_spread", {})
        cells = ", ".join(
            f"{k} {ratio[k]:.2f}x" + (f" [{spread[k][0]:.2f}-{spread[k][1]:.2f}]" if k in spread else "")
            for k in ours
            if k in ratio
        )
        return f"  {label:<44} {cells:<44} (target {target})"

    lines = [
        "",
        "same-run ratios to torchvision's AlexNet (issue 18, item 1) [interquartile range over rounds]:",
    ]
    lines.append(row("training step", r, "train", ">= 0.95x"))
    lines.append(row("inference", r, "infer", ">= 0.95x"))
    plain = r.get("plain_defaults")
    if plain is None:
        lines.append("  plain PyTorch defaults: not run (--no-plain-defaults, or not the default settings)")
    elif "skipped" in plain:
        lines.append(f"  plain PyTorch defaults: skipped ({plain['skipped']})")
    else:
        label = "training step, plain defaults (NCHW, glibc)"
        lines.append(row(label, plain, "train", ">= 0.92x"))
        lines.append(row("inference, plain defaults", plain, "infer", "-"))
    lrn = r["lrn"]
    lines.append(
        f"  {'LRN1 forward+backward / conv1':<44} {lrn['ours_over_conv1']:.2f}x{'':<39} (target <= 0.25x)"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    cuda = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--devices",
        nargs=2,
        default=["cuda:0", "cuda:0"] if cuda else ["cpu", "cpu"],
        help="devices of towers a and b (torchvision and the grouped twin use the first)",
    )
    ap.add_argument(
        "--batch", type=int, default=None, help="images per step (default: 128 on a GPU, 32 on the CPU)"
    )
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 11, --quick 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default 2, --quick 1)")
    ap.add_argument(
        "--iters",
        type=int,
        default=None,
        help="steps per timed repetition (default: 10 on a GPU, 1 on the CPU)",
    )
    ap.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="channels_last for every model and input (on by default, like the trainer's "
        "train.channels_last)",
    )
    ap.add_argument(
        "--precision",
        choices=precisions.PRECISIONS,
        default="fp32",
        help="arithmetic of every model (twogpu/precision.py; fp32: TF32 off); bf16 "
        "autocasts on the CPU too here",
    )
    ap.add_argument("--compile", action="store_true", help="torch.compile every model")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument(
        "--tune-malloc",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="alexnet.models.speed.tune_cpu_allocator() for the whole process, every model alike, when "
        "a tower is on the CPU (on by default, like the trainer's train.cpu_allocator_cache)",
    )
    ap.add_argument(
        "--plain-defaults",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time the training step and inference with plain PyTorch defaults (NCHW, untuned "
        "allocator) in a second process (default: on when both towers are on the CPU with "
        "channels_last and the tuned allocator)",
    )
    ap.add_argument("--no-loader", action="store_true", help="skip the loader benchmark")
    ap.add_argument("--quick", action="store_true", help="short run: fewer repetitions, batch 16 on the CPU")
    ap.add_argument("--out", default=str(ROOT / "bench-results"), help="folder for the JSON results")
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)  # internal: one model's CPU peak
    ap.add_argument("--steps-only", action="store_true", help=argparse.SUPPRESS)  # internal: plain defaults
    a = ap.parse_args(argv)
    prec = a.precision
    try:
        devices = resolve_devices(a.devices).pair  # a CUDA device without CUDA: one line, no traceback
    except ValueError as e:
        print(f"bench.py: error: --devices {' '.join(a.devices)}: {e}", file=sys.stderr)
        return 2
    precisions.configure(prec)
    if a.threads:
        torch.set_num_threads(a.threads)
    tuned = tune_cpu_allocator() if a.tune_malloc and "cpu" in (devices[0].type, devices[1].type) else False
    on_gpu = devices[0].type == "cuda"
    batch = a.batch or (128 if on_gpu else (16 if a.quick else 32))
    if a.memory_probe:
        print(memory_probe(a.memory_probe, devices, batch, a.channels_last))
        return 0
    reps = a.reps or (3 if a.quick else 11)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    iters = a.iters or (10 if on_gpu else 1)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    r = run(
        devices,
        batch,
        reps=reps,
        warmup=warmup,
        iters=iters,
        channels_last=a.channels_last,
        precision=prec,
        compile=a.compile,
        loader=not a.no_loader,
        quick=a.quick,
        out_dir=out_dir,
        tune_malloc=tuned,
        steps_only=a.steps_only,
    )
    r["settings"]["tune_malloc"] = tuned
    plain = a.plain_defaults
    if plain is None:
        plain = devices == (torch.device("cpu"),) * 2 and a.channels_last and bool(tuned)
    if plain and not a.steps_only:
        r["plain_defaults"] = plain_defaults_section(batch, reps=reps, warmup=warmup, out_dir=out_dir)
    if not a.steps_only:
        print(table(r))
        print(targets(r))
    stamp = r["date"].replace(":", "").replace("+0000", "Z")
    for path in (out_dir / f"bench-{stamp}.json", out_dir / "bench.json"):
        path.write_text(json.dumps(r, indent=2))
    print(f"\nwrote {out_dir / 'bench.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
