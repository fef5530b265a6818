"""DataLoader worker processes: one intra-op thread each, PIL's per-file warnings silenced, and (on
Linux) ended by the kernel when the process that started them ends."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

import torch

from alexnet.data.images import quiet_pil_warnings


def worker_init(_worker_id: int, parent: int | None = None) -> None:
    """``worker_init_fn`` of the loaders; ``parent`` (the loader's pid) arms :func:`die_with_parent`."""
    torch.set_num_threads(1)
    quiet_pil_warnings()
    if parent is not None:
        die_with_parent(parent)


def die_with_parent(parent: int) -> bool:
    """Linux: ask the kernel to SIGKILL this process when ``parent`` (the process that started it)
    ends; exit at once if it has already gone. True if armed.

    Loader workers inherit the trainer's SIGTERM/SIGINT handler, which ignores signals in forked
    children (a terminal's Ctrl-C or ``timeout`` reaches the whole process group, and only the main
    process decides when to stop), so the loader's own ``terminate()`` cannot end a worker stuck in a
    read. With this, such a worker still ends with the run, however the run ends (even SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent ended before the request was made
        os._exit(0)
    return True
