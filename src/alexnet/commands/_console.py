"""What the commands show on the terminal: a dependency-free progress bar, and the library's log
records as plain lines on stderr."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
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


class _Plain(logging.Handler):
    """Writes a record's message alone, one line to stderr (whatever ``sys.stderr`` is at the time)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never end a command
            self.handleError(record)


def show_library_logs(level: int = logging.INFO) -> None:
    """Show what the library logs (``alexnet.*``, ``twogpu.*``: warnings such as skipped images or a
    missing statistics file) on stderr, plainly, from ``level`` up. Other packages' loggers are left
    as they are. Idempotent."""
    for name in ("alexnet", "twogpu"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(h, _Plain) for h in logger.handlers):
            logger.addHandler(_Plain())
