"""``alexnet compare``'s table as markdown, CSV or JSON (rows from
:func:`alexnet.commands.compare.compare_runs`).

Errors and differences are printed in percentage points with their 95 % interval in brackets
(:mod:`alexnet.evaluation.intervals`); a difference whose interval contains 0 — one the runs cannot tell from
noise — is marked ``?``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from twogpu.timing import format_duration


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _dpct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.2f}"


def _cell(row: Any, name: str, fmt: Callable[[float | None], str]) -> str:
    """``value [lo, hi]`` (and ``?`` for an unresolved difference) of the metric ``name``."""
    value = getattr(row, name)
    if value is None:
        return "–"
    text = fmt(value)
    if name in row.ci:
        lo, hi = row.ci[name]
        text += f" [{fmt(lo)}, {fmt(hi)}]"
    if row.resolved.get(name) is False:
        text += " ?"
    return text


def _pair(row: Any, prefix: str, fmt: Callable[[float | None], str]) -> str:
    a, b = (
        _cell(row, f"{prefix}_top1{'' if prefix.startswith('d_') else '_err'}", fmt),
        _cell(row, f"{prefix}_top5{'' if prefix.startswith('d_') else '_err'}", fmt),
    )
    return "–" if a == b == "–" else f"{a} / {b}"


def _duration(s: float | None) -> str:
    return "–" if s is None or not math.isfinite(s) else format_duration(s)


def to_markdown(rows: Sequence[Any]) -> str:
    """The table in markdown; errors and differences in percentage points with 95 % intervals."""
    head = [
        "run",
        "ablation",
        "seeds",
        "epochs",
        "images seen",
        "wall time",
        "train top-1",
        "top-1 / top-5 centre",
        "top-1 / top-5 10-view",
        "Δ centre",
        "Δ 10-view",
        "paper Δ",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ablation = r.ablation + (f" (also {r.other_changes})" if r.other_changes else "")
        centre = _pair(r, "centre", _pct) + (" *" if r.centre_source == "metrics.jsonl" else "")
        epochs = "–" if r.epochs is None else str(r.epochs)
        if r.epochs is not None and r.planned_epochs and r.epochs < r.planned_epochs:
            epochs += f" of {r.planned_epochs}"  # stopped early (interrupted, diverged) or still running
        cells = [
            r.run,
            ablation,
            str(r.seeds),
            epochs,
            "–" if r.images_seen is None else f"{r.images_seen:,}",
            _duration(r.wall_time_s),
            _pct(r.train_top1_err),
            centre,
            _pair(r, "ten_view", _pct),
            _pair(r, "d_centre", _dpct) + (" *" if r.d_centre_source == "metrics.jsonl" else ""),
            _pair(r, "d_ten_view", _dpct),
            r.paper_claim or "–",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines.append(
        "Errors in %, averaged over the seeds. Δ = the ablation's error minus the baseline's, in "
        "points (positive: removing the feature hurt, as the paper claims). [low, high]: 95 % "
        "interval — binomial on the validation images (Wilson; Newcombe for Δ, conservative since "
        "both runs see the same images), widened by the seeds' spread when there are two or more "
        "(t interval). ? marks a Δ whose interval contains 0: these runs cannot tell it from "
        "noise. Train top-1 is the last epoch's, measured with augmentation and dropout on."
    )
    if any(r.seeds < 2 for r in rows):
        lines.append(
            "Configurations run with one seed: their intervals leave out run-to-run variation "
            "(`make ablations-demo SEEDS=N` runs N seeds of each)."
        )
    if any(r.val_images is None and r.centre_top1_err is not None for r in rows):
        lines.append("No interval where the number of validation images is not recorded.")
    if any("metrics.jsonl" in (r.centre_source, r.d_centre_source) for r in rows):
        lines.append(
            "* the last epoch's validation error from metrics.jsonl (no eval.json for this run or the "
            "baseline; `alexnet evaluate` gives the chosen checkpoint's error and the 10-view error)."
        )
    return "\n".join(lines)


def _flat(row: Any) -> dict[str, Any]:
    out = {}
    for k, v in vars(row).items():
        if k == "ci":
            for name, (lo, hi) in v.items():
                out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
        elif k in ("resolved", "spread"):
            out.update({f"{name}_{k}": x for name, x in v.items()})
        elif k == "runs":
            out[k] = " ".join(v)
        else:
            out[k] = v
    return out


def to_csv(rows: Sequence[Any]) -> str:
    """Every field of every row (intervals as ``<metric>_lo`` / ``_hi``); fractions, not percent."""
    flat = [_flat(r) for r in rows]
    names = list(dict.fromkeys(k for f in flat for k in f))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for f in flat:
        writer.writerow({k: ("" if f.get(k) is None else f.get(k)) for k in names})
    return buf.getvalue()


def to_json(rows: Sequence[Any]) -> str:
    return json.dumps([vars(r) for r in rows], indent=2)


FORMATS: dict[str, Callable[[Sequence[Any]], str]] = {"markdown": to_markdown, "csv": to_csv, "json": to_json}
