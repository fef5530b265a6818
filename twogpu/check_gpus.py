"""``python -m twogpu.check_gpus N [--what TEXT] [--hint TEXT]``: exit 2 with one line unless N GPUs
are visible. Launchers run it before starting N processes that would each fail with the same message
(``make train-2gpu NPROC=R`` checks for 2R GPUs before ``torchrun``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from twogpu.placement import require_gpus


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m twogpu.check_gpus", description=__doc__.splitlines()[0])
    ap.add_argument("gpus", type=int, metavar="N", help="GPUs needed")
    ap.add_argument("--what", default="this run", help="what needs them, for the message")
    ap.add_argument("--hint", default="", help="appended to the message")
    args = ap.parse_args(argv)
    try:
        require_gpus(args.gpus, args.what, args.hint)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
