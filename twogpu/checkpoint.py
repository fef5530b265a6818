"""Checkpoints that survive crashes: atomic writes, the last K kept plus the best, safe loading.

A checkpoint is written to a temporary file in the same folder, flushed and fsync'ed, then renamed
over its final name (``os.replace`` is atomic on POSIX), so a run killed mid-write never leaves a
half-written ``step-*.pt`` or ``last.pt`` behind. ``last.pt`` and ``best.pt`` are hard links to (or,
where links are not possible, copies of) a step file, never symbolic links. Loading always uses
``torch.load(..., weights_only=True)``: a checkpoint holds tensors and plain Python values only.

Every checkpoint carries ``format`` (:data:`FORMAT`), the version of its layout: the trainer's keys
and the task's. A checkpoint of another format, or of none, is refused with a message naming both.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

STEP_PATTERN = re.compile(r"^step-(\d{8,})\.pt$")

FORMAT = 1
"""The layout of the checkpoints this version writes and reads; raise it with any incompatible change
of the saved keys (the trainer's, or a task's such as the two-tower weights' names or the config)."""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or not a checkpoint; the message names the file."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def _link_atomic(source: Path, target: Path) -> None:
    """Make ``target`` a hard link to (or a copy of) ``source``, replacing it atomically."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` as a checkpoint of :data:`FORMAT` to ``path`` atomically (:func:`save_atomic`)."""
    return save_atomic({**state, "format": FORMAT}, path)


def check_format(state: dict[str, Any], source: str | Path) -> None:
    """A :class:`CheckpointError` unless ``state`` is a checkpoint of :data:`FORMAT`."""
    if "format" not in state and "step" not in state:
        raise CheckpointError(
            f"{source} is not a checkpoint (no 'format' or 'step' key; it holds {sorted(state)[:6]})"
        )
    found = state.get("format", 0)
    if found != FORMAT:
        unnumbered = " (no format number)" if "format" not in state else ""
        raise CheckpointError(
            f"checkpoint {source} has format {found}{unnumbered}, this version reads format {FORMAT}: "
            f"it was written by another version of alexnet; use that version, or train or import it again"
        )


class UnreadableCheckpoint(CheckpointError):
    """``torch.load(weights_only=True)`` could not read the file: cut short, corrupt, not written by
    ``torch.save``, or holding pickled objects that are never loaded."""


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; any failure, a checkpoint of another format
    included, is a :class:`CheckpointError` naming the file and saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(
            f"checkpoint {path} is empty (0 bytes): the write was interrupted or the disk is full"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise UnreadableCheckpoint(
            f"cannot read checkpoint {path} ({size:,} bytes): it is truncated or corrupt "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            f"Use an older file from {path.parent} instead."
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} is not a training checkpoint (expected a dict, got {type(state).__name__})"
        )
    check_format(state, path)
    return state


class CheckpointDir:
    """``<run>/checkpoints/``: ``step-XXXXXXXX.pt`` (the last ``keep_last``), ``last.pt``, ``best.pt``."""

    def __init__(self, folder: str | Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        self.folder = Path(folder)
        self.keep_last = keep_last

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    def step_files(self) -> list[Path]:
        """Step checkpoints, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := STEP_PATTERN.match(p.name))]
        return [p for _, p in sorted(found)]

    def save(self, state: dict[str, Any], step: int, *, is_best: bool = False) -> Path:
        """Write ``step-<step>.pt`` atomically, point ``last.pt`` (and ``best.pt`` if ``is_best``) at
        it, then delete step files beyond the newest ``keep_last``."""
        path = save_checkpoint(state, self.folder / f"step-{step:08d}.pt")
        _link_atomic(path, self.last)
        if is_best:
            _link_atomic(path, self.best)
        for old in self.step_files()[: -self.keep_last]:
            old.unlink()
        return path

    def set_aside_after(self, step: int) -> list[Path]:
        """Move step files newer than ``step`` into ``abandoned-<time>/`` (a run resumed from an older
        checkpoint would otherwise delete its own new files as 'older' than those); returns the moved."""
        newer = [p for p in self.step_files() if int(STEP_PATTERN.match(p.name).group(1)) > step]
        if not newer:
            return []
        import time

        target = self.folder / f"abandoned-{time.strftime('%Y%m%d-%H%M%S')}"
        target.mkdir(exist_ok=True)
        moved = []
        for p in newer:
            os.replace(p, target / p.name)
            moved.append(target / p.name)
        return moved

    def latest_loadable(self, map_location: Any = "cpu") -> tuple[Path, dict[str, Any]] | None:
        """The newest checkpoint that reads back: ``last.pt``, else step files newest first. Corrupt
        files are reported (logged as warnings) and skipped; None when there is no checkpoint at all."""
        candidates = [self.last] + self.step_files()[::-1]
        errors = []
        for path in candidates:
            if not path.exists():
                continue
            try:
                return path, load_checkpoint(path, map_location)
            except CheckpointError as e:
                errors.append(str(e))
                log.warning("warning: %s", e)
        if errors:
            raise CheckpointError(
                "no readable checkpoint in " + str(self.folder) + ":\n  " + "\n  ".join(errors)
            )
        return None
