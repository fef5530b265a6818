"""``alexnet compare``: the paper's ablation claims (Krizhevsky et al. 2012, sections 3.2-3.4, 4.1,
4.2) checked against finished runs.

Reads run directories (``config.toml``, ``metrics.jsonl``, ``eval.json``; see the run-directory
contract), finds the baseline (the run with none of the ablations, or ``--baseline``), names each
other run's ablation by diffing its resolved config against the baseline's, and prints one table
(markdown, CSV or JSON) of top-1/top-5 error (centre view and ten views), epochs, images seen, wall
time, and each ablation's difference to the baseline beside the difference the paper reports.

A difference is the ablation's error minus the baseline's: positive means removing the feature hurt,
i.e. the feature helps, which is what the paper claims for each one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from alexnet.config import Config, ConfigError, config_from_dict, config_to_dict, load_config


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
    Ablation("one-tower", ("model.towers",), lambda c: c["model"]["towers"] == 1, 0.017, 0.012,
             "+1.7 / +1.2", "3.2"),
    Ablation("no-lrn", ("model.lrn",), lambda c: not c["model"]["lrn"], 0.014, 0.012, "+1.4 / +1.2", "3.3"),
    Ablation("no-overlap", ("model.pool_size", "model.pool_stride"),
             lambda c: c["model"]["pool_size"] <= c["model"]["pool_stride"], 0.004, 0.003, "+0.4 / +0.3", "3.4"),
    Ablation("no-lighting", ("data.lighting_std",), lambda c: c["data"]["lighting_std"] == 0, 0.01, None,
             "> +1 top-1", "4.1"),
    Ablation("no-dropout", ("model.dropout",), lambda c: c["model"]["dropout"] == 0, None, None,
             "overfits substantially (no number)", "4.2"),
    Ablation("no-flip-crop", ("data.flip", "data.random_crop"),
             lambda c: not c["data"]["flip"] and not c["data"]["random_crop"], None, None,
             "overfits substantially (no number)", "4.1"),
)
"""The ablations of ``configs/ablations/`` with the paper's reported differences (top-1 / top-5)."""

IGNORED_KEYS = frozenset({
    "train.name", "train.runs_dir", "train.devices", "train.grouped_when_single_device",
    "train.checkpoint_minutes", "train.keep_last", "train.log_every", "train.channels_last",
    "train.compile", "data.workers", "eval.batch_size", "eval.ten_view",
})
"""Bookkeeping keys that do not change what is trained, left out of the config diff."""


def flatten(cfg: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"model": {"lrn": True}}`` → ``{"model.lrn": True}``."""
    return {f"{s}.{k}": v for s, values in cfg.items() for k, v in values.items()}


def config_diff(run: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ, as ``key -> (baseline value, run value)``, bookkeeping keys left out."""
    a, b = flatten(baseline), flatten(run)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if k not in IGNORED_KEYS and a.get(k) != b.get(k)}


def active_ablations(cfg: dict[str, dict[str, Any]]) -> list[Ablation]:
    return [a for a in ABLATIONS if a.active(cfg)]


def identify(run: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]) -> tuple[list[Ablation], list[str]]:
    """The ablations ``run`` has on top of ``baseline``, and the differing keys no ablation explains."""
    diff = config_diff(run, baseline)
    found = [a for a in active_ablations(run) if not a.active(baseline) and any(k in diff for k in a.keys)]
    explained = {k for a in found for k in a.keys}
    return found, [k for k in diff if k not in explained]


# ------------------------------------------------------------------------------------------- runs
@dataclass
class RunRecord:
    """What one run directory holds, errors as fractions (None where not measured)."""

    path: Path
    config: dict[str, dict[str, Any]]
    epochs: int | None = None
    images_seen: int | None = None
    wall_time_s: float | None = None
    train_top1_err: float | None = None
    centre_top1_err: float | None = None
    centre_top5_err: float | None = None
    ten_view_top1_err: float | None = None
    ten_view_top5_err: float | None = None
    centre_source: str = ""          # "eval.json", "metrics.jsonl" (last epoch's validation) or ""
    eval_centre: tuple[float | None, float | None] | None = None  # eval.json's centre top-1, top-5
    last_val: tuple[float | None, float | None] | None = None     # last epoch's validation top-1, top-5
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text().splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):  # a run still writing its last line: use the finished epochs
                print(f"alexnet compare: {path}:{i}: ignoring an unfinished last line", file=sys.stderr)
                continue
            raise ValueError(f"{path}:{i}: not a JSON object: {e}") from None
    return rows


def _checkpoint_config(run: Path) -> dict[str, dict[str, Any]] | None:
    """The resolved config stored in the run's newest checkpoint (last.pt, else best.pt), if any."""
    for name in ("last.pt", "best.pt"):
        ckpt = run / "checkpoints" / name
        if ckpt.is_file():
            try:
                import torch
                state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
                return config_to_dict(config_from_dict(state["config"], str(ckpt)))
            except Exception as e:  # unreadable or foreign checkpoint: fall back to config.toml
                print(f"alexnet compare: {ckpt}: cannot read its config ({e}); using config.toml", file=sys.stderr)
                return None
    return None


