"""The network: AlexNet as two column towers (Krizhevsky et al., 2012, section 3, Figure 2).

Tower a lives on ``devices[0]`` (the paper's GPU 0), tower b on ``devices[1]``. conv1, conv2, conv4
and conv5 see only their own tower's maps; the towers exchange activations only at conv3, fc6, fc7
and fc8, each time through :func:`twogpu.exchange` or :func:`twogpu.gather` (built on the one
crossing helper, :func:`twogpu.cross`). Only the ``caffe`` preset adds a crossing: its LRN windows
span both towers (:func:`halo`, sites ``lrn1`` and ``lrn2``), as Caffe's ungrouped norm1/norm2 compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alexnet.config import ModelConfig, model_preset
from alexnet.models.layers import Dropout, LocalResponseNorm, SpatialResponseNorm
from alexnet.models.linear import Linear
from alexnet.models.pooling import MaxPool, norm_then_pool
from twogpu import cross, exchange, feed, gather
from twogpu.placement import check_devices
from twogpu.rng import init_generator

CONV1 = (11, 4)
"""conv1's kernel side and stride (section 3.5: "96 kernels of size 11×11×3 with a stride of 4 pixels")."""


def conv1_pad(input_size: int) -> int:
    """Zero pixels added at the right and bottom of the input so conv1 gives cuda-convnet's output
    size, 1 + ceil((input_size - 11) / 4) (cuda-convnet2 layer.py, ConvLayerParser ``modulesX``):
    3 for the paper's 224 (55 outputs, the last window over 3 padded pixels), 0 for Caffe's 227."""
    kernel, stride = CONV1
    outputs = 1 + -(-(input_size - kernel) // stride)
    return (outputs - 1) * stride + kernel - input_size


def input_shape(cfg: ModelConfig) -> tuple[int, int, int]:
    """(3, S, S) with S = ``cfg.input_size``: 224 (the paper's) or 227 (Caffe's)."""
    return (3, cfg.input_size, cfg.input_size)


@dataclass(frozen=True)
class Widths:
    """Kernels (conv) or neurons (fc) per tower, and the inputs of the layers fed by crossings."""

    conv1: int
    conv2: int
    conv3: int
    conv4: int
    conv5: int
    fc6: int
    fc7: int


PAPER_WIDTHS = Widths(conv1=48, conv2=128, conv3=192, conv4=192, conv5=128, fc6=2048, fc7=2048)
"""Section 3.5: 96/256/384/384/256 kernels and 4096/4096 neurons, half on each GPU."""
ONE_TOWER_WIDTHS = Widths(conv1=48, conv2=128, conv3=192, conv4=192, conv5=256, fc6=4096, fc7=4096)
"""Section 3.2 footnote: the one-GPU net with half the kernels in conv1-4 (conv5 and fc kept full)."""

# Layers whose biases the paper initialises to 1 (section 5); all other biases start at 0.
BIAS_ONE_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")


def pooled_size(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def pool5_side(cfg: ModelConfig) -> int:
    """Side of the pool5 maps: conv1's 55 → pool1 27 → pool2 13 → pool5 6 with 3/2 pooling."""
    side = pooled_size(cfg.input_size + conv1_pad(cfg.input_size), *CONV1)  # conv1: 55
    for _ in range(3):
        side = pooled_size(side, cfg.pool_size, cfg.pool_stride)
    return side


class Tower(nn.Module):
    """One column: conv1..conv5 and its share of fc6..fc8. ``conv3_in``/``fc*_in`` count the inputs
    arriving from both towers; ``fc8_out`` is 0 when this tower holds no part of fc8."""

    def __init__(
        self,
        w: Widths,
        *,
        conv3_in: int,
        fc6_in: int,
        fc7_in: int,
        fc8_in: int,
        fc8_out: int,
        cfg: ModelConfig,
        halo: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.halo = halo  # maps of the other tower before / after this one's at the LRNs (lrn_across_towers)
        pad = conv1_pad(cfg.input_size)
        self.pad1 = nn.ZeroPad2d((0, pad, 0, pad)) if pad else nn.Identity()  # right, bottom
        self.conv1 = nn.Conv2d(3, w.conv1, kernel_size=11, stride=4)
        self.lrn1 = self._lrn(relu=not cfg.lrn1_before_relu)
        self.conv2 = nn.Conv2d(w.conv1, w.conv2, kernel_size=5, padding=2)
        self.lrn2 = self._lrn(relu=True)
        self.norm2 = (
            SpatialResponseNorm(
                cfg.spatial_norm_size, cfg.spatial_norm_alpha, cfg.spatial_norm_beta, cfg.spatial_norm_k
            )
            if cfg.conv2_spatial_norm
            else nn.Identity()
        )
        self.conv3 = nn.Conv2d(conv3_in, w.conv3, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(w.conv3, w.conv4, kernel_size=3, padding=1)
        self.conv5 = nn.Conv2d(w.conv4, w.conv5, kernel_size=3, padding=1)
        self.pool = MaxPool(cfg.pool_size, cfg.pool_stride)  # section 3.4: overlapping, z = 3, s = 2
        self.fc6 = Linear(fc6_in, w.fc6)
        self.drop6 = Dropout(cfg.dropout, cfg.dropout_style)
        self.fc7 = Linear(fc7_in, w.fc7)
        self.drop7 = Dropout(cfg.dropout, cfg.dropout_style)
        self.fc8 = Linear(fc8_in, fc8_out) if fc8_out else None

    def _lrn(self, relu: bool) -> nn.Module:
        """The LRN; ``relu``: it applies the ReLU of the conv layer below itself (fused, one pass
        over memory fewer each way on the CPU; same numbers as ReLU then LRN)."""
        c = self.cfg
        if not c.lrn:
            return nn.Identity()
        return LocalResponseNorm(
            c.lrn_size, c.lrn_alpha, c.lrn_beta, c.lrn_k, c.lrn_alpha_per_size, relu=relu
        )

    def lower(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 → pool2, on this tower's own maps only; ``x``: the input padded by ``pad1``."""
        return self.pool2(self.conv2_maps(self.conv1_maps(x)))

    def conv1_maps(self, x: torch.Tensor) -> torch.Tensor:
        """conv1 (its ReLU comes after the LRN, or is fused into it): the maps conv1's LRN takes.
        ``x``: the input padded by ``pad1`` (:meth:`AlexNet._padded`)."""
        x = self.conv1(x)  # (N, 48, 55, 55) from 224 + 3 or 227
        return x if self.cfg.lrn1_before_relu else self._relu_unless_fused(x)

    def conv2_maps(self, x: torch.Tensor) -> torch.Tensor:
        """conv1's LRN (with conv1's ReLU) → pool1 → conv2: the maps conv2's LRN takes."""
        if self.cfg.lrn1_before_relu:
            x = self.pool(F.relu_(self._norm(self.lrn1, x)))  # (N, 48, 27, 27)
        else:
            x = self._norm_pool(self.lrn1, x)  # (N, 48, 55, 55) → (N, 48, 27, 27)
        return self._relu_unless_fused(self.conv2(x))  # (N, 128, 27, 27)

    def _relu_unless_fused(self, x: torch.Tensor) -> torch.Tensor:
        """The ReLU of conv1 or conv2, unless the LRN after it applies it (``_lrn(relu=True)``)."""
        return x if self.cfg.lrn else F.relu_(x)

    def pool2(self, x: torch.Tensor) -> torch.Tensor:
        """conv2's LRN → pool2."""
        if isinstance(self.norm2, nn.Identity):
            return self._norm_pool(self.lrn2, x)  # (N, 128, 13, 13)
        return self.pool(self.norm2(self._norm(self.lrn2, x)))  # (N, 128, 13, 13)

    def _norm_pool(self, lrn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The LRN, then the max-pool (one native pass in inference on the CPU: ``norm_then_pool``)."""
        if any(self.halo):
            return self.pool(self._norm(lrn, x))
        return norm_then_pool(lrn, self.pool, x)

    def _norm(self, lrn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The LRN; with a halo (the other tower's boundary maps beside this tower's), computed over
        all of them and the halo dropped, so windows at the towers' border span both."""
        lo, hi = self.halo
        x = lrn(x)
        return x[:, lo : x.shape[1] - hi] if lo or hi else x

    def upper(self, x: torch.Tensor) -> torch.Tensor:
        """conv3 (input from both towers) → pool5."""
        x = F.relu_(self.conv3(x))  # (N, 192, 13, 13)
        x = F.relu_(self.conv4(x))  # (N, 192, 13, 13)
        x = F.relu_(self.conv5(x))  # (N, 128, 13, 13)
        return self.pool(x)  # (N, 128, 6, 6)

    def hidden6(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop6(F.relu_(self.fc6(x)))  # (N, 2048)

    def hidden7(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop7(F.relu_(self.fc7(x)))  # (N, 2048)

    SEGMENTS = ("lower", "upper", "hidden6", "hidden7")
    """The tower's pieces between two crossings."""
    HALO_SEGMENTS = ("conv1_maps", "conv2_maps", "pool2", "upper", "hidden6", "hidden7")
    """The same with LRN halos (``lrn_across_towers``), which cut ``lower`` at both LRNs."""

    def compile_segments(self, mode: str | None = None) -> None:
        """``torch.compile`` each segment between crossings, in place (parameter names unchanged)."""
        for name in self.HALO_SEGMENTS if any(self.halo) else self.SEGMENTS:
            setattr(self, name, torch.compile(getattr(self, name), mode=mode))


def init_weights(towers: Sequence[nn.Module], cfg: ModelConfig, seed: int) -> None:
    """Section 5: weights ~ N(0, 0.01²) (cuda-convnet: 0.03 in conv3-5); biases 1 in conv2, conv4,
    conv5, fc6, fc7 and 0 elsewhere.

    Each tower draws from its own host generator (:func:`twogpu.rng.init_generator`), layer by layer,
    and the draws are copied to the tower's device: for a seed the weights are the same on the
    CPU, one GPU or two GPUs, and the two towers never share draws (``torch.manual_seed`` would give
    two GPUs the same stream)."""
    for tower_name, tower in zip(("a", "b"), towers):
        g = init_generator(seed, tower_name)
        for name, module in tower.named_children():
            if not isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            std = cfg.init_std_conv345 if name in ("conv3", "conv4", "conv5") else cfg.init_std
            nn.init.constant_(module.bias, cfg.init_bias_one if name in BIAS_ONE_LAYERS else 0.0)
            if module.weight.device.type == "meta":  # shapes only (crossing reports)
                continue
            w = torch.empty(module.weight.shape, dtype=module.weight.dtype).normal_(0.0, std, generator=g)
            with torch.no_grad():
                module.weight.copy_(w)


def default_seed() -> int:
    """A seed drawn from PyTorch's global CPU generator (so ``torch.manual_seed`` still decides)."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64))


def check_input(x: torch.Tensor, cfg: ModelConfig) -> None:
    shape = input_shape(cfg)
    if x.dim() != 4 or tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"this AlexNet was built for input of shape (N, {', '.join(map(str, shape))}) "
            f"(model.input_size = {cfg.input_size}), got {tuple(x.shape)}"
        )


def resolve_model_config(
    preset: str | ModelConfig, num_classes: int | None, overrides: dict[str, Any]
) -> ModelConfig:
    if isinstance(preset, ModelConfig):
        cfg = preset
        if overrides:
            cfg = replace(cfg, **overrides)
    else:
        cfg = model_preset(preset, **overrides)
    if num_classes is not None and num_classes != cfg.num_classes:
        cfg = replace(cfg, num_classes=num_classes)
    return cfg


def halo(
    xa: torch.Tensor, xb: torch.Tensor, devices: tuple[torch.device, torch.device], width: int, *, site: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each tower's maps with the other tower's ``width`` nearest maps beside them (the LRN window's
    halo): ``[a, b[:width]]`` on tower a, ``[a[-width:], b]`` on tower b. Only with
    ``lrn_across_towers`` (Caffe's ungrouped norm1/norm2), never in the paper's network."""
    on_a = torch.cat([xa, cross(xb[:, :width], devices[0], site=site, source="b", target="a")], 1)
    on_b = torch.cat([cross(xa[:, -width:], devices[1], site=site, source="a", target="b"), xb], 1)
    return on_a, on_b


def fc8_split(num_classes: int) -> tuple[int, int]:
    """Classes computed by tower a and by tower b when fc8 is split: a takes the larger half."""
    return (num_classes + 1) // 2, num_classes // 2


class AlexNet(nn.Module):
    """The two-tower network of Figure 2.

    >>> model = AlexNet(num_classes=1000, devices=("cpu", "cpu"), preset="paper")
    >>> model(torch.zeros(2, 3, 224, 224)).shape
    torch.Size([2, 1000])

    ``preset`` is a preset name ('paper', 'cuda-convnet') or a :class:`ModelConfig`; keyword
    ``overrides`` change single options (e.g. ``lrn=False``, ``input_size=227``). ``seed`` decides the
    initial weights (None: drawn from ``torch``'s global generator). With ``towers=1`` in the config
    the model is the paper's one-tower ablation and lives on ``devices[0]``.
    """

    def __init__(
        self,
        num_classes: int | None = None,
        devices: Sequence[str | torch.device] = ("cpu", "cpu"),
        preset: str | ModelConfig = "paper",
        seed: int | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        cfg = resolve_model_config(preset, num_classes, overrides)
        seed = default_seed() if seed is None else seed
        self.cfg = cfg
        self.devices = check_devices(devices)  # one clear line for a device that is not here
        self.side_stream: torch.cuda.Stream | None = None  # see use_side_stream
        side5 = pool5_side(cfg)
        self.lrn_halo = cfg.lrn_size // 2 if cfg.lrn and cfg.lrn_across_towers else 0
        if cfg.towers == 2:
            w = PAPER_WIDTHS
            flat = w.conv5 * side5 * side5
            n_a, n_b = fc8_split(cfg.num_classes) if cfg.fc8_placement == "split" else (cfg.num_classes, 0)
            common = dict(conv3_in=2 * w.conv2, fc6_in=2 * flat, fc7_in=2 * w.fc6, fc8_in=2 * w.fc7, cfg=cfg)
            with self.devices[0]:  # built in place: no host copy of a tower bound for a GPU
                self.a = Tower(w, fc8_out=n_a, halo=(0, self.lrn_halo), **common)
            with self.devices[1]:
                self.b = Tower(w, fc8_out=n_b, halo=(self.lrn_halo, 0), **common)
            init_weights([self.a, self.b], cfg, seed)
        else:
            w = ONE_TOWER_WIDTHS
            flat = w.conv5 * side5 * side5
            with self.devices[0]:
                self.a = Tower(
                    w,
                    conv3_in=w.conv2,
                    fc6_in=flat,
                    fc7_in=w.fc6,
                    fc8_in=w.fc7,
                    fc8_out=cfg.num_classes,
                    cfg=cfg,
                )
            self.b = None
            init_weights([self.a], cfg, seed)

    def forward(self, x: torch.Tensor | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``x``: the input batch (fed to both towers here), or each tower's copy on its device
        (``ImagePipeline.to_tower_inputs``: normalised there from the uint8 batch)."""
        pair = isinstance(x, (tuple, list))
        for t in x if pair else (x,):
            check_input(t, self.cfg)
        if self.b is None:
            x = x[0] if pair else x
            return self._forward_one_tower(x.to(self.devices[0], non_blocking=self.devices[0].type == "cuda"))
        devs, a, b = self.devices, self.a, self.b
        xa, xb = self._padded(*(x if pair else feed(x, devs)))  # (N, 3, 227, 227) on each tower
        if self.lrn_halo:  # Caffe: LRN windows span the towers
            ha, hb = self._pair(a.conv1_maps, xa, b.conv1_maps, xb)  # (N, 48, 55, 55) each
            ha, hb = halo(ha, hb, devs, self.lrn_halo, site="lrn1")  # (N, 48 + n//2, 55, 55) each
            ha, hb = self._pair(a.conv2_maps, ha, b.conv2_maps, hb)  # (N, 128, 27, 27) each
            ha, hb = halo(ha, hb, devs, self.lrn_halo, site="lrn2")  # (N, 128 + n//2, 27, 27) each
            ha, hb = self._pair(a.pool2, ha, b.pool2, hb)  # (N, 128, 13, 13) each
        else:
            ha, hb = self._pair(a.lower, xa, b.lower, xb)  # (N, 128, 13, 13) each
        ha, hb = exchange(ha, hb, devs, site="conv3")  # (N, 256, 13, 13) each
        ha, hb = self._pair(a.upper, ha, b.upper, hb)  # (N, 128, 6, 6) each
        ha, hb = exchange(ha.flatten(1), hb.flatten(1), devs, site="fc6")  # (N, 9216) each
        ha, hb = self._pair(a.hidden6, ha, b.hidden6, hb)  # (N, 2048) each
        ha, hb = exchange(ha, hb, devs, site="fc7")  # (N, 4096) each
        ha, hb = self._pair(a.hidden7, ha, b.hidden7, hb)  # (N, 2048) each
        if b.fc8 is None:  # cuda-convnet: fc8 on GPU 0 only
            return a.fc8(gather(ha, hb, devs[0], site="fc8"))  # (N, 4096) on a → (N, classes)
        ha, hb = exchange(ha, hb, devs, site="fc8")  # (N, 4096) each
        la, lb = a.fc8(ha), b.fc8(hb)  # (N, classes/2) each
        return gather(la, lb, devs[0], site="fc8")  # (N, classes) on tower a

    def use_side_stream(self, enable: bool = True) -> bool:
        """When both towers share one CUDA device, run tower b's segments on a second CUDA stream,
        concurrently with tower a's (on two devices they already run concurrently). Returns whether
        the side stream is in use."""
        d = self.devices
        shared_gpu = self.b is not None and d[0] == d[1] and d[0].type == "cuda"
        self.side_stream = torch.cuda.Stream(device=d[1]) if enable and shared_gpu else None
        return self.side_stream is not None

    def compile_segments(self, mode: str | None = None) -> None:
        """``torch.compile`` every tower's segments between crossings (see :meth:`Tower.compile_segments`)."""
        for tower in self.towers():
            tower.compile_segments(mode)

    def _pair(self, fa, xa: torch.Tensor, fb, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One segment of both towers between two crossings. With a side stream
        (:meth:`use_side_stream`) tower b's segment runs on it, concurrently with tower a's; the
        streams join before the next crossing, on the device without any host synchronisation."""
        side = self.side_stream
        if side is None:
            return fa(xa), fb(xb)
        main = torch.cuda.current_stream(xb.device)
        side.wait_stream(main)  # xb is ready on the side stream
        xb.record_stream(side)
        ha = fa(xa)
        with torch.cuda.stream(side):
            hb = fb(xb)
        main.wait_stream(side)  # the crossing sees b's result
        hb.record_stream(main)
        return ha, hb

    def _padded(self, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each tower's input padded for conv1 (224 → 227, right and bottom; unchanged at 227), once
        when both towers share one input (one device): the same numbers, one copy fewer."""
        pa = self.a.pad1(xa)
        return pa, pa if xb is xa else self.b.pad1(xb)

    def _forward_one_tower(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a
        h = a.upper(a.lower(a.pad1(x))).flatten(1)  # (N, 9216)
        return a.fc8(a.hidden7(a.hidden6(h)))  # (N, classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape of one input image, (3, S, S) with S = ``cfg.input_size``."""
        return input_shape(self.cfg)

    def towers(self) -> list[nn.Module]:
        """The towers, a first (one entry for the one-tower ablation)."""
        return [t for t in (self.a, self.b) if t is not None]
