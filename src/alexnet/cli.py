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
    p.add_argument("--replicas", type=int, default=0, metavar="R",
                   help="also show the gradient bytes all-reduced per step by R data-parallel replicas")


@command("crossings", "list the tensors that cross between the towers and the bytes per image")(_build_crossings)
def _run_crossings(args: argparse.Namespace) -> int:
    from alexnet.config import load_config
    from alexnet.crossings import crossing_report
    cfg = load_config(args.config, args.overrides)
    print(crossing_report(cfg.model, args.batch_size, training=not args.inference,
                          lighting=cfg.data.lighting_std > 0).table())
    if args.replicas:
        from alexnet.crossings import allreduce_table
        print(allreduce_table(cfg.model, args.batch_size, args.replicas))
    return 0


# ---------------------------------------------------------------------------------------- summary
@command("summary", "print the two towers' layers (channels, kernels, strides) and parameter counts")(add_config_args)
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


# ---------------------------------------------------------------------------------------- compare
def _build_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directories (a folder without config.toml stands for the runs inside it)")
    p.add_argument("--baseline", default=None, metavar="RUN",
                   help="the baseline run, or any seed of it (default: the one configuration with none "
                        "of the ablations)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", dest="fmt", action="store_const", const="csv", help="print CSV")
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="print JSON")
    p.set_defaults(fmt="markdown")


@command("compare", "table of finished runs (seeds averaged): errors and each ablation's difference with "
                    "95 % intervals, beside the paper's")(_build_compare)
def _run_compare(args: argparse.Namespace) -> int:
    from alexnet.compare import compare
    print(compare(args.runs, baseline=args.baseline, fmt=args.fmt))
    return 0


# ---------------------------------------------------------------------------------------- figures
def _build_figures(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="dataset root holding train/ and val/ (as data.root)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.pt), or a run directory for its checkpoints/best.pt")
    p.add_argument("--out", default=None,
                   help="output folder for PNGs and TensorBoard images (default: <run>/figures)")
    p.add_argument("--images", type=int, default=8, help="validation images in Figure 4 (left)")
    p.add_argument("--queries", type=int, default=5, help="query images in Figure 4 (right)")
    p.add_argument("--neighbours", type=int, default=6, help="nearest training images per query")
    p.add_argument("--max-train", type=int, default=2000,
                   help="training images searched for neighbours (centre crops; 0 = all)")
    p.add_argument("--device", default="cpu", help="device for both towers, e.g. cuda:0")
    p.add_argument("--seed", type=int, default=0, help="seed choosing the validation images shown")


@command("figures", "write the paper's Figure 3 and Figure 4 (PNG and TensorBoard) from a checkpoint")(_build_figures)
def _run_figures(args: argparse.Namespace) -> int:
    from alexnet.figures import make_figures
    from twogpu.placement import check_device
    device = str(check_device(args.device, "--device"))
    paths = make_figures(args.checkpoint, args.data, out=args.out, n_images=args.images,
                         n_queries=args.queries, n_neighbours=args.neighbours,
                         max_train=args.max_train, device=device, seed=args.seed)
    for path in paths:
        print(path)
    return 0


# ------------------------------------------------------------------------------------------ train
def _build_train(p: argparse.ArgumentParser) -> None:
    add_config_args(p)
    p.add_argument("data", nargs="?", default=None, metavar="DATA",
                   help="dataset root holding train/ and val/ (sets data.root)")
    p.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                   help="continue the run at its exact step: from its newest checkpoint, or from CHECKPOINT")
    p.add_argument("--require-gpus", type=int, default=0, metavar="N",
                   help="exit with an error unless N GPUs are visible (used by `make train-2gpu`)")


@command("train", "train AlexNet (section 5): checkpoints, resume, TensorBoard dashboards in runs/<name>")(_build_train)
def _run_train(args: argparse.Namespace) -> int:
    from alexnet.config import load_config, toml_string
    from alexnet.train import check_config_for_training, require_gpus, train, train_data_parallel
    from twogpu.replicas import launched_by_torchrun
    overrides = list(args.overrides) + ([f"data.root={toml_string(args.data)}"] if args.data else [])
    cfg = load_config(args.config, overrides)
    if args.require_gpus:
        require_gpus(args.require_gpus)
    check_config_for_training(cfg)
    if launched_by_torchrun():  # one replica of a data-parallel run
        return train_data_parallel(cfg, resume=args.resume).exit_code
    return train(cfg, resume=args.resume).exit_code


# --------------------------------------------------------------------------------------- evaluate
def _build_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", nargs="?", default=None, metavar="DATA",
                   help="dataset root holding val/ (train/ is not needed; default: the checkpoint's data.root)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.pt), or a run directory for its checkpoints/best.pt, e.g. runs/<name>")
    p.add_argument("--devices", default="auto", help="'auto', or tower a,tower b, e.g. cuda:0,cuda:1 or cpu,cpu")
    p.add_argument("--no-ten-view", dest="ten_view", action="store_false", default=None,
                   help="only the centre view (skip the 10-view average)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: eval.batch_size)")
    p.add_argument("--limit", type=int, default=None, help="evaluate a fixed subset of this many images")
    p.add_argument("--out", default=None, help="JSON output (default: <run dir>/eval.json)")


@command("evaluate", "top-1 / top-5 error of a checkpoint, centre view and 10 views (section 6)")(_build_evaluate)
def _run_evaluate(args: argparse.Namespace) -> int:
    from alexnet.evaluate import evaluate
    devices = args.devices if args.devices == "auto" else args.devices.split(",")
    evaluate(args.checkpoint, args.data, devices=devices, ten_view=args.ten_view,
             batch_size=args.batch_size, limit=args.limit, out=args.out)
    return 0


