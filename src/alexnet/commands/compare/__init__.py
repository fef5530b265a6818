"""``alexnet compare``: the paper's ablation claims (Krizhevsky et al. 2012, sections 3.2-3.4, 4.1,
4.2) checked against finished runs.

Reads run directories (:mod:`alexnet.commands.compare._runs`), groups the runs that differ only in
``train.seed``
(``make ablations-demo SEEDS=N``), finds the baseline (the configuration with none of the ablations,
or ``--baseline``), names each other configuration's ablation by diffing its resolved config against
the baseline's, and prints one table (:mod:`alexnet.commands.compare._table`: markdown, CSV or JSON) of top-1/
top-5 error (centre view and ten views), epochs, images seen, wall time, and each ablation's
difference to the baseline beside the difference the paper reports — every error and difference
with its 95 % interval (:mod:`alexnet.evaluation.intervals`), and the differences the runs cannot resolve
marked.

A difference is the ablation's error minus the baseline's: positive means removing the feature hurt,
i.e. the feature helps, which is what the paper claims for each one.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet.commands.compare._runs import (
    IGNORED_KEYS,
    RunRecord,
    config_diff,
    expand_runs,
    flatten,
    read_run,
)
from alexnet.commands.compare._table import FORMATS
from alexnet.evaluation.intervals import Estimate, difference_estimate, error_estimate


# ------------------------------------------------------------------------------------- ablations
@dataclass(frozen=True)
class Ablation:
    """One of the paper's ablations: the config keys it changes, a test whether a resolved config
    has it switched on, and the improvement the paper reports for the feature (fractions; None where
    the paper gives no number)."""

    name: str
    keys: tuple[str, ...]
    active: Callable[[dict[str, dict[str, Any]]], bool]
    paper_top1: float | None
    paper_top5: float | None
    paper_claim: str
    section: str


ABLATIONS: tuple[Ablation, ...] = (
    Ablation(
        "one-tower",
        ("model.towers",),
        lambda c: c["model"]["towers"] == 1,
        0.017,
        0.012,
        "+1.7 / +1.2",
        "3.2",
    ),
    Ablation("no-lrn", ("model.lrn",), lambda c: not c["model"]["lrn"], 0.014, 0.012, "+1.4 / +1.2", "3.3"),
    Ablation(
        "no-overlap",
        ("model.pool_size", "model.pool_stride"),
        lambda c: c["model"]["pool_size"] <= c["model"]["pool_stride"],
        0.004,
        0.003,
        "+0.4 / +0.3",
        "3.4",
    ),
    Ablation(
        "no-lighting",
        ("data.lighting_std",),
        lambda c: c["data"]["lighting_std"] == 0,
        0.01,
        None,
        "> +1 top-1",
        "4.1",
    ),
    Ablation(
        "no-dropout",
        ("model.dropout",),
        lambda c: c["model"]["dropout"] == 0,
        None,
        None,
        "overfits substantially (no number)",
        "4.2",
    ),
    Ablation(
        "no-flip-crop",
        ("data.flip", "data.random_crop"),
        lambda c: not c["data"]["flip"] and not c["data"]["random_crop"],
        None,
        None,
        "overfits substantially (no number)",
        "4.1",
    ),
)
"""The ablations of ``configs/ablations/`` with the paper's reported differences (top-1 / top-5)."""


def active_ablations(cfg: dict[str, dict[str, Any]]) -> list[Ablation]:
    return [a for a in ABLATIONS if a.active(cfg)]


def identify(
    run: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]
) -> tuple[list[Ablation], list[str]]:
    """The ablations ``run`` has on top of ``baseline``, and the differing keys no ablation explains."""
    diff = config_diff(run, baseline)
    found = [a for a in active_ablations(run) if not a.active(baseline) and any(k in diff for k in a.keys)]
    explained = {k for a in found for k in a.keys}
    return found, [k for k in diff if k not in explained]


# ------------------------------------------------------------------------------------- groups
SEED_KEY = "train.seed"


def _recipe(cfg: dict[str, dict[str, Any]]) -> str:
    """What a run trains, seed and bookkeeping left out: runs with the same recipe are seeds of one."""
    return json.dumps(
        {k: v for k, v in flatten(cfg).items() if k not in IGNORED_KEYS and k != SEED_KEY},
        sort_keys=True,
        default=str,
    )


