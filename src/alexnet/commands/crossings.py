"""``alexnet crossings``: list the tensors that cross between the towers and the bytes per image."""

from __future__ import annotations

import argparse

from alexnet.commands._args import add_config_args, whole_number

# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument(
        "--batch-size",
        type=whole_number(1),
        default=128,
        metavar="N",
        help="images per step (the paper's 128), for the bytes per step",
    )
    p.add_argument("--inference", action="store_true", help="count the forward pass only")
    p.add_argument(
        "--replicas",
        type=whole_number(0),
        default=0,
        metavar="R",
        help="also show the gradient bytes all-reduced per step by R data-parallel replicas (0: do not)",
    )


def run(args: argparse.Namespace) -> int:
    from alexnet.config import load_config
    from alexnet.models.crossings import crossing_report

    cfg = load_config(args.config, args.overrides)
    print(
        crossing_report(
            cfg.model, args.batch_size, training=not args.inference, lighting=cfg.data.lighting_std > 0
        ).table()
    )
    if args.replicas:
        from alexnet.models.crossings import allreduce_table

        print(allreduce_table(cfg.model, args.batch_size, args.replicas))
    return 0
