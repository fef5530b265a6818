"""Per-operator profile of one training step: the two towers, the grouped twin and torchvision's
AlexNet side by side, as a Markdown table (docs/cpu-profile.md; on a GPU, docs/performance.md).

    python benchmarks/profile_step.py [--batch 32] [--rounds 5] [--threads N] [--no-channels-last]
                                      [--no-tune-malloc] [--infer] [--top 25]
                                      [--device cuda:0 [--precision bf16] [--raw]]

Each round profiles one step of every model in turn (``torch.profiler``, ``record_shapes``), after
two untimed warm-up steps each, with the same batch, threads, optimizer and input as
``benchmarks/bench.py``. Per operator it prints the median over rounds of its self time per step
(an operator's own time, children excluded), its share of the model's step, and the step as the
sum of the medians (so the rows add up to it). On the CPU that time is CPU time; on a GPU it is the
device time of the kernels each operator launched itself, and the table adds the step's wall time
without the profiler (median of five synchronised steps). The two are not a ratio: the sums come
from profiled steps, and tower b's side stream runs kernels side by side (on the first GPU run the
sums exceeded the wall time by up to 11 %, the grouped twin's too). The machine may be shared: read
the columns against each other, not as absolutes.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import median

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]

from bench import build_models, interleaved, make_infer, make_train_step  # noqa: E402

from alexnet.models.speed import to_input, tune_cpu_allocator  # noqa: E402
from twogpu import precision as precisions  # noqa: E402

MODELS = ("two-tower", "grouped", "torchvision")


def _self_ms(prof: profile, on_gpu: bool) -> dict[str, float]:
    """Self milliseconds per operator name over the whole profiled block: CPU time, or on a GPU the
    device time of the kernels each operator launched (the kernels' own rows are left out: they
    would count that time twice)."""
    out: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        if not on_gpu:
            out[e.key] += e.self_cpu_time_total / 1e3
        elif e.device_type == DeviceType.CPU:
            out[e.key] += e.self_device_time_total / 1e3
    return out


def profile_steps(
    batch: int,
    rounds: int,
    *,
    channels_last: bool,
    infer: bool,
    device: str = "cpu",
    precision: str = "fp32",
    raw: bool = False,
) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[str, float]]:
    """(model → operator → median self ms per step, model → the sum of those medians: the step,
    model → wall ms per unprofiled step on a GPU; empty on the CPU)."""
    dev = torch.device(device)
    on_gpu = dev.type == "cuda"
    models = build_models((dev, dev), channels_last=channels_last, compile=False)
    torch.manual_seed(0)
    y = torch.randint(0, 1000, (batch,)).to(dev)
    steps = {}
    for name, (model, shape, in_dev) in models.items():
        x = to_input(torch.randn(batch, *shape).mul_(50), in_dev, channels_last=channels_last)
        model.train(not infer)
        steps[name] = make_infer(model, x, precision) if infer else make_train_step(model, x, y, precision)
    # two untimed rounds; on a GPU then the wall time of five synchronised steps each, unprofiled
    timed = interleaved(steps, reps=5 if on_gpu else 0, warmup=2, iters=1, devices=[dev])
    wall = {k: 1e3 * median(v) for k, v in timed.items() if v}
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    per_op: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in steps}
    for r in range(rounds):
        for name, step in steps.items():
            with profile(activities=activities, record_shapes=True) as prof:
                step()
                if on_gpu:
                    torch.cuda.synchronize(dev)
            ops = _self_ms(prof, on_gpu)
            for op in set(ops) | set(per_op[name]):
                per_op[name][op] += [0.0] * (r - len(per_op[name][op])) + [ops.get(op, 0.0)]
            if raw and r == rounds - 1:
                sort = "self_device_time_total" if on_gpu else "self_cpu_time_total"
                print(f"--- {name}: torch.profiler's own table, last round\n")
                print(prof.key_averages().table(sort_by=sort, row_limit=30))
    medians = {k: {op: median(v) for op, v in ops.items()} for k, ops in per_op.items()}
    return medians, {k: sum(ops.values()) for k, ops in medians.items()}, wall


def markdown(
    ops: dict[str, dict[str, float]], totals: dict[str, float], top: int, wall: dict[str, float] | None = None
) -> str:
    """The table: operators sorted by the two towers' time, then the totals (and, given ``wall``,
    the unprofiled step's wall time, with no share beside it)."""
    names = [m for m in MODELS if m in ops]
    every = set().union(*(ops[m] for m in names))
    order = sorted(every, key=lambda op: -max(ops[m].get(op, 0.0) for m in names))
    head = " | ".join(f"{m} ms" for m in names) + " | " + " | ".join(f"{m} share" for m in names)
    lines = [f"| operator | {head} |", "|---" * (1 + 2 * len(names)) + "|"]

    def row(label: str, values: list[str], shares: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " | " + " | ".join(shares) + " |")

    rest = {m: totals[m] for m in names}
    for op in order[:top]:
        ms = [ops[m].get(op, 0.0) for m in names]
        for m, v in zip(names, ms):
            rest[m] -= v
        row(f"`{op}`", [f"{v:.1f}" for v in ms], [f"{100 * v / totals[m]:.1f} %" for m, v in zip(names, ms)])
    row(
        "(other operators)",
        [f"{rest[m]:.1f}" for m in names],
        [f"{100 * rest[m] / totals[m]:.1f} %" for m in names],
    )
    row("**step**", [f"**{totals[m]:.1f}**" for m in names], ["100 %" for _ in names])
    if wall:  # no share: the sums come from profiled steps, and tower b's side stream overlaps kernels
        row("wall time per step, unprofiled", [f"{wall[m]:.1f}" for m in names], ["" for _ in names])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, or a GPU such as cuda:0 (every model on it)")
    ap.add_argument("--precision", choices=precisions.PRECISIONS, default="fp32")
    ap.add_argument(
        "--batch", type=int, default=None, help="images per step (bench.py's: 32 on the CPU, 128 on a GPU)"
    )
    ap.add_argument("--rounds", type=int, default=5, help="profiled steps per model, interleaved")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--tune-malloc", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--infer", action="store_true", help="profile inference instead of the training step")
    ap.add_argument("--top", type=int, default=25, help="operators listed (the rest are summed)")
    ap.add_argument("--raw", action="store_true", help="also print torch.profiler's own table per model")
    a = ap.parse_args(argv)
    on_gpu = torch.device(a.device).type == "cuda"
    if on_gpu and not torch.cuda.is_available():
        print(f"profile_step: {a.device} asked for, but no CUDA device is visible", file=sys.stderr)
        return 2
    batch = a.batch or (128 if on_gpu else 32)
    if a.threads:
        torch.set_num_threads(a.threads)
    tuned = tune_cpu_allocator() if a.tune_malloc and not on_gpu else False
    precisions.configure(a.precision)
    ops, totals, wall = profile_steps(
        batch,
        a.rounds,
        channels_last=a.channels_last,
        infer=a.infer,
        device=a.device,
        precision=a.precision,
        raw=a.raw,
    )
    what = "inference" if a.infer else "training step (forward + backward + SGD)"
    where = (
        f"{torch.cuda.get_device_name(a.device)}, {a.precision}; median self device ms"
        if on_gpu
        else f"{torch.get_num_threads()} threads, tune_malloc {tuned}; median self ms"
    )
    print(
        f"{what}, batch {batch}, channels_last {a.channels_last}, {where} per step over {a.rounds} rounds, "
        f"torch {torch.__version__}\n"
    )
    print(markdown(ops, totals, a.top, wall))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
