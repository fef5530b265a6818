"""Per-operator profile of one CPU training step: the two towers, the grouped twin and torchvision's
AlexNet side by side, as a Markdown table (docs/cpu-profile.md).

    python benchmarks/profile_step.py [--batch 32] [--rounds 5] [--threads N] [--no-channels-last]
                                      [--no-tune-malloc] [--infer] [--top 25]

Each round profiles one step of every model in turn (``torch.profiler``, CPU, ``record_shapes``),
after two untimed warm-up steps each, with the same batch, threads, optimizer and input as
``benchmarks/bench.py``. Per operator it prints the median over rounds of its self time per step
(an operator's own time, children excluded), its share of the model's step, and the step as the
sum of the medians (so the rows add up to it). The machine may be shared: read the columns against
each other, not as absolutes.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import median

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT), str(ROOT / "benchmarks")]

from bench import build_models, make_infer, make_train_step  # noqa: E402

from alexnet.models.speed import to_input, tune_cpu_allocator  # noqa: E402

MODELS = ("two-tower", "grouped", "torchvision")


def _self_ms(prof: profile) -> dict[str, float]:
    """Self CPU milliseconds per operator name, over the whole profiled block."""
    out: dict[str, float] = defaultdict(float)
    for e in prof.key_averages():
        out[e.key] += e.self_cpu_time_total / 1e3
    return out


def profile_steps(
    batch: int, rounds: int, *, channels_last: bool, infer: bool
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """(model → operator → median self ms per step, model → the sum of those medians: the step)."""
    cpu = torch.device("cpu")
    models = build_models((cpu, cpu), channels_last=channels_last, compile=False)
    torch.manual_seed(0)
    y = torch.randint(0, 1000, (batch,))
    steps = {}
    for name, (model, shape, dev) in models.items():
        x = to_input(torch.randn(batch, *shape).mul_(50), dev, channels_last=channels_last)
        model.train(not infer)
        steps[name] = make_infer(model, x, "fp32") if infer else make_train_step(model, x, y, "fp32")
    for _ in range(2):
        for step in steps.values():
            step()
    per_op: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in steps}
    for r in range(rounds):
        for name, step in steps.items():
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                step()
            ops = _self_ms(prof)
            for op in set(ops) | set(per_op[name]):
                per_op[name][op] += [0.0] * (r - len(per_op[name][op])) + [ops.get(op, 0.0)]
    medians = {k: {op: median(v) for op, v in ops.items()} for k, ops in per_op.items()}
    return medians, {k: sum(ops.values()) for k, ops in medians.items()}


def markdown(ops: dict[str, dict[str, float]], totals: dict[str, float], top: int) -> str:
    """The table: operators sorted by the two towers' time, then the totals."""
    names = [m for m in MODELS if m in ops]
    every = set().union(*(ops[m] for m in names))
    order = sorted(every, key=lambda op: -max(ops[m].get(op, 0.0) for m in names))
    head = " | ".join(f"{m} ms" for m in names) + " | " + " | ".join(f"{m} share" for m in names)
    lines = [f"| operator | {head} |", "|---" * (1 + 2 * len(names)) + "|"]
    rest = {m: totals[m] for m in names}
    for op in order[:top]:
        ms = [ops[m].get(op, 0.0) for m in names]
        for m, v in zip(names, ms):
            rest[m] -= v
        cells = " | ".join(f"{v:.1f}" for v in ms) + " | "
        cells += " | ".join(f"{100 * v / totals[m]:.1f} %" for m, v in zip(names, ms))
        lines.append(f"| `{op}` | {cells} |")
    lines.append(
        "| (other operators) | "
        + " | ".join(f"{rest[m]:.1f}" for m in names)
        + " | "
        + " | ".join(f"{100 * rest[m] / totals[m]:.1f} %" for m in names)
        + " |"
    )
    lines.append(
        "| **step** | "
        + " | ".join(f"**{totals[m]:.1f}**" for m in names)
        + " | "
        + " | ".join("100 %" for _ in names)
        + " |"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32, help="images per step (bench.py's CPU default)")
    ap.add_argument("--rounds", type=int, default=5, help="profiled steps per model, interleaved")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--tune-malloc", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--infer", action="store_true", help="profile inference instead of the training step")
    ap.add_argument("--top", type=int, default=25, help="operators listed (the rest are summed)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    tuned = tune_cpu_allocator() if a.tune_malloc else False
    ops, totals = profile_steps(a.batch, a.rounds, channels_last=a.channels_last, infer=a.infer)
    what = "inference" if a.infer else "training step (forward + backward + SGD)"
    print(
        f"{what}, batch {a.batch}, {torch.get_num_threads()} threads, channels_last {a.channels_last}, "
        f"tune_malloc {tuned}, torch {torch.__version__}; median self ms per step over {a.rounds} rounds\n"
    )
    print(markdown(ops, totals, a.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
