"""Arguments that several commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable


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


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for a count, size or limit: a whole number ``>= minimum``; anything else is
    refused by the parser (exit 2, one line naming the argument)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse
