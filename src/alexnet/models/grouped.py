"""The single-device twin: the same network written with grouped convolutions (``groups=2``).

Before cuDNN had grouped convolutions, "two towers" needed two GPUs; today one device runs the
same math as one stack of layers, which is faster there and gives a second implementation to test
the two-tower model against. Weights convert both ways (:func:`to_grouped_state`,
:func:`to_two_tower_state`); checkpoints always use the two-tower layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.config import ModelConfig
from alexnet.models.layers import Dropout, LocalResponseNorm, SpatialResponseNorm
from alexnet.models.linear import Linear
from alexnet.models.model import (
    PAPER_WIDTHS,
    AlexNet,
    check_input,
    conv1_pad,
    fc8_split,
    input_shape,
    pool5_side,
    resolve_model_config,
)
from alexnet.models.pooling import MaxPool, norm_then_pool

# Layers whose two towers are stacked along the output dimension in the twin.
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


class GroupedAlexNet(nn.Module):
    """AlexNet on one device: conv2, conv4, conv5 with ``groups=2`` (each half sees one tower's
    maps), LRN windows kept inside each tower's half (over all channels with
    ``lrn_across_towers``), fc layers full. Channel order is ``[tower a, tower b]`` everywhere,
    matching :class:`alexnet.models.model.AlexNet`; for a ``seed`` the initial weights are the two-tower
    model's."""

    def __init__(
        self,
        num_classes: int | None = None,
        device: str | torch.device = "cpu",
        preset: str | ModelConfig = "paper",
        seed: int | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        cfg = resolve_model_config(preset, num_classes, overrides)
        if cfg.towers != 2:
            raise ValueError("the grouped twin exists only for the two-tower network (model.towers = 2)")
        self.cfg = cfg
        w = PAPER_WIDTHS
        side5 = pool5_side(cfg)
        pad = conv1_pad(cfg.input_size)
        self.pad1 = nn.ZeroPad2d((0, pad, 0, pad)) if pad else nn.Identity()  # right, bottom
        self.conv1 = nn.Conv2d(3, 2 * w.conv1, kernel_size=11, stride=4)
        self.conv2 = nn.Conv2d(2 * w.conv1, 2 * w.conv2, kernel_size=5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(2 * w.conv2, 2 * w.conv3, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(2 * w.conv3, 2 * w.conv4, kernel_size=3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(2 * w.conv4, 2 * w.conv5, kernel_size=3, padding=1, groups=2)
        lrn_groups = 1 if cfg.lrn_across_towers else 2  # Caffe's norm1/norm2: over all channels
        lrn = (
            (
                lambda relu: LocalResponseNorm(
                    cfg.lrn_size,
                    cfg.lrn_alpha,
                    cfg.lrn_beta,
                    cfg.lrn_k,
                    cfg.lrn_alpha_per_size,
                    groups=lrn_groups,
                    relu=relu,  # the conv layer's ReLU, fused into the LRN
                )
            )
            if cfg.lrn
            else lambda relu: nn.Identity()
        )
        self.lrn1, self.lrn2 = lrn(not cfg.lrn1_before_relu), lrn(True)
        self.norm2 = (
            SpatialResponseNorm(
                cfg.spatial_norm_size, cfg.spatial_norm_alpha, cfg.spatial_norm_beta, cfg.spatial_norm_k
            )
            if cfg.conv2_spatial_norm
            else nn.Identity()
        )
        self.pool = MaxPool(cfg.pool_size, cfg.pool_stride)  # section 3.4: overlapping, z = 3, s = 2
        self.fc6 = Linear(2 * w.conv5 * side5 * side5, 2 * w.fc6)
        self.fc7 = Linear(2 * w.fc6, 2 * w.fc7)
        self.fc8 = Linear(2 * w.fc7, cfg.num_classes)
        self.drop6 = Dropout(cfg.dropout, cfg.dropout_style)
        self.drop7 = Dropout(cfg.dropout, cfg.dropout_style)
        self.to(device)
        if torch.device(device).type != "meta":
            # the two-tower model's initial weights for this seed (section 5), in the grouped layout
            towers = AlexNet(devices=("cpu", "cpu"), preset=cfg, seed=seed)
            self.load_state_dict(to_grouped_state(towers.state_dict(), cfg))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one input image, (3, S, S) with S = ``cfg.input_size``."""
        return input_shape(self.cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.cfg)
        x = self.conv1(self.pad1(x))  # (N, 96, 55, 55)
        relu = F.relu_ if not self.cfg.lrn else lambda t: t  # else the LRNs apply the ReLUs (fused)
        if self.cfg.lrn1_before_relu:
            x = self.pool(F.relu_(self.lrn1(x)))  # (N, 96, 27, 27)
        else:
            x = norm_then_pool(self.lrn1, self.pool, relu(x))  # LRN, pool: (N, 96, 27, 27)
        x = relu(self.conv2(x))  # (N, 256, 27, 27)
        if isinstance(self.norm2, nn.Identity):
            x = norm_then_pool(self.lrn2, self.pool, x)  # LRN, pool: (N, 256, 13, 13)
        else:
            x = self.pool(self.norm2(self.lrn2(x)))  # (N, 256, 13, 13)
        x = F.relu_(self.conv3(x))  # (N, 384, 13, 13)
        x = F.relu_(self.conv4(x))  # (N, 384, 13, 13)
        x = self.pool(F.relu_(self.conv5(x)))  # (N, 256, 6, 6)
        x = self.drop6(F.relu_(self.fc6(x.flatten(1))))  # (N, 4096)
        x = self.drop7(F.relu_(self.fc7(x)))  # (N, 4096)
        return self.fc8(x)  # (N, classes)


def to_grouped_state(state: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Two-tower state dict (``a.conv1.weight``, ``b.conv1.weight``, ...) → grouped twin's.

    Both towers' tensors are stacked along the output dimension, a first; fc8 is concatenated
    (split placement) or taken from tower a (cuda-convnet placement). Tensors move to the device of
    tower a's tensor.
    """
    out: dict[str, torch.Tensor] = {}
    for layer in LAYERS + ("fc8",):
        for kind in ("weight", "bias"):
            a = state[f"a.{layer}.{kind}"]
            b = state.get(f"b.{layer}.{kind}")
            out[f"{layer}.{kind}"] = a if b is None else torch.cat([a, b.to(a.device)], 0)
    return out


def to_two_tower_state(state: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Grouped twin's state dict → two-tower state dict (inverse of :func:`to_grouped_state`)."""
    out: dict[str, torch.Tensor] = {}
    for layer in LAYERS + ("fc8",):
        for kind in ("weight", "bias"):
            t = state[f"{layer}.{kind}"]
            if layer == "fc8":
                if cfg.fc8_placement == "a":
                    out[f"a.fc8.{kind}"] = t
                    continue
                n_a, _ = fc8_split(cfg.num_classes)
                out[f"a.fc8.{kind}"], out[f"b.fc8.{kind}"] = t[:n_a], t[n_a:]
            else:
                half = t.shape[0] // 2
                out[f"a.{layer}.{kind}"], out[f"b.{layer}.{kind}"] = t[:half], t[half:]
    return out


def grouped_from(model: AlexNet, device: str | torch.device | None = None) -> GroupedAlexNet:
    """A grouped twin holding a copy of ``model``'s weights."""
    twin = GroupedAlexNet(device="meta", preset=model.cfg)
    twin = twin.to_empty(device=device or model.devices[0])
    twin.load_state_dict(to_grouped_state(model.state_dict(), model.cfg))
    twin.train(model.training)
    return twin


def two_tower_from(twin: GroupedAlexNet, devices: tuple[str, str] | None = None) -> AlexNet:
    """A two-tower model holding a copy of ``twin``'s weights."""
    dev = next(twin.parameters()).device
    model = AlexNet(devices=devices or (dev, dev), preset=twin.cfg)
    state = to_two_tower_state(twin.state_dict(), twin.cfg)
    model.load_state_dict({k: v.to(model.state_dict()[k].device) for k, v in state.items()})
    model.train(twin.training)
    return model
