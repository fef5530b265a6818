"""Reading a run directory (docs/training.md, "The run directory"): its resolved config (``config.toml``,
or the config saved in its newest checkpoint when they disagree), the last epoch of
``metrics.jsonl`` and ``eval.json``. Used by ``alexnet compare``."""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet.config import Config, ConfigError, config_from_dict, config_to_dict, load_config

IGNORED_KEYS = frozenset(
    {
        "train.name",
        "train.runs_dir",
        "train.devices",
        "train.grouped_when_single_device",
        "train.checkpoint_minutes",
        "train.keep_last",
        "train.log_every",
        "train.channels_last",
        "train.compile",
        "data.workers",
        "eval.batch_size",
        "eval.ten_view",
    }
)
"""Bookkeeping keys that do not change what is trained, left out of the config diff."""


def flatten(cfg: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"model": {"lrn": True}}`` → ``{"model.lrn": True}``."""
    return {f"{s}.{k}": v for s, values in cfg.items() for k, v in values.items()}


def config_diff(
    run: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]
) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ, as ``key -> (baseline value, run value)``, bookkeeping keys left out."""
    a, b = flatten(baseline), flatten(run)
    return {
        k: (a.get(k), b.get(k))
        for k in sorted(set(a) | set(b))
        if k not in IGNORED_KEYS and a.get(k) != b.get(k)
    }


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
    centre_source: str = ""  # "eval.json", "metrics.jsonl" (last epoch's validation) or ""
    eval_centre: tuple[float | None, float | None] | None = None  # eval.json's centre top-1, top-5
    last_val: tuple[float | None, float | None] | None = None  # last epoch's validation top-1, top-5
    eval_images: int | None = None  # validation images behind eval.json's errors
    last_val_images: int | None = None  # ... behind the last epoch's validation errors
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

                from twogpu.checkpoint import check_format

                state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
                check_format(state, ckpt)
                return config_to_dict(config_from_dict(state["config"], str(ckpt)))
            except Exception as e:  # unreadable or foreign checkpoint: fall back to config.toml
                print(
                    f"alexnet compare: {ckpt}: cannot read its config ({e}); using config.toml",
                    file=sys.stderr,
                )
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
            notes.append(
                f"config.toml differs from the checkpoint's config in {keys}; using the checkpoint's"
            )
            print(
                f"alexnet compare: {cfg_path} differs from the config saved in its checkpoint in {keys}; "
                "using the checkpoint's",
                file=sys.stderr,
            )
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
            run.last_val_images = last.get("val_images")
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
        run.eval_images = ev.get("images")
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
