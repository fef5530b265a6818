"""The spelling of a suggested ``alexnet`` command in messages (errors, the end of a run)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def alexnet_command(*args: str) -> str:
    """``alexnet ARGS`` as it can be typed in a fresh shell in the current folder, where the virtual
    environment need not be active: this installation's ``alexnet`` script by its path (e.g.
    ``.venv/bin/alexnet``, relative when it lies below the current folder), or, without the
    script, ``<this python> -m alexnet``."""
    python = Path(sys.executable)
    script = python.parent / "alexnet"
    exe = script if script.is_file() else python
    try:
        shown = str(exe.relative_to(Path.cwd()))
    except ValueError:
        shown = str(exe)
    head = [shown] if exe == script else [shown, "-m", "alexnet"]
    return shlex.join([*head, *args])
