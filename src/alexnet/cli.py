"""The ``alexnet`` command line. Each sub-command parses its own arguments and calls one function
of the module that owns the concern; this file holds only the wiring."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from alexnet.config import ConfigError

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str):
    """Register ``run(args) -> exit code`` with an argument builder ``build(parser)``."""
    def wrap(build: Callable[[argparse.ArgumentParser], None]):
        def register(run: Callable[[argparse.Namespace], int]):
            COMMANDS[name] = (help, build, run)
            return run
        return register
    return wrap


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", default=None, help="TOML preset (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config key, e.g. --set optim.lr=0.02 (repeatable)")


# ----------------------------------------------------------------------------------------- config
def _build_config(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--explain", action="store_true", help="list every key with its default and meaning")


@command("config", "print the resolved configuration (or explain every key)")(_build_config)
def _run_config(args: argparse.Namespace) -> int:
    from alexnet.config import config_to_toml, explain, load_config
    if args.explain:
        print(explain())
        return 0
    print(config_to_toml(load_config(args.config, args.overrides)))
    return 0


# -------------------------------------------------------------------------------------- crossings
def _build_crossings(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--inference", action="store_true", help="count the forward pass only")


@command("crossings", "list the tensors that cross between the towers and the bytes per image")(_build_crossings)
def _run_crossings(args: argparse.Namespace) -> int:
    from alexnet.config import load_config
    from alexnet.crossings import crossing_report
    cfg = load_config(args.config, args.overrides)
    print(crossing_report(cfg.model, args.batch_size, training=not args.inference).table())
    return 0


# ---------------------------------------------------------------------------------------- summary
@command("summary", "print the two towers layer by layer with shapes and parameter counts")(add_config_args)
def _run_summary(args: argparse.Namespace) -> int:
    from alexnet.config import load_config
    from alexnet.model import AlexNet
    cfg = load_config(args.config, args.overrides)
    model = AlexNet(devices=("meta", "meta"), preset=cfg.model)
    print(model)
    total = sum(p.numel() for p in model.parameters())
    for tower, name in zip(model.towers(), "ab"):
        print(f"tower {name}: {sum(p.numel() for p in tower.parameters()):,} parameters")
    print(f"total: {total:,} parameters")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alexnet", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, build, _run) in COMMANDS.items():
        build(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _help, _build, run = COMMANDS[args.command]
    try:
        return run(args)
    except ConfigError as e:
        print(f"alexnet {args.command}: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted", file=sys.stderr)
        return 130
