"""``alexnet import-caffe``: Caffe's trained ``bvlc_alexnet`` as the paper's two towers.

Caffe's AlexNet has the paper's shapes exactly (section 3.5): conv1 96 kernels, conv2/conv4/conv5
with ``group: 2`` (each half sees one group's maps, as each tower sees its own GPU's), conv3 and
the fc layers over both groups. Caffe's blobs are therefore laid out as our grouped twin's
parameters (:mod:`alexnet.models.grouped`): output rows ``[group 0, group 1]`` = ``[tower a, tower b]``,
and input columns of conv3/fc6/fc7/fc8 in the same ``[a, b]`` order. The conversion is exact:

* conv1's 96 filters → 48 per tower (a = 0–47), their input channels turned from Caffe's BGR into
  our RGB order;
* conv2/conv4/conv5 (grouped) → each tower's own convolution;
* conv3, fc6, fc7 → split by output rows, input columns kept;
* fc8 → as the preset places it (split: tower a the first ⌈C/2⌉ classes).

The mean image (``imagenet_mean.binaryproto``, BGR, 256 × 256) becomes the checkpoint's RGB mean
image. The network is checked layer by layer (names, types, order, shapes, convolution, pooling and
LRN parameters) and refused with a message naming the first difference; a ``bvlc_reference_caffenet``
file (pooling before LRN) is refused too, because the preset would not compute what it computes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alexnet.commands.import_caffe._caffemodel import CaffeFormatError, CaffeLayer, read_blob, read_net
from alexnet.config import Config, DataConfig, config_to_dict, model_preset
from alexnet.models.grouped import to_two_tower_state
from twogpu.checkpoint import save_checkpoint

# AlexNet's layers in Caffe's order (models/bvlc_alexnet/deploy.prototxt): (type, name or None when
# any name will do). Layers without weights of other types (data, loss, softmax, split) are ignored.
ALEXNET_LAYERS: tuple[tuple[str, str | None], ...] = (
    ("Convolution", "conv1"),
    ("ReLU", None),
    ("LRN", None),
    ("Pooling", None),
    ("Convolution", "conv2"),
    ("ReLU", None),
    ("LRN", None),
    ("Pooling", None),
    ("Convolution", "conv3"),
    ("ReLU", None),
    ("Convolution", "conv4"),
    ("ReLU", None),
    ("Convolution", "conv5"),
    ("ReLU", None),
    ("Pooling", None),
    ("InnerProduct", "fc6"),
    ("ReLU", None),
    ("Dropout", None),
    ("InnerProduct", "fc7"),
    ("ReLU", None),
    ("Dropout", None),
    ("InnerProduct", "fc8"),
)
CHECKED_TYPES = {t for t, _ in ALEXNET_LAYERS}

WEIGHT_SHAPES: dict[str, tuple[int | None, ...]] = {
    "conv1": (96, 3, 11, 11),
    "conv2": (256, 48, 5, 5),
    "conv3": (384, 256, 3, 3),
    "conv4": (384, 192, 3, 3),
    "conv5": (256, 192, 3, 3),
    "fc6": (4096, 9216),
    "fc7": (4096, 4096),
    "fc8": (None, 4096),
}
"""Section 3.5's shapes; ``None``: fc8's number of classes (1000 for ILSVRC) is read from the file."""
CONV_GEOMETRY = {
    "conv1": (4, 0, 1),
    "conv2": (1, 2, 2),
    "conv3": (1, 1, 1),
    "conv4": (1, 1, 2),
    "conv5": (1, 1, 2),
}
"""(stride, pad, group) of each convolution (Figure 2; Caffe's deploy.prototxt)."""
BGR_TO_RGB = [2, 1, 0]


def _refuse(path: Path, problem: str) -> CaffeFormatError:
    return CaffeFormatError(f"{path}: {problem}; expected Caffe's AlexNet (bvlc_alexnet)")


def _check_sequence(path: Path, layers: list[CaffeLayer]) -> list[CaffeLayer]:
    """The file's layers of AlexNet's types, in order, matched against :data:`ALEXNET_LAYERS`."""
    for layer in layers:
        if layer.blobs and layer.name not in WEIGHT_SHAPES:
            raise _refuse(
                path,
                f"layer {layer.name!r} ({layer.type}) has learnt weights and is not one of "
                f"AlexNet's {', '.join(WEIGHT_SHAPES)}",
            )
    main = [layer for layer in layers if layer.type in CHECKED_TYPES]
    for i, (want_type, want_name) in enumerate(ALEXNET_LAYERS):
        if i >= len(main):
            raise _refuse(
                path,
                f"the file ends after {len(main)} of AlexNet's {len(ALEXNET_LAYERS)} layers "
                f"(missing {want_type} {want_name or ''}); it may be truncated",
            )
        got = main[i]
        if got.type != want_type or (want_name and got.name != want_name):
            hint = ""
            if got.type == "Pooling" and want_type == "LRN":
                hint = " (pooling before normalisation is bvlc_reference_caffenet's order, not AlexNet's)"
            raise _refuse(
                path,
                f"layer {i + 1} of the network is {got.type} {got.name!r} where AlexNet has "
                f"{want_type} {want_name or ''}{hint}".replace("  ", " "),
            )
    if len(main) > len(ALEXNET_LAYERS):
        extra = main[len(ALEXNET_LAYERS)]
        raise _refuse(path, f"layer {extra.type} {extra.name!r} follows fc8")
    return main


def _weights(path: Path, layer: CaffeLayer) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of a conv/fc layer in the shapes of :data:`WEIGHT_SHAPES`; V1 files store fc
    matrices as (1, 1, out, in) and biases as (1, 1, 1, out)."""
    want = WEIGHT_SHAPES[layer.name]
    if len(layer.blobs) != 2:
        raise _refuse(path, f"layer {layer.name!r} has {len(layer.blobs)} blobs, not 2 (weights and biases)")

    def fit(blob: np.ndarray, shape: tuple[int | None, ...], what: str) -> np.ndarray:
        dims = blob.shape
        if len(dims) == 4 and len(shape) < 4 and all(d == 1 for d in dims[: 4 - len(shape)]):
            dims = dims[4 - len(shape) :]  # legacy num/channels/height/width
        if len(dims) != len(shape) or any(s is not None and d != s for d, s in zip(dims, shape)):
            want_s = "×".join("C" if s is None else str(s) for s in shape)
            raise _refuse(
                path,
                f"{layer.name}'s {what} has shape {'×'.join(map(str, blob.shape))}, AlexNet's is {want_s}",
            )
        return blob.reshape(dims)

    w = fit(layer.blobs[0], want, "weight")
    b = fit(layer.blobs[1], (w.shape[0],), "bias")
    return w, b


def _check_params(path: Path, main: list[CaffeLayer]) -> dict[str, Any]:
    """Check the convolution, pooling and LRN parameters; returns the LRN and dropout settings."""
    for layer in main:
        p = layer.params
        if layer.type == "Convolution" and "convolution" in p:
            c = p["convolution"]
            stride = c.get("stride_h") or (c["stride"][0] if c["stride"] else 1)
            pad = c.get("pad_h") or (c["pad"][0] if c["pad"] else 0)
            got = (stride, pad, c["group"])
            if got != CONV_GEOMETRY[layer.name] or any(d != 1 for d in c["dilation"]):
                raise _refuse(
                    path,
                    f"{layer.name} has (stride, pad, group) = {got}, AlexNet's is "
                    f"{CONV_GEOMETRY[layer.name]}",
                )
            if not c["bias_term"]:
                raise _refuse(path, f"{layer.name} has no biases")
        elif layer.type == "InnerProduct" and "inner_product" in p:
            ip = p["inner_product"]
            if ip["transpose"] or ip["axis"] != 1 or not ip["bias_term"]:
                raise _refuse(path, f"{layer.name} is a transposed, non-axis-1 or bias-free inner product")
        elif layer.type == "Pooling" and "pooling" in p:
            q = p["pooling"]
            got = (
                q["pool"],
                q.get("kernel_size") or q.get("kernel_h"),
                q.get("stride_h") or q["stride"],
                q["pad"],
            )
            if got != (0, 3, 2, 0) or q["global_pooling"]:
                raise _refuse(
                    path,
                    f"pooling layer {layer.name!r} has (method, size, stride, pad) = {got}, "
                    f"AlexNet's is max pooling (0, 3, 2, 0) (section 3.4)",
                )
    norms = [layer for layer in main if layer.type == "LRN"]
    lrn = [
        n.params.get("lrn", {"local_size": 5, "alpha": 1.0, "beta": 0.75, "norm_region": 0, "k": 1.0})
        for n in norms
    ]
    for n, q in zip(norms, lrn):
        if q["norm_region"] != 0:
            raise _refuse(path, f"LRN layer {n.name!r} normalises within channels, AlexNet across channels")
        if q["local_size"] % 2 == 0:
            raise _refuse(path, f"LRN layer {n.name!r} has an even window ({q['local_size']})")
    if lrn[0] != lrn[1]:
        raise _refuse(
            path,
            f"{norms[0].name!r} and {norms[1].name!r} have different LRN parameters ({lrn[0]} / {lrn[1]})",
        )
    drops = [
        layer.params.get("dropout", {"dropout_ratio": 0.5})["dropout_ratio"]
        for layer in main
        if layer.type == "Dropout"
    ]

    def f32(v: float) -> float:  # the float32 stored, as the decimal written
        return float(f"{v:.7g}")

    return {
        "lrn_size": lrn[0]["local_size"],
        "lrn_alpha": f32(lrn[0]["alpha"]),
        "lrn_beta": f32(lrn[0]["beta"]),
        "lrn_k": f32(lrn[0]["k"]),
        "dropout": f32(drops[0]),
    }


def read_alexnet(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Caffe's AlexNet as the grouped twin's state dict (RGB conv1) and the model settings read
    from the file (LRN parameters, dropout, number of classes)."""
    path = Path(path)
    _name, layers = read_net(path)
    main = _check_sequence(path, layers)
    settings = _check_params(path, main)
    state: dict[str, torch.Tensor] = {}
    for layer in main:
        if layer.name in WEIGHT_SHAPES:
            w, b = _weights(path, layer)
            if layer.name == "conv1":
                w = w[:, BGR_TO_RGB]  # Caffe feeds BGR images, we feed RGB
            state[f"{layer.name}.weight"] = torch.tensor(np.ascontiguousarray(w), dtype=torch.float32)
            state[f"{layer.name}.bias"] = torch.tensor(np.ascontiguousarray(b), dtype=torch.float32)
    settings["num_classes"] = int(state["fc8.weight"].shape[0])
    return state, settings


def read_mean(path: str | Path) -> torch.Tensor:
    """Caffe's mean image (BGR, (1, 3, S, S) or (3, S, S), 0..255) as our (3, S, S) RGB mean image."""
    path = Path(path)
    blob = read_blob(path)
    if blob.size == 0:
        raise CaffeFormatError(f"{path}: holds no image data: not a mean .binaryproto (a .caffemodel?)")
    shape = blob.shape[1:] if blob.ndim == 4 and blob.shape[0] == 1 else blob.shape
    if len(shape) != 3 or shape[0] != 3 or shape[1] != shape[2]:
        raise CaffeFormatError(
            f"{path}: a mean image must be 3 × S × S (BGR), this blob is "
            f"{'×'.join(map(str, blob.shape)) or 'empty'}"
        )
    return torch.tensor(np.ascontiguousarray(blob.reshape(shape)[BGR_TO_RGB]), dtype=torch.float32)


def import_caffe(
    model_path: str | Path,
    out: str | Path,
    mean_path: str | Path | None = None,
    *,
    force: bool = False,
    log=print,
) -> Path:
    """Convert a ``.caffemodel`` (and optionally its mean ``.binaryproto``) into a two-tower
    checkpoint with the ``caffe`` preset, loadable by ``evaluate``, ``predict``, ``figures`` and
    ``torch.hub``. Refuses to overwrite ``out`` unless ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise ValueError(f"{out} exists; choose another --out or pass --force to replace it")
    _require_files(model_path, *([mean_path] if mean_path is not None else []))
    mean = read_mean(mean_path) if mean_path is not None else None  # the small file first
    side = model_preset("caffe").input_size
    if mean is not None and mean.shape[-1] < side:
        raise CaffeFormatError(
            f"{mean_path}: the mean image is {mean.shape[-1]}×{mean.shape[-1]}, smaller "
            f"than the {side}×{side} input"
        )
    grouped, settings = read_alexnet(model_path)
    num_classes = settings.pop("num_classes")
    model_cfg = model_preset("caffe", num_classes=num_classes, **settings)
    data_cfg = DataConfig()
    extra: dict[str, Any] = {}
    if mean is not None:
        side = mean.shape[-1]
        from alexnet.data.stats import IMAGENET_EIGVAL, IMAGENET_EIGVEC

        data_cfg = DataConfig(image_size=side)
        extra["stats"] = {
            "mean": mean,
            "eigval": torch.tensor(IMAGENET_EIGVAL),
            "eigvec": torch.tensor(IMAGENET_EIGVEC),
        }
    cfg = Config(model=model_cfg, data=data_cfg)
    state = to_two_tower_state(grouped, model_cfg)  # views: each Caffe blob's storage is saved once
    _check_loads(state, cfg)
    if num_classes == 1000:
        from alexnet.data.classes import imagenet_categories

        extra["class_names"] = imagenet_categories()  # Caffe's synsets.txt order = sorted wnids
    checkpoint = {
        "model": state,
        "config": config_to_dict(cfg),
        "step": 0,
        "epoch": 0,
        "imported_from": {"caffemodel": str(model_path), "mean": str(mean_path or "")},
        **extra,
    }
    save_checkpoint(checkpoint, out)
    total = sum(t.numel() for t in state.values())
    log(
        f"{model_path}: AlexNet, {num_classes} classes, {total:,} parameters; LRN n={model_cfg.lrn_size} "
        f"α={model_cfg.lrn_alpha:g} β={model_cfg.lrn_beta:g} k={model_cfg.lrn_k:g}"
    )
    log(f"wrote {out} (preset 'caffe'{', mean image ' + str(mean_path) if mean_path else ', no mean image'})")
    return out


def _require_files(*paths: str | Path) -> None:
    """One :class:`CaffeFormatError` naming every input that is not a file (all of them at once)."""
    problems = [
        f"{p} is a folder, not a file" if Path(p).is_dir() else f"{p} not found"
        for p in paths
        if not Path(p).is_file()
    ]
    if problems:
        raise CaffeFormatError("; ".join(problems))


def _check_loads(state: dict[str, torch.Tensor], cfg: Config) -> None:
    """The converted tensors fill the two-tower model exactly (names and shapes), checked on the
    meta device (no memory, no arithmetic)."""
    from alexnet.models.model import AlexNet

    model = AlexNet(devices=("meta", "meta"), preset=cfg.model)
    model.load_state_dict(state, strict=True, assign=True)


# ------------------------------------------------------------------------------- the command


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", metavar="MODEL.caffemodel", help="Caffe's trained AlexNet, e.g. bvlc_alexnet.caffemodel"
    )
    p.add_argument(
        "--mean",
        default=None,
        metavar="MEAN.binaryproto",
        help="Caffe's mean image, e.g. imagenet_mean.binaryproto (stored in the checkpoint)",
    )
    p.add_argument("--out", required=True, metavar="CHECKPOINT", help="checkpoint file (.pt) to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    from alexnet.hints import alexnet_command

    out = import_caffe(args.model, args.out, args.mean, force=args.force)
    print(
        f"next: {alexnet_command('evaluate', 'DATA', '--checkpoint', str(out))}   "
        f"(DATA with ILSVRC-2012's 1000 wnid folders; only its val/ is read)"
    )
    return 0
