"""Arguments that several commands share, and the argparse types that check numbers and devices
before a command starts (a bad value: exit 2, one line naming the argument)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

ONE_PER_CORE = -1
"""``--workers -1``: one process per CPU core."""


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--config PRESET`` and repeatable ``--set SECTION.KEY=VALUE``."""
    p.add_argument("--config", "-c", default=None, help="TOML preset (see configs/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key, e.g. --set optim.lr=0.02 (repeatable)",
    )


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for a count, size, limit or seed: a whole number ``>= minimum`` (and
    ``<= maximum`` when given); anything else is refused by the parser (exit 2, one line naming the
    argument)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def workers(text: str) -> int:
    """An argparse ``type`` for ``--workers``: ``-1`` (one process per core, the default), ``0`` (no
    extra process: the work runs in the command's own) or a number of processes."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < ONE_PER_CORE:
        raise argparse.ArgumentTypeError(f"expected -1 (one per core) or a number >= 0, got {value}")
    return value


def add_workers_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--workers N`` (``what``: the work the processes do)."""
    p.add_argument(
        "--workers",
        type=workers,
        default=ONE_PER_CORE,
        metavar="N",
        help=f"processes {what} (-1: one per core; 0: none, in this process)",
    )


def device_request(text: str) -> str | list[str]:
    """``--devices``, as ``evaluate`` and ``figures`` take it: ``auto``, ``single``, ``A,B`` (tower a's
    device, tower b's) or one device for both towers; the request for
    :func:`twogpu.placement.resolve_devices`, which checks that the devices exist here."""
    text = text.strip()
    if text in ("auto", "single"):
        return text
    names = [name.strip() for name in text.split(",")]
    if len(names) == 1:
        names *= 2
    if len(names) != 2 or not all(names):
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'single', one device or two separated by a comma (e.g. cuda:0,cuda:1), "
            f"got {text!r}"
        )
    return names
