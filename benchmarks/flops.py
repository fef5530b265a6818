"""Analytic FLOP count of a network's convolutions and fully-connected layers.

Counted from the layers' own shapes during one forward pass on the ``meta`` device (no arithmetic
happens): a convolution producing ``C_out × H × W`` maps from ``C_in/groups`` channels with a
``k_h × k_w`` kernel costs ``C_out·H·W·(C_in/groups)·k_h·k_w`` multiply-adds per image, a linear
layer ``in·out``. One multiply-add = 2 FLOPs; biases, ReLU, LRN, pooling and dropout are not
counted (they are a few per activation, against hundreds per output of a convolution).

Training step = forward + backward, where the backward costs one more pass for the weight gradient
and one for the input gradient, except where the layer's input needs no gradient (conv1: the image).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class LayerCount:
    name: str
    macs: int
    """Multiply-adds per image in the forward pass."""
    input_grad: bool
    """Whether the backward pass computes this layer's input gradient."""


def layer_macs(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> list[LayerCount]:
    """Per-layer multiply-adds per image of ``model`` (built on the ``meta`` device), in call order;
    ``input_shape`` defaults to the model's own (our networks': ``model.input_shape``)."""
    counts: list[LayerCount] = []
    hooks = []

    def hook(name: str):
        def fn(module: nn.Module, inputs, output) -> None:
            x = inputs[0]
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                per_out = (module.in_channels // module.groups) * kh * kw
                macs = output[0].numel() * per_out  # output[0]: one image
            else:
                macs = module.in_features * module.out_features
            counts.append(LayerCount(name, int(macs), bool(x.requires_grad)))

        return fn

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        device = next(model.parameters()).device
        with torch.enable_grad():
            model(torch.zeros((2, *(input_shape or model.input_shape)), device=device))
    finally:
        for h in hooks:
            h.remove()
    return counts


def forward_flops(counts: list[LayerCount]) -> int:
    """FLOPs per image of one forward pass (2 per multiply-add)."""
    return 2 * sum(c.macs for c in counts)


def training_flops(counts: list[LayerCount]) -> int:
    """FLOPs per image of forward + backward (weight gradient always, input gradient where needed)."""
    return 2 * sum(c.macs * (3 if c.input_grad else 2) for c in counts)
