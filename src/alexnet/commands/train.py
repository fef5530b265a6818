"""``alexnet train``: train AlexNet (section 5): checkpoints, resume, TensorBoard dashboards in
runs/<name>."""

from __future__ import annotations

import argparse

from alexnet.commands._args import add_config_args, whole_number

# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument(
        "data",
        nargs="?",
        default=None,
        metavar="DATA",
        help="dataset root holding train/ and val/ (sets data.root)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CHECKPOINT",
        help="continue the run at its exact step: from its newest checkpoint, or from CHECKPOINT",
    )
    p.add_argument(
        "--require-gpus",
        type=whole_number(0),
        default=0,
        metavar="N",
        help="exit with an error unless N GPUs are visible (0: no check; used by `make train-2gpu`)",
    )


def run(args: argparse.Namespace) -> int:
    from alexnet.config import load_config, toml_string
    from alexnet.training.train import check_config_for_training, require_gpus, train, train_data_parallel
    from twogpu.replicas import launched_by_torchrun

    overrides = list(args.overrides) + ([f"data.root={toml_string(args.data)}"] if args.data else [])
    cfg = load_config(args.config, overrides)
    if args.require_gpus:
        require_gpus(args.require_gpus)
    check_config_for_training(cfg)
    if launched_by_torchrun():  # one replica of a data-parallel run
        return train_data_parallel(cfg, resume=args.resume).exit_code
    return train(cfg, resume=args.resume).exit_code