# ---------------------------------------------------------------------------------------- predict
def _build_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMG", help="image files, or folders (the images under them)")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (.pt), or a run directory for its checkpoints/best.pt")
    p.add_argument("--ten-view", action="store_true", help="average the ten views instead of the centre view")
    p.add_argument("--device", default="cpu", help="device for both towers, e.g. cuda:0")
    p.add_argument("-k", type=int, default=5, help="labels shown per image")


@command("predict", "the five most probable labels of images, with probabilities (Figure 4, left)")(_build_predict)
def _run_predict(args: argparse.Namespace) -> int:
    from alexnet.predict import format_predictions, predict
    from twogpu.placement import check_device
    device = str(check_device(args.device, "--device"))
    results = predict(args.checkpoint, args.images, k=args.k, ten_view=args.ten_view, device=device)
    print(format_predictions(results))
    return 1 if any(isinstance(r, str) for _, r in results) else 0


# ----------------------------------------------------------------------------------- import-caffe
def _build_import_caffe(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL.caffemodel", help="Caffe's trained AlexNet, e.g. bvlc_alexnet.caffemodel")
    p.add_argument("--mean", default=None, metavar="MEAN.binaryproto",
                   help="Caffe's mean image, e.g. imagenet_mean.binaryproto (stored in the checkpoint)")
    p.add_argument("--out", required=True, metavar="CHECKPOINT", help="checkpoint file (.pt) to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


@command("import-caffe", "convert Caffe's bvlc_alexnet (.caffemodel, mean .binaryproto) into a two-tower checkpoint")(_build_import_caffe)
def _run_import_caffe(args: argparse.Namespace) -> int:
    from alexnet.caffe_import import import_caffe
    from alexnet.console import alexnet_command
    out = import_caffe(args.model, args.out, args.mean, force=args.force)
    print(f"next: {alexnet_command('evaluate', 'DATA', '--checkpoint', str(out))}   "
          f"(DATA with ILSVRC-2012's 1000 wnid folders; only its val/ is read)")
    return 0


# ------------------------------------------------------------------------------- data: stats, prepare, demo
def _build_stats(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", metavar="DATA", help="dataset root (with train/) or a training folder")
    p.add_argument("--out", "-o", default=None, help="output file (default: DATA/stats.pt, where the loader looks)")
    p.add_argument("--sample", type=int, default=0, help="use a seeded random sample of this many images (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--image-size", type=int, default=256, help="preprocessed image side (data.image_size)")
    p.add_argument("--workers", type=int, default=-1, help="decoding processes (-1: one per core)")


@command("stats", "mean image and RGB covariance eigen-decomposition of a training set (sections 2, 4.1)")(_build_stats)
def _run_stats(args: argparse.Namespace) -> int:
    from alexnet.stats import stats_command
    stats_command(args.data, args.out, image_size=args.image_size, sample=args.sample, seed=args.seed,
                  workers=args.workers)
    return 0


def _build_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="folder with the official ILSVRC-2012 files, or (with --resize) any dataset")
    p.add_argument("dst", metavar="DST", help="output dataset root")
    p.add_argument("--resize", type=int, default=0, metavar="N",
                   help="write an N×N copy of SRC (shorter side N, central square) instead; resumable")
    p.add_argument("--val-dir", default=None, help="folder of flat validation images (instead of the val archive)")
    p.add_argument("--val-labels", default=None, help="label file for the flat val images: '<file> <wnid>' lines, "
                   "'<file> <index>', or LOC_val_solution.csv")
    p.add_argument("--devkit", default=None, help="ILSVRC2012_devkit_t12.tar.gz or its extracted folder")
    p.add_argument("--workers", type=int, default=-1, help="processes for --resize (-1: one per core)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality of --resize")


@command("prepare", "ImageNet archives / flat val into train/<wnid>, val/<wnid>; or --resize 256 a copy")(_build_prepare)
def _run_prepare(args: argparse.Namespace) -> int:
    from alexnet.prepare import prepare_imagenet, resize_tree
    if args.resize:
        counts = resize_tree(args.src, args.dst, size=args.resize, workers=args.workers, quality=args.quality)
    else:
        counts = prepare_imagenet(args.src, args.dst, val_dir=args.val_dir, val_labels=args.val_labels,
                                  devkit=args.devkit)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def _build_demo_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="data/demo", help="output dataset root")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=100)
    p.add_argument("--val-per-class", type=int, default=25)
    p.add_argument("--workers", type=int, default=-1, help="processes (-1: one per core)")
    p.add_argument("--no-stats", action="store_true", help="do not compute OUT/stats.pt")


@command("demo-data", "generate the built-in synthetic 10-class dataset (offline, deterministic)")(_build_demo_data)
def _run_demo_data(args: argparse.Namespace) -> int:
    import time
    from alexnet.demo_data import make_demo_data
    start = time.monotonic()
    counts = make_demo_data(args.out, seed=args.seed, train_per_class=args.train_per_class,
                            val_per_class=args.val_per_class, workers=args.workers, stats=not args.no_stats)
    print(f"{counts['classes']} classes, {counts['train']} training and {counts['val']} validation images "
          f"in {args.out} ({time.monotonic() - start:.1f} s)")
    return 0


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix (besides ValueError, which covers ConfigError and DataError);
    looked up only when an exception is being handled."""
    from alexnet.train import TrainError
    from twogpu.checkpoint import CheckpointError
    return (TrainError, CheckpointError)


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
    except (ValueError, *_user_errors()) as e:  # bad data, checkpoint, devices: a message, not a traceback
        print(f"alexnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted", file=sys.stderr)
        return 130