@dataclass
class Group:
    """The runs of one configuration that differ only in ``train.seed`` (one per seed)."""

    runs: list[RunRecord]

    @property
    def config(self) -> dict[str, dict[str, Any]]:
        return self.runs[0].config

    @property
    def name(self) -> str:
        """The runs' common name without a ``-seed<k>`` suffix (``make ablations-demo SEEDS=N``)."""
        names = {re.sub(r"-seed\d+$", "", r.name) for r in self.runs}
        return names.pop() if len(names) == 1 else self.runs[0].name

    def errors(self, which: str) -> tuple[dict[str, list[float]], int | None, str]:
        """Per-metric lists (one value per seed) of centre errors from the same source for every run:
        ``which`` = 'eval.json' or 'metrics.jsonl'; ({}, None, '') when some run lacks it."""
        pairs = [
            (r.eval_centre, r.eval_images) if which == "eval.json" else (r.last_val, r.last_val_images)
            for r in self.runs
        ]
        if any(v is None or None in v for v, _ in pairs):
            return {}, None, ""
        counts = [n for _, n in pairs if n]
        return (
            {"top1": [v[0] for v, _ in pairs], "top5": [v[1] for v, _ in pairs]},
            min(counts) if len(counts) == len(pairs) else None,
            which,
        )

    def ten_view(self) -> tuple[dict[str, list[float]], int | None]:
        if any(r.ten_view_top1_err is None or r.ten_view_top5_err is None for r in self.runs):
            return {}, None
        counts = [r.eval_images for r in self.runs if r.eval_images]
        return (
            {
                "top1": [r.ten_view_top1_err for r in self.runs],
                "top5": [r.ten_view_top5_err for r in self.runs],
            },
            min(counts) if len(counts) == len(self.runs) else None,
        )


def _seed(r: RunRecord) -> Any:
    return r.config.get("train", {}).get("seed", 0)


def group_runs(runs: Sequence[RunRecord]) -> list[Group]:
    """Runs grouped by recipe, one run per seed in a group (a second run of the same recipe and seed
    starts another group), in the order first seen; a group's runs sorted by seed."""
    groups: list[tuple[str, Group]] = []
    for r in runs:
        key = _recipe(r.config)
        home = next((g for k, g in groups if k == key and all(_seed(x) != _seed(r) for x in g.runs)), None)
        if home is None:
            home = Group([])
            groups.append((key, home))
        home.runs.append(r)
    for _, g in groups:
        g.runs.sort(key=lambda r: (_seed(r), r.name))
    return [g for _, g in groups]


def find_baseline(groups: Sequence[Group], baseline: str | Path | None = None) -> Group:
    """The group holding the run given as ``baseline``, else the one group with none of the ablations."""
    if baseline is not None:
        want = Path(baseline).resolve()
        for g in groups:
            if any(r.path.resolve() == want for r in g.runs):
                return g
        raise ValueError(f"--baseline {baseline}: not among the runs compared")
    clean = [g for g in groups if not active_ablations(g.config)]
    if len(clean) == 1:
        return clean[0]
    if not clean:
        raise ValueError("no baseline: every run has an ablation switched on; name one with --baseline RUN")
    raise ValueError(
        f"{len(clean)} configurations have no ablation ({', '.join(g.name for g in clean)}); "
        "choose the baseline with --baseline RUN"
    )


