"""Arguments that several commands share."""

from __future__ import annotations

import argparse


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--config PRESET`` and repeatable ``--set SECTION.KEY=VALUE``."""
    p.add_argument("--config", "-c", default=None, help="TOML preset (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key, e.g. --set optim.lr=0.02 (repeatable)")
