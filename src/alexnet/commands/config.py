"""``alexnet config``: print the resolved configuration (or explain every key)."""

from __future__ import annotations

import argparse

from alexnet.commands._args import add_config_args

# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--explain", action="store_true", help="list every key with its default and meaning")


def run(args: argparse.Namespace) -> int:
    from alexnet.config import config_to_toml, explain, load_config

    if args.explain:
        print(explain())
        return 0
    print(config_to_toml(load_config(args.config, args.overrides)))
    return 0
