"""The ``alexnet`` command line: one table of commands. Each command is a module of
:mod:`alexnet.commands` with ``add_args(parser)`` and ``run(args) -> exit code``; only the module of
the command being run is imported."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

import alexnet

DESCRIPTION = (
    "AlexNet as published (Krizhevsky, Sutskever & Hinton, NIPS 2012): two column towers on two "
    "devices. `alexnet COMMAND --help` for a command's options."
)

#: name -> (module under alexnet.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "train",
        "train AlexNet (section 5): checkpoints, resume, TensorBoard dashboards in runs/<name>",
    ),
    "evaluate": ("evaluate", "top-1 / top-5 error of a checkpoint, centre view and 10 views (section 6)"),
    "predict": ("predict", "the five most probable labels of images, with probabilities (Figure 4, left)"),
    "figures": ("figures", "write the paper's Figure 3 and Figure 4 (PNG and TensorBoard) from a checkpoint"),
    "compare": (
        "compare",
        "table of finished runs (seeds averaged): errors and each ablation's difference "
        "with 95 % intervals, beside the paper's",
    ),
    "config": ("config", "print the resolved configuration (or explain every key)"),
    "summary": ("summary", "print the two towers' layers (channels, kernels, strides) and parameter counts"),
    "crossings": ("crossings", "list the tensors that cross between the towers and the bytes per image"),
    "demo-data": ("demo_data", "generate the built-in synthetic 10-class dataset (offline, deterministic)"),
    "prepare": (
        "prepare",
        "ImageNet archives / flat val into train/<wnid>, val/<wnid>; or --resize 256 a copy",
    ),
    "stats": (
        "stats",
        "mean image and RGB covariance eigen-decomposition of a training set (sections 2, 4.1)",
    ),
    "import-caffe": (
        "import_caffe",
        "convert Caffe's bvlc_alexnet (.caffemodel, mean .binaryproto) into a two-tower checkpoint",
    ),
}


def _module(name: str):
    return importlib.import_module(f"alexnet.commands.{COMMANDS[name][0]}")


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``alexnet evaluate: error: argument --limit: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, unless there is none to show (None, off, empty) or
    the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        nothing = action.default is None or action.default is False or action.default == []
        if nothing or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the arguments of ``command`` only (every command when None), so that
    ``alexnet --help`` imports no command."""
    parser = _Parser(prog="alexnet", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"alexnet {alexnet.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_mod, help_text) in COMMANDS.items():
        text = help_text.replace("%", "%%")  # argparse formats help with %
        p = sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)
        if command in (None, name):
            _module(name).add_args(p)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix (besides ValueError, which covers ConfigError and DataError);
    looked up only when an exception is being handled."""
    from alexnet.training.train import TrainError
    from twogpu.checkpoint import CheckpointError
    from twogpu.peer_check import PeerCopyError

    return (TrainError, CheckpointError, PeerCopyError)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from alexnet.commands._console import show_library_logs

    show_library_logs()  # the library logs; the command's terminal shows it
    try:
        return _module(args.command).run(args)
    except ValueError as e:  # ConfigError, DataError, bad devices: a message, not a traceback
        kind = "config error" if type(e).__name__ == "ConfigError" else "error"
        print(f"alexnet {args.command}: {kind}: {e}", file=sys.stderr)
        return 2
    except _user_errors() as e:
        print(f"alexnet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"alexnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `alexnet config | head`: the reader left; stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
