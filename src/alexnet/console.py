"""What the commands write on the terminal: a dependency-free progress bar, whole lines, and the
commands they suggest, spelled so that they work as typed."""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def progress(
    items: Iterable[T],
    total: int | None = None,
    desc: str = "",
    unit: str = "img",
    every_s: float = 0.5,
    stream=None,
) -> Iterator[T]:
    """A dependency-free progress bar on stderr (a line every 10 s when stderr is not a terminal)."""
    stream = stream or sys.stderr
    tty = hasattr(stream, "isatty") and stream.isatty()
    every = every_s if tty else 10.0
    start = last = time.monotonic()
    done = 0

    def show(final: bool = False) -> None:
        elapsed = max(time.monotonic() - start, 1e-9)
        rate = done / elapsed
        frac = f" {100 * done / total:5.1f}%" if total else ""
        eta = f" eta {int((total - done) / rate) if rate > 0 else 0}s" if total and not final else ""
        line = f"{desc} {done}/{total or '?'}{frac} {rate:.1f} {unit}/s{eta} {elapsed:.0f}s"
        stream.write(("\r" + line.ljust(70)) if tty else line + "\n")
        if final and tty:
            stream.write("\n")
        stream.flush()

    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every:
            last = now
            show()
    show(final=True)


def say(line: str) -> None:
    """Print one line to stdout in a single write, so lines of concurrent processes (data-parallel
    replicas sharing a terminal) never run together."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


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
