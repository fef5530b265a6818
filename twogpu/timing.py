"""Timing training steps without making the host wait: per-tower step times from CUDA events (read
when the loop synchronises anyway, every ``log_every`` steps), host clocks for a tower on the CPU,
and durations written for people."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch


def format_duration(seconds: float) -> str:
    """``"3m07s"``, ``"2h05m"``, ``"1d04h"``; ``"?"`` for an unknown (non-finite) duration."""
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s"


class TowerTimer:
    """Seconds each tower's device spends on each step, summed over a window of steps.

    On a CUDA device an event is recorded on the current stream at the start and at the end of the
    step (no host wait); :meth:`collect` reads the elapsed times once the events have completed. On
    the CPU, where the step runs synchronously, the host clock from the start of the step to its end.
    """

    def __init__(self, devices: Sequence[torch.device]) -> None:
        self.devices = list(devices)
        self._pending: list[list[tuple[object, object] | float]] = []
        self._open: list[object] = []
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._open = []
        for dev in self.devices:
            if dev.type == "cuda":
                ev = torch.cuda.Event(enable_timing=True)
                ev.record(torch.cuda.current_stream(dev))
                self._open.append(ev)
            else:
                self._open.append(None)

    def stop(self) -> None:
        now = time.perf_counter()
        row: list[tuple[object, object] | float] = []
        for dev, begin in zip(self.devices, self._open):
            if dev.type == "cuda":
                end = torch.cuda.Event(enable_timing=True)
                end.record(torch.cuda.current_stream(dev))
                row.append((begin, end))
            else:
                row.append(now - self._t0)
        self._pending.append(row)

    def collect(self) -> list[float]:
        """Per device, the seconds summed over the steps since the last call (waits for their events)."""
        totals = [0.0] * len(self.devices)
        for row in self._pending:
            for i, item in enumerate(row):
                if isinstance(item, tuple):
                    begin, end = item
                    end.synchronize()
                    totals[i] += begin.elapsed_time(end) / 1000.0
                else:
                    totals[i] += item
        self._pending = []
        return totals