def read_run(path: str | Path) -> RunRecord:
    """Read one run directory (config.toml required; metrics.jsonl and eval.json when present)."""
    path = Path(path)
    cfg_path = path / "config.toml"
    if not cfg_path.is_file():
        raise ValueError(f"{path}: not a run directory (no config.toml)")
    notes = []
    try:
        config = config_to_dict(load_config(cfg_path))
    except ConfigError as e:
        # A run from another version of the config schema: compare what it says over the defaults.
        try:
            raw = tomllib.loads(cfg_path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{cfg_path}: not valid TOML: {err}") from None
        config = config_to_dict(Config())
        for section, values in raw.items():
            if isinstance(values, dict):
                config.setdefault(section, {}).update(values)
        notes.append(f"config read without validation ({e})")
        print(f"alexnet compare: {cfg_path}: read without validation: {e}", file=sys.stderr)
    ckpt_config = _checkpoint_config(path)
    if ckpt_config is not None:
        drift = config_diff(ckpt_config, config)
        if drift:  # config.toml rewritten after training (e.g. a refused resume): trust the weights' own
            keys = ", ".join(drift)
            notes.append(f"config.toml differs from the checkpoint's config in {keys}; using the checkpoint's")
            print(f"alexnet compare: {cfg_path} differs from the config saved in its checkpoint in {keys}; "
                  "using the checkpoint's", file=sys.stderr)
            config = ckpt_config
    run = RunRecord(path=path, config=config, notes=notes)
    metrics_path = path / "metrics.jsonl"
    if metrics_path.is_file():
        rows = _read_metrics(metrics_path)
        if rows:
            last = rows[-1]
            run.epochs = last.get("epoch")
            run.images_seen = last.get("images_seen")
            run.wall_time_s = last.get("wall_time_s")
            run.train_top1_err = last.get("train_top1_err")
            run.last_val = (last.get("val_top1_err"), last.get("val_top5_err"))
            run.centre_top1_err, run.centre_top5_err = run.last_val
            run.centre_source = "metrics.jsonl"
    else:
        run.notes.append("no metrics.jsonl")
    eval_path = path / "eval.json"
    if eval_path.is_file():
        try:
            ev = json.loads(eval_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{eval_path}: not valid JSON: {e}") from None
        centre, ten = ev.get("centre") or {}, ev.get("ten_view") or {}
        if centre:
            run.eval_centre = (centre.get("top1_err"), centre.get("top5_err"))
            run.centre_top1_err, run.centre_top5_err = run.eval_centre
            run.centre_source = "eval.json"
        if ten:
            run.ten_view_top1_err, run.ten_view_top5_err = ten.get("top1_err"), ten.get("top5_err")
    return run


def expand_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories; a folder without config.toml stands for the run directories inside it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ValueError(f"{p}: no such run directory")
        if (p / "config.toml").is_file():
            out.append(p)
            continue
        inner = sorted(c for c in p.iterdir() if (c / "config.toml").is_file()) if p.is_dir() else []
        if not inner:
            raise ValueError(f"{p}: not a run directory (no config.toml) and holds none")
        out += inner
    return out


# ---------------------------------------------------------------------------------------- compare
@dataclass
class Row:
    """One line of the comparison table (errors and differences as fractions)."""

    run: str
    ablation: str
    epochs: int | None
    planned_epochs: int | None
    images_seen: int | None
    wall_time_s: float | None
    train_top1_err: float | None
    centre_top1_err: float | None
    centre_top5_err: float | None
    ten_view_top1_err: float | None
    ten_view_top5_err: float | None
    d_centre_top1: float | None = None
    d_centre_top5: float | None = None
    d_ten_view_top1: float | None = None
    d_ten_view_top5: float | None = None
    paper_d_top1: float | None = None
    paper_d_top5: float | None = None
    paper_claim: str = ""
    other_changes: str = ""
    centre_source: str = ""
    d_centre_source: str = ""


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def find_baseline(runs: Sequence[RunRecord], baseline: str | Path | None = None) -> RunRecord:
    """The run given as ``baseline``, else the one run whose config has none of the ablations."""
    if baseline is not None:
        want = Path(baseline).resolve()
        for r in runs:
            if r.path.resolve() == want:
                return r
        raise ValueError(f"--baseline {baseline}: not among the runs compared")
    clean = [r for r in runs if not active_ablations(r.config)]
    if len(clean) == 1:
        return clean[0]
    if not clean:
        raise ValueError("no baseline: every run has an ablation switched on; name one with --baseline RUN")
    raise ValueError(f"{len(clean)} runs have no ablation ({', '.join(r.name for r in clean)}); "
                     "choose the baseline with --baseline RUN")


def compare_runs(runs: Sequence[RunRecord], baseline: RunRecord) -> list[Row]:
    """The baseline first, then every other run with its differences to the baseline."""
    rows = []
    for run in [baseline] + [r for r in runs if r is not baseline]:
        row = Row(run=run.name, ablation="baseline" if run is baseline else "", epochs=run.epochs,
                  planned_epochs=run.config.get("train", {}).get("epochs"),
                  images_seen=run.images_seen, wall_time_s=run.wall_time_s, train_top1_err=run.train_top1_err,
                  centre_top1_err=run.centre_top1_err, centre_top5_err=run.centre_top5_err,
                  ten_view_top1_err=run.ten_view_top1_err, ten_view_top5_err=run.ten_view_top5_err,
                  centre_source=run.centre_source)
        if run is not baseline:
            found, other = identify(run.config, baseline.config)
            row.ablation = " + ".join(a.name for a in found) or "(other)"
            diff = config_diff(run.config, baseline.config)
            row.other_changes = ", ".join(f"{k}={diff[k][1]!r}" for k in other)
            # Like with like: both runs' evaluated checkpoints, else both runs' last epochs.
            for source, mine, theirs in (("eval.json", run.eval_centre, baseline.eval_centre),
                                         ("metrics.jsonl", run.last_val, baseline.last_val)):
                if mine is not None and theirs is not None:
                    row.d_centre_top1, row.d_centre_top5 = _sub(mine[0], theirs[0]), _sub(mine[1], theirs[1])
                    row.d_centre_source = source
                    break
            row.d_ten_view_top1 = _sub(run.ten_view_top1_err, baseline.ten_view_top1_err)
            row.d_ten_view_top5 = _sub(run.ten_view_top5_err, baseline.ten_view_top5_err)
            if len(found) == 1 and not other:  # the paper's number applies only to a clean single ablation
                row.paper_d_top1, row.paper_d_top5 = found[0].paper_top1, found[0].paper_top5
                row.paper_claim = found[0].paper_claim
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------- output
def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _dpct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.2f}"


def _pair(a: float | None, b: float | None, fmt: Callable[[float | None], str]) -> str:
    return "–" if a is None and b is None else f"{fmt(a)} / {fmt(b)}"


def _duration(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{sec:02d}s"


def to_markdown(rows: Sequence[Row]) -> str:
    """The table in markdown; errors and differences in percentage points."""
    head = ["run", "ablation", "epochs", "images seen", "wall time", "train top-1",
            "top-1 / top-5 centre", "top-1 / top-5 10-view", "Δ centre", "Δ 10-view", "paper Δ"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ablation = r.ablation + (f" (also {r.other_changes})" if r.other_changes else "")
        centre = _pair(r.centre_top1_err, r.centre_top5_err, _pct)
        if r.centre_source == "metrics.jsonl":
            centre += " *"
        epochs = "–" if r.epochs is None else str(r.epochs)
        if r.epochs is not None and r.planned_epochs and r.epochs < r.planned_epochs:
            epochs += f" of {r.planned_epochs}"  # stopped early (interrupted, diverged) or still running
        cells = [r.run, ablation, epochs,
                 "–" if r.images_seen is None else f"{r.images_seen:,}", _duration(r.wall_time_s),
                 _pct(r.train_top1_err), centre, _pair(r.ten_view_top1_err, r.ten_view_top5_err, _pct),
                 _pair(r.d_centre_top1, r.d_centre_top5, _dpct) + (" *" if r.d_centre_source == "metrics.jsonl" else ""),
                 _pair(r.d_ten_view_top1, r.d_ten_view_top5, _dpct), r.paper_claim or "–"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines.append("Errors in %. Δ = the ablation's error minus the baseline's, in points (positive: removing "
                 "the feature hurt, as the paper claims). Train top-1 is the last epoch's, measured with "
                 "augmentation and dropout on.")
    if any("metrics.jsonl" in (r.centre_source, r.d_centre_source) for r in rows):
        lines.append("* the last epoch's validation error from metrics.jsonl (no eval.json for this run or the "
                     "baseline; `alexnet evaluate` gives the chosen checkpoint's error and the 10-view error).")
    return "\n".join(lines)


def to_csv(rows: Sequence[Row]) -> str:
    """Every field of every row; errors and differences as fractions."""
    buf = io.StringIO()
    names = list(Row.__dataclass_fields__)
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in vars(r).items()})
    return buf.getvalue()


def to_json(rows: Sequence[Row]) -> str:
    return json.dumps([vars(r) for r in rows], indent=2)


def compare(paths: Sequence[str | Path], baseline: str | Path | None = None, fmt: str = "markdown") -> str:
    """Read the run directories ``paths`` and return the comparison in ``fmt``
    ('markdown', 'csv' or 'json')."""
    runs = [read_run(p) for p in expand_runs(paths)]
    rows = compare_runs(runs, find_baseline(runs, baseline))
    return {"markdown": to_markdown, "csv": to_csv, "json": to_json}[fmt](rows)
