"""Where the two towers live: resolving a device request, and feeding the input to both towers.

Krizhevsky et al. (2012), section 3.2: "puts half of the kernels (or neurons) on each GPU". Tower a
lives on ``devices[0]`` (the paper's GPU 0), tower b on ``devices[1]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from twogpu.exchange import record_transfer


@dataclass(frozen=True)
class TowerDevices:
    """The devices of towers a and b, and a sentence explaining how they were chosen."""

    a: torch.device
    """Device of tower a (the paper's GPU 0); the logits and the loss live here."""
    b: torch.device
    """Device of tower b (the paper's GPU 1)."""
    reason: str
    """Human-readable explanation, printed at the start of a run."""

    @property
    def pair(self) -> tuple[torch.device, torch.device]:
        return (self.a, self.b)

    @property
    def same(self) -> bool:
        """True when both towers share one device (the grouped single-device twin can then be used)."""
        return self.a == self.b


def visible_gpus() -> int:
    """CUDA devices visible to this process (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def require_gpus(n: int, what: str = "this run", hint: str = "") -> None:
    """A ``ValueError`` in one line unless ``n`` GPUs are visible (checked before any work starts)."""
    found = visible_gpus()
    if found < n:
        raise ValueError(
            f"{what} needs {n} GPUs, but {found} CUDA device(s) are visible." + (f" {hint}" if hint else "")
        )


def check_device(request: str | torch.device, name: str = "device") -> torch.device:
    """``request`` as a device that exists here, or a ``ValueError`` in one line naming ``name``
    (e.g. ``--device``): a CUDA device without CUDA, past the visible GPUs, or not a device name."""
    try:
        dev = torch.device(request)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"{name}: {request!r} is not a device name (e.g. 'cpu', 'cuda:0'): {e}") from None
    _check_device(dev, name)
    return dev


def _check_device(dev: torch.device, name: str) -> None:
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{name}: '{dev}' was requested but CUDA is not available on this machine")
        index = dev.index if dev.index is not None else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}: '{dev}' was requested but only {torch.cuda.device_count()} CUDA device(s) "
                f"are visible"
            )


def check_devices(devices: Sequence[str | torch.device]) -> tuple[torch.device, torch.device]:
    """Towers a's and b's devices, each one that exists here, or a ``ValueError`` in one line naming
    the tower whose device does not (e.g. ``cuda:1`` on a machine without CUDA)."""
    if isinstance(devices, (str, torch.device)) or len(devices) != 2:
        raise ValueError(f"devices: expected two devices (tower a, tower b), got {devices!r}")
    return check_device(devices[0], "devices[0] (tower a)"), check_device(devices[1], "devices[1] (tower b)")


def resolve_devices(request: str | Sequence[str], *, offset: int = 0) -> TowerDevices:
    """Turn a device request into the two towers' devices.

    ``request`` is ``"auto"`` (two GPUs if present, else one GPU for both towers, else the CPU),
    ``"single"`` (one GPU for both towers if present, else the CPU: whatever the number of GPUs) or a
    pair such as ``["cuda:0", "cuda:1"]``, ``["cuda:0", "cuda:0"]`` or ``["cpu", "cpu"]``. ``offset``
    shifts the GPUs chosen by ``"auto"`` (a data-parallel replica r uses ``offset = 2r``).
    """
    if isinstance(request, str):
        if request not in ("auto", "single"):
            raise ValueError(
                f"devices: expected 'auto', 'single' or a pair like ['cuda:0', 'cuda:1'], got {request!r}"
            )
        gpus = visible_gpus()
        if request == "single" and gpus:
            a = torch.device(f"cuda:{min(offset, gpus - 1)}")
            return TowerDevices(a, a, f"single: both towers on {a} ({gpus} GPU(s) visible)")
        if request == "single":
            cpu = torch.device("cpu")
            return TowerDevices(cpu, cpu, "single: no GPU found, both towers on the CPU")
        if gpus >= offset + 2:
            a, b = torch.device(f"cuda:{offset}"), torch.device(f"cuda:{offset + 1}")
            return TowerDevices(
                a, b, f"auto: two GPUs found, tower a on {a}, tower b on {b} (as in the paper)"
            )
        if gpus >= 1:
            a = torch.device(f"cuda:{min(offset, gpus - 1)}")
            return TowerDevices(a, a, f"auto: {gpus} GPU(s) visible, both towers on {a}")
        cpu = torch.device("cpu")
        return TowerDevices(cpu, cpu, "auto: no GPU found, both towers on the CPU")
    a, b = check_devices(request)
    return TowerDevices(a, b, f"tower a on {a}, tower b on {b}")


def feed(x: torch.Tensor, devices: tuple[torch.device, torch.device]) -> tuple[torch.Tensor, torch.Tensor]:
    """Give both towers the whole tensor ``x`` (section 3.2: each GPU sees every image): ``x`` goes
    to each tower's device (from the host, or from tower a's device to tower b). Recorded as site
    ``"feed"``, one record per tower (inside :func:`twogpu.record_crossings`), whatever the
    placement, as crossings are; on one device the tensor is sent once and shared."""
    source = "a" if x.device == devices[0] else "host" if x.device.type == "cpu" else "?"
    out = []
    for tower, dev in zip(("a", "b"), devices):
        if not (source == "a" and tower == "a"):
            record_transfer(x, site="feed", source=source, target=tower)
        out.append(out[0] if out and dev == devices[0] else x.to(dev, non_blocking=dev.type == "cuda"))
    return out[0], out[1]
