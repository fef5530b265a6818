"""Which module runs a two-tower model on a device layout (the two towers, or their grouped twin on
one device), and what it takes as input for a batch. Used by training and evaluation alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from alexnet.config import ModelConfig
from alexnet.data.pipeline import Batch, ImagePipeline
from alexnet.models.grouped import grouped_from
from alexnet.models.model import AlexNet
from twogpu import peer_check
from twogpu.placement import TowerDevices, resolve_devices


def checked_devices(devices: Sequence[str] | str, log: Callable[[str], None] | None = None) -> TowerDevices:
    """The towers' devices (:func:`twogpu.placement.resolve_devices`), and, when they are two GPUs,
    the GPU-to-GPU copy guard (:func:`twogpu.peer_check.check_peer_copies`) before any batch: its
    line goes to ``log``; :class:`~twogpu.peer_check.PeerCopyError` (a message naming the cause and
    what to do) when the copies change data, as training checks before its first step."""
    tower_devs = resolve_devices(devices)
    line = peer_check.check_peer_copies(tower_devs.a, tower_devs.b)
    if line and log is not None:
        log(line)
    return tower_devs


def wants_grouped_twin(devices: TowerDevices, cfg: ModelConfig, enabled: bool = True) -> bool:
    """Both towers of a two-tower network on one device: run the grouped twin of
    :mod:`alexnet.models.grouped` instead (the same function, faster there) unless ``enabled`` is False."""
    return enabled and devices.same and cfg.towers == 2


def network_for(model: AlexNet, devices: TowerDevices, enabled: bool = True) -> nn.Module:
    """The module to run for ``model`` placed on ``devices``: its grouped twin on ``devices.a`` (in
    the same train/eval mode) when :func:`wants_grouped_twin`, else ``model`` itself."""
    return grouped_from(model, devices.a) if wants_grouped_twin(devices, model.cfg, enabled) else model


def network_inputs(
    pipe: ImagePipeline,
    batch: Batch,
    model: nn.Module,
    devices: TowerDevices,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, ...]:
    """What ``model`` takes for ``batch``: the two towers on two devices get each tower's own copy,
    normalised there from the uint8 batch (:meth:`ImagePipeline.to_tower_inputs`); any other network
    one tensor on tower a's device. Always a tuple (one or two tensors)."""
    if isinstance(model, AlexNet) and model.b is not None and not devices.same:
        return pipe.to_tower_inputs(batch, devices.pair, train=train, generator=generator)
    return (pipe.to_model_input(batch, devices.a, train=train, generator=generator),)
