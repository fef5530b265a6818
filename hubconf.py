"""torch.hub entry point: build the two-tower AlexNet from a local clone, optionally with a checkpoint.

    import torch
    model = torch.hub.load("/path/to/clone", "alexnet", source="local",
                           checkpoint="bvlc_alexnet.pt", devices=("cuda:0", "cuda:1"))

Nothing is downloaded: weights come only from a checkpoint file you name (one written by
``alexnet train`` or ``alexnet import-caffe``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

dependencies = ["torch", "numpy"]

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "src")
if _SRC not in sys.path:  # a clone that was not pip-installed: its package lives in src/
    sys.path.insert(0, _SRC)


def alexnet(
    preset: str | None = None,
    devices: Sequence[str] | str = ("cpu", "cpu"),
    checkpoint: str | None = None,
    num_classes: int | None = None,
    twin: bool = False,
    **overrides: Any,
):
    """AlexNet's two towers (Krizhevsky et al. 2012, Figure 2) on ``devices`` (tower a, tower b;
    ``"auto"``: two GPUs, else one, else the CPU).

    Without ``checkpoint``: freshly initialised weights (section 5) of model preset ``preset``
    (``"paper"``, ``"cuda-convnet"`` or ``"caffe"``; default ``"paper"``), with ``num_classes`` and
    single ``overrides`` (e.g. ``lrn=False``). With ``checkpoint``: the checkpoint's preset,
    classes and weights, in eval mode; ``preset``, if given, must match. ``twin=True`` returns the
    grouped single-device twin (``alexnet.GroupedAlexNet``) on tower a's device instead.
    """
    from alexnet.models.grouped import grouped_from
    from alexnet.models.model import AlexNet
    from twogpu.placement import resolve_devices

    pair = resolve_devices(list(devices) if not isinstance(devices, str) else devices).pair
    if checkpoint is None:
        model = AlexNet(num_classes=num_classes, devices=pair, preset=preset or "paper", **overrides)
    else:
        from alexnet.evaluation.checkpoints import load_model

        if num_classes is not None or overrides:
            raise ValueError("num_classes and model overrides cannot change a checkpoint's network")
        model, cfg = load_model(checkpoint, devices=pair)
        if preset is not None and preset != cfg.model.preset:
            raise ValueError(f"{checkpoint} holds a {cfg.model.preset!r} model, not {preset!r}")
    return grouped_from(model, pair[0]) if twin else model
