"""What the commands write on the terminal besides log lines: a dependency-free progress bar."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "img",
             every_s: float = 0.5, stream=None) -> Iterator[T]:
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