# --------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    """One line of the comparison table: one configuration, averaged over its seeds (errors and
    differences as fractions; each with a 95 % interval in ``ci`` where the image count is known)."""

    run: str
    runs: list[str]
    seeds: int
    ablation: str
    epochs: int | None
    planned_epochs: int | None
    images_seen: int | None
    wall_time_s: float | None
    train_top1_err: float | None
    val_images: int | None = None
    centre_top1_err: float | None = None
    centre_top5_err: float | None = None
    ten_view_top1_err: float | None = None
    ten_view_top5_err: float | None = None
    d_centre_top1: float | None = None
    d_centre_top5: float | None = None
    d_ten_view_top1: float | None = None
    d_ten_view_top5: float | None = None
    ci: dict[str, list[float]] = field(default_factory=dict)
    """Metric name → [low, high] of its 95 % interval (:mod:`alexnet.evaluation.intervals`)."""
    resolved: dict[str, bool] = field(default_factory=dict)
    """Difference name → whether its interval excludes 0."""
    spread: dict[str, float] = field(default_factory=dict)
    """Metric name → sample standard deviation over seeds (two seeds or more)."""
    paper_d_top1: float | None = None
    paper_d_top5: float | None = None
    paper_claim: str = ""
    other_changes: str = ""
    centre_source: str = ""
    d_centre_source: str = ""


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _record(row: Row, name: str, est: Estimate | None) -> float | None:
    if est is None:
        return None
    row.ci[name] = [est.lo, est.hi]
    if est.spread is not None:
        row.spread[name] = est.spread
    if name.startswith("d_"):
        row.resolved[name] = est.resolved
    return est.value


def _centre(g: Group) -> tuple[dict[str, list[float]], int | None, str]:
    for which in ("eval.json", "metrics.jsonl"):
        errs, n, source = g.errors(which)
        if errs:
            return errs, n, source
    return {}, None, ""


def compare_runs(groups: Sequence[Group], baseline: Group) -> list[Row]:
    """The baseline first, then every other configuration with its differences to the baseline."""
    rows = []
    for g in [baseline] + [x for x in groups if x is not baseline]:
        runs = g.runs
        row = Row(
            run=g.name,
            runs=[r.name for r in runs],
            seeds=len(runs),
            ablation="baseline" if g is baseline else "",
            epochs=min((r.epochs for r in runs if r.epochs is not None), default=None),
            planned_epochs=g.config.get("train", {}).get("epochs"),
            images_seen=max((r.images_seen for r in runs if r.images_seen is not None), default=None),
            wall_time_s=_mean([r.wall_time_s for r in runs]),
            train_top1_err=_mean([r.train_top1_err for r in runs]),
        )
        centre, n, row.centre_source = _centre(g)
        ten, n10 = g.ten_view()
        row.val_images = n
        for view, errs, count in (("centre", centre, n), ("ten_view", ten, n10)):
            for k in errs:
                value = _mean(errs[k])
                est = error_estimate(errs[k], count) if count else None
                setattr(row, f"{view}_{k}_err", _record(row, f"{view}_{k}_err", est) if est else value)
        if g is not baseline:
            found, other = identify(g.config, baseline.config)
            row.ablation = " + ".join(a.name for a in found) or "(other)"
            diff = config_diff(g.config, baseline.config)
            row.other_changes = ", ".join(f"{k}={diff[k][1]!r}" for k in other if k != SEED_KEY)
            # Like with like: both groups' evaluated checkpoints, else both groups' last epochs.
            pairs = []
            for which in ("eval.json", "metrics.jsonl"):
                mine, n_m, _ = g.errors(which)
                theirs, n_t, _ = baseline.errors(which)
                if mine and theirs:
                    pairs.append(("centre", mine, theirs, n_m, n_t))
                    row.d_centre_source = which
                    break
            (mine10, n_m10), (theirs10, n_t10) = g.ten_view(), baseline.ten_view()
            if mine10 and theirs10:
                pairs.append(("ten_view", mine10, theirs10, n_m10, n_t10))
            for view, mine, theirs, n_m, n_t in pairs:
                for k in ("top1", "top5"):
                    name = f"d_{view}_{k}"
                    if n_m and n_t:
                        value = _record(row, name, difference_estimate(mine[k], theirs[k], n_m, n_t))
                    else:
                        value = _mean(mine[k]) - _mean(theirs[k])  # type: ignore[operator]
                    setattr(row, name, value)
            if len(found) == 1 and not row.other_changes:  # the paper's number: a clean single ablation only
                row.paper_d_top1, row.paper_d_top5 = found[0].paper_top1, found[0].paper_top5
                row.paper_claim = found[0].paper_claim
        rows.append(row)
    return rows


def compare(paths: Sequence[str | Path], baseline: str | Path | None = None, fmt: str = "markdown") -> str:
    """Read the run directories ``paths`` and return the comparison in ``fmt``
    ('markdown', 'csv' or 'json')."""
    groups = group_runs([read_run(p) for p in expand_runs(paths)])
    return FORMATS[fmt](compare_runs(groups, find_baseline(groups, baseline)))


# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run directories (a folder without config.toml stands for the runs inside it)",
    )
    p.add_argument(
        "--baseline",
        default=None,
        metavar="RUN",
        help="the baseline run, or any seed of it (default: the one configuration with none "
        "of the ablations)",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="print CSV")
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="print JSON")
    p.set_defaults(fmt="markdown")


def run(args: argparse.Namespace) -> int:
    print(compare(args.runs, baseline=args.baseline, fmt=args.fmt))
    return 0
