"""``alexnet summary``: print the two towers' layers (channels, kernels, strides) and parameter counts."""

from __future__ import annotations

import argparse

from alexnet.commands._args import add_config_args

# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p)


def run(args: argparse.Namespace) -> int:
    from alexnet.config import load_config
    from alexnet.models.model import AlexNet

    cfg = load_config(args.config, args.overrides)
    model = AlexNet(devices=("meta", "meta"), preset=cfg.model)
    print(model)
    total = sum(p.numel() for p in model.parameters())
    for tower, name in zip(model.towers(), "ab"):
        print(f"tower {name}: {sum(p.numel() for p in tower.parameters()):,} parameters")
    print(f"total: {total:,} parameters")
    return 0
