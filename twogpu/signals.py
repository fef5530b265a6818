"""Stopping a run cleanly on SIGINT / SIGTERM: the signal sets a flag that the training loop reads
between steps (finish the step, write a checkpoint, exit); a second signal stops at once."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator


class StopRequest:
    """Whether a stop was asked for (by a signal or by :meth:`request`), and by which signal."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce: Callable[[str], None] | None = None) -> None:
        self.signum: int | None = None
        self._announce = announce
        self._first_at = 0.0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Ask the loop to stop after the current step, as a signal would."""
        self.signum = signum

    def _handler(self, pid: int):
        def handle(signum, frame):  # noqa: ARG001
            if os.getpid() != pid:
                # a forked data-loader worker inherited this handler: ignore the signal (a terminal's
                # Ctrl-C or `timeout` signals the whole process group); the main process stops it
                return
            if self.requested:
                # a second signal stops at once, unless it is the same event delivered twice
                # (to the process and to its group) within a second
                if time.monotonic() - self._first_at > 1.0:
                    signal.signal(signum, signal.SIG_DFL)
                    raise KeyboardInterrupt
                return
            self._first_at = time.monotonic()
            self.request(signum)
            if self._announce is not None:
                self._announce(
                    f"\n{signal.Signals(signum).name} received: finishing this step, then writing a "
                    f"checkpoint (send it again to stop at once, without one)"
                )

        return handle

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Handle SIGINT and SIGTERM inside the block (main thread only; elsewhere a no-op), and put
        the previous handlers back after it."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        handler = self._handler(os.getpid())
        previous = {sig: signal.signal(sig, handler) for sig in self.SIGNALS}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
