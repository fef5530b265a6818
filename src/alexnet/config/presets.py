"""The presets, value by value, each with where it comes from.

Two presets, each a table ``"section.key" -> Sourced(value, source)``:

* ``paper`` — the published text (Krizhevsky, Sutskever & Hinton, NIPS 2012); a source is a section
  and its words. These are the defaults of :mod:`alexnet.config.schema`.
* ``cuda-convnet`` — cuda-convnet2's imagenet-2gpu-model configuration, the one two-tower ImageNet
  configuration Krizhevsky released (``akrizhevsky/cuda-convnet2`` commit 3238bf0; its wiki branch,
  commit 1bf8229, holds the command line that trains it). A source is a file path and
  ``[section] key``, or a function of the released code. ``configs/cuda-convnet-2gpu.toml`` sets it.

``model.preset`` selects a preset's ``model`` values (:func:`model_preset`); the other sections' values
are written out in the preset's TOML file. ``tests/alexnet/test_presets.py`` checks that each default,
each ``model_preset`` and each TOML file equals its table; ``alexnet config --explain`` prints the
tables and the preset table of ``docs/presets.md`` is :func:`provenance_markdown` (a test keeps them
equal).
Values marked ``UNUSED`` have no effect under the preset's other values (e.g. plateau settings under
the 'dexp' schedule); they are listed so the table is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from alexnet.config.schema import SECTIONS, ConfigError, ModelConfig


@dataclass(frozen=True)
class Sourced:
    """One preset value and the source it is read from."""

    value: Any
    source: str


UNUSED = "unused: "
"""Prefix of the source of a value that has no effect in its preset (it says why)."""

# Released files (akrizhevsky/cuda-convnet2 @ 3238bf0 unless named otherwise).
_LAYERS = "layers/layers-imagenet-2gpu-model.cfg"
_PARAMS = "layers/layer-params-imagenet-2gpu-model.cfg"
_WIKI = "wiki MultiGPU.md (cuda-convnet2 wiki branch @ 1bf8229), the imagenet-2gpu-model command line"
_EPSW = f"{_PARAMS} [conv1a]..[fc1000] epsW=dexp[base=0.02;tgtFactor=250;numSteps=4]"
_EPSB = f"{_PARAMS} [conv1a]..[fc1000] epsB=dexp[base=0.04;tgtFactor=25;numSteps=2]"


def _paper(section: str, words: str) -> str:
    return f"paper §{section}: \"{words}\""


PAPER: dict[str, Sourced] = {
    "model.num_classes": Sourced(
        1000, _paper("3.5", "the output of the last fully-connected layer is fed to a 1000-way softmax")
    ),
    "model.towers": Sourced(2, _paper("3.2", "puts half of the kernels (or neurons) on each GPU")),
    "model.input_size": Sourced(
        224,
        _paper(
            "3.5",
            "The first convolutional layer filters the 224×224×3 input image "
            "with 96 kernels of size 11×11×3 with a stride of 4 pixels",
        )
        + "; its 55×55 conv1 outputs follow from cuda-convnet's rounding-up output rule",
    ),
    "model.lrn": Sourced(
        True, _paper("3.5", "Response-normalization layers follow the first and second convolutional layers")
    ),
    "model.lrn_size": Sourced(5, _paper("3.3", "we used k = 2, n = 5, α = 10^-4, and β = 0.75")),
    "model.lrn_alpha": Sourced(1e-4, _paper("3.3", "we used k = 2, n = 5, α = 10^-4, and β = 0.75")),
    "model.lrn_beta": Sourced(0.75, _paper("3.3", "we used k = 2, n = 5, α = 10^-4, and β = 0.75")),
    "model.lrn_k": Sourced(2.0, _paper("3.3", "we used k = 2, n = 5, α = 10^-4, and β = 0.75")),
    "model.lrn_alpha_per_size": Sourced(
        False, _paper("3.3", "b = a / (k + α Σ_j a_j²)^β") + " (α multiplies the sum, not divided by n)"
    ),
    "model.lrn_across_towers": Sourced(
        False,
        _paper("3.2", "the GPUs communicate only in certain layers")
        + " (not at the LRNs: each tower normalises its own maps)",
    ),
    "model.lrn1_before_relu": Sourced(
        False,
        _paper("3.3", "We applied this normalization after applying the ReLU nonlinearity in certain layers"),
    ),
    "model.conv2_spatial_norm": Sourced(
        False, "not in the paper (§3.3 describes only the across-map normalisation)"
    ),
    "model.spatial_norm_size": Sourced(5, UNUSED + "conv2_spatial_norm = false"),
    "model.spatial_norm_alpha": Sourced(1e-3, UNUSED + "conv2_spatial_norm = false"),
    "model.spatial_norm_beta": Sourced(0.75, UNUSED + "conv2_spatial_norm = false"),
    "model.spatial_norm_k": Sourced(1.0, UNUSED + "conv2_spatial_norm = false"),
    "model.pool_size": Sourced(
        3,
        _paper(
            "3.4",
            "If we set s < z, we obtain overlapping pooling. This is what we use "
            "throughout our network, with s = 2 and z = 3",
        ),
    ),
    "model.pool_stride": Sourced(2, _paper("3.4", "with s = 2 and z = 3")),
    "model.dropout": Sourced(
        0.5, _paper("4.2", "setting to zero the output of each hidden neuron with probability 0.5")
    ),
    "model.dropout_style": Sourced(
        "paper", _paper("4.2", "At test time, we use all the neurons but multiply their outputs by 0.5")
    ),
    "model.init_std": Sourced(
        0.01,
        _paper(
            "5",
            "We initialized the weights in each layer from a zero-mean Gaussian "
            "distribution with standard deviation 0.01",
        ),
    ),
    "model.init_std_conv345": Sourced(
        0.01, _paper("5", "the weights in each layer ... standard deviation 0.01")
    ),
    "model.init_bias_one": Sourced(
        1.0,
        _paper(
            "5",
            "We initialized the neuron biases in the second, fourth, and fifth "
            "convolutional layers, as well as in the fully-connected hidden "
            "layers, with the constant 1",
        ),
    ),
    "model.fc8_placement": Sourced(
        "split", _paper("3.2", "puts half of the kernels (or neurons) on each GPU")
    ),
    "data.image_size": Sourced(
        256,
        _paper(
            "2",
            "we first rescaled the image such that the shorter side was of length "
            "256, and then cropped out the central 256×256 patch",
        ),
    ),
    "data.flip": Sourced(
        True, _paper("4.1", "extracting random 224 × 224 patches (and their horizontal reflections)")
    ),
    "data.random_crop": Sourced(
        True,
        _paper(
            "4.1",
            "extracting random 224 × 224 patches (and their horizontal reflections) from the 256×256 images",
        ),
    ),
    "data.lighting_std": Sourced(
        0.1, _paper("4.1", "α_i is drawn from a Gaussian with mean zero and standard deviation 0.1")
    ),
    "data.lighting_formula": Sourced(
        "paper",
        _paper("4.1", "[p1, p2, p3][α1λ1, α2λ2, α3λ3]^T")
        + "; λ of 0..1-scaled pixels, ×255 (the text leaves the scale open; "
        "see alexnet.data.augment)",
    ),
    "data.lighting_rescale": Sourced(False, "not in the paper"),
    "data.mean_window": Sourced(
        "crop",
        _paper("2", "subtracting the mean activity over the training set from each pixel")
        + " (of the 256×256 image, so each crop loses its own window)",
    ),
    "optim.lr": Sourced(0.01, _paper("5", "The learning rate was initialized at 0.01")),
    "optim.momentum": Sourced(
        0.9, _paper("5", "batch size of 128 examples, momentum of 0.9, and weight decay of 0.0005")
    ),
    "optim.weight_decay": Sourced(0.0005, _paper("5", "momentum of 0.9, and weight decay of 0.0005")),
    "optim.bias_lr_mult": Sourced(1.0, _paper("5", "We used an equal learning rate for all layers")),
    "optim.bias_decay": Sourced(
        True,
        _paper("5", "eq. (1), the update rule for weight w")
        + " (biases not singled out: one rule for every parameter)",
    ),
    "optim.schedule": Sourced(
        "plateau",
        _paper(
            "5",
            "divide the learning rate by 10 when the validation error rate "
            "stopped improving with the current learning rate",
        ),
    ),
    "optim.plateau_patience": Sourced(
        5, "not given in the paper ('stopped improving'): 5 epochs, our choice"
    ),
    "optim.plateau_min_delta": Sourced(
        0.001,
        "not given in the paper: 0.1 points, about half the binomial noise of "
        "a 50,000-image validation error near 40 %",
    ),
    "optim.plateau_min_epochs": Sourced(
        10, "not given in the paper: no drop in the first 10 epochs at a rate"
    ),
    "optim.plateau_max_epochs": Sourced(
        25,
        _paper("5", "reduced three times prior to termination. We trained the network for roughly 90 cycles")
        + " — a drop at the latest after 25 epochs at a rate keeps all three within 90",
    ),
    "optim.max_drops": Sourced(
        3,
        _paper("5", "The learning rate was initialized at 0.01 and reduced three times prior to termination"),
    ),
    "optim.milestones": Sourced((25, 50, 75), UNUSED + "schedule = 'plateau'"),
    "optim.dexp_factor": Sourced(250.0, UNUSED + "schedule = 'plateau'"),
    "optim.dexp_steps": Sourced(4, UNUSED + "schedule = 'plateau'"),
    "optim.dexp_bias_factor": Sourced(25.0, UNUSED + "schedule = 'plateau'"),
    "optim.dexp_bias_steps": Sourced(2, UNUSED + "schedule = 'plateau'"),
    "train.epochs": Sourced(
        90, _paper("5", "We trained the network for roughly 90 cycles through the training set")
    ),
    "train.batch_size": Sourced(
        128, _paper("5", "stochastic gradient descent with a batch size of 128 examples")
    ),
}
"""The published text, value by value."""


CUDA_CONVNET: dict[str, Sourced] = {
    "model.num_classes": Sourced(1000, f"{_LAYERS} [fc1000] outputs=1000"),
    "model.towers": Sourced(
        2, f"{_LAYERS} [conv1a] gpu=0, [conv1b] gpu=1 (every layer in an a and a b copy)"
    ),
    "model.input_size": Sourced(
        224,
        f"{_WIKI}: --inner-size 224; layer.py ConvLayerParser: modulesX = "
        "1 + ceil((2*padding + imgSize - filterSize) / stride) = 55 with "
        f"{_LAYERS} [conv1a] padding=0 stride=4 filterSize=11",
    ),
    "model.lrn": Sourced(
        True, f"{_LAYERS} [rnorm1a] type=cmrnorm inputs=conv1a; [rnorm2a] type=cmrnorm inputs=conv2a"
    ),
    "model.lrn_size": Sourced(5, f"{_LAYERS} [rnorm1a] size=5, [rnorm2a] size=5"),
    "model.lrn_alpha": Sourced(1e-4, f"{_PARAMS} [rnorm1a] scale=0.0001, [rnorm2a] scale=0.0001"),
    "model.lrn_beta": Sourced(0.75, f"{_PARAMS} [rnorm1a] pow=0.75, [rnorm2a] pow=0.75"),
    "model.lrn_k": Sourced(
        2.0, f"{_PARAMS} [rnorm1a] minDiv=2 (cudaconv3/src/conv_util.cu: minDiv + addScale·Σ)"
    ),
    "model.lrn_alpha_per_size": Sourced(
        True, "layer.py NormLayerParser: dic['scale'] /= dic['size'] for cmrnorm"
    ),
    "model.lrn_across_towers": Sourced(
        False,
        f"{_LAYERS} [rnorm1a] inputs=conv1a channels=48, [rnorm2a] "
        "inputs=conv2a channels=128 (one tower's maps)",
    ),
    "model.lrn1_before_relu": Sourced(
        True,
        f"{_LAYERS} [conv1a] has no neuron, [rnorm1a] inputs=conv1a, "
        "[pool1a] neuron=relu (ReLU after LRN; max-pool and ReLU commute)",
    ),
    "model.conv2_spatial_norm": Sourced(True, f"{_LAYERS} [cnorm2a] type=rnorm inputs=rnorm2a"),
    "model.spatial_norm_size": Sourced(5, f"{_LAYERS} [cnorm2a] size=5"),
    "model.spatial_norm_alpha": Sourced(
        1e-3, f"{_PARAMS} [cnorm2a] scale=0.001 (layer.py divides it by size²)"
    ),
    "model.spatial_norm_beta": Sourced(0.75, f"{_PARAMS} [cnorm2a] pow=0.75"),
    "model.spatial_norm_k": Sourced(
        1.0, "layer.py NormLayerParser: minDiv default=1.0 ([cnorm2a] sets none)"
    ),
    "model.pool_size": Sourced(3, f"{_LAYERS} [pool1a] [pool2a] [pool3a] sizeX=3"),
    "model.pool_stride": Sourced(2, f"{_LAYERS} [pool1a] [pool2a] [pool3a] stride=2"),
    "model.dropout": Sourced(0.5, f"{_PARAMS} [dropout1a] [dropout2a] keep=0.5 (p = 1 - keep)"),
    "model.dropout_style": Sourced(
        "inverted",
        "cudaconvnet/include/layer.cuh DropoutSmallerThanOperator: kept × "
        "1/keep in training; layer.cu DropoutLayer::fpropActs: a copy at test",
    ),
    "model.init_std": Sourced(
        0.01, f"{_LAYERS} [conv1a] [conv2a] initW=0.01, [fc2048a] [fc2048ba] [fc1000] initW=0.01,0.01"
    ),
    "model.init_std_conv345": Sourced(
        0.03, f"{_LAYERS} [conv3a] initW=0.03,0.03, [conv4a] [conv5a] initW=0.03"
    ),
    "model.init_bias_one": Sourced(
        1.0,
        f"{_LAYERS} [conv2a] [conv4a] [conv5a] [fc2048a] [fc2048ba] initB=1 "
        "(others: layer.py initB default=0)",
    ),
    "model.fc8_placement": Sourced("a", f"{_LAYERS} [fc1000] gpu=0"),
    "data.image_size": Sourced(256, "make-data/make-data.py OUTPUT_IMAGE_SIZE = 256, CROP_TO_SQUARE = True"),
    "data.flip": Sourced(
        True, "cudaconvnet/src/jpeg.cpp DecoderThread: crop(..., !_test && (rand_r(&_rseed) % 2))"
    ),
    "data.random_crop": Sourced(
        True,
        "cudaconvnet/src/jpeg.cpp DecoderThread::crop: crop_start = "
        "rand_r(&_rseed) % (border_size + 1) in training",
    ),
    "data.lighting_std": Sourced(0.1, f"{_WIKI}: --color-noise 0.1"),
    "data.lighting_formula": Sourced(
        "cuda-convnet",
        "convdata.py ColorNoiseMakerThread.run: randn(n, 3) * "
        "pca_stdevs through pca_vecs (√λ of the 0..255 covariance)",
    ),
    "data.lighting_rescale": Sourced(
        True, "convdata.py add_color_noise: data *= 1.0 / (1.0 + color_noise_coeff)"
    ),
    "data.mean_window": Sourced(
        "centre",
        "convdata.py ImageDataProvider.__init__: data_mean_crop = "
        "data_mean[:, border:border+inner, border:border+inner]",
    ),
    "optim.lr": Sourced(0.02, _EPSW),
    "optim.momentum": Sourced(0.9, f"{_PARAMS} [conv1a]..[fc1000] momW=0.9, momB=0.9"),
    "optim.weight_decay": Sourced(0.0005, f"{_PARAMS} [conv1a]..[fc1000] wc=0.0005"),
    "optim.bias_lr_mult": Sourced(2.0, f"epsB base 0.04 / epsW base 0.02 ({_PARAMS} [conv1a]..[fc1000])"),
    "optim.bias_decay": Sourced(
        False,
        "cudaconvnet/src/layer.cu WeightLayer: _biases = new Weights(..., epsB, "
        "*this, 0, 0, momB, true) (wc = 0 for biases)",
    ),
    "optim.schedule": Sourced("dexp", f"{_EPSW}; cudaconvnet/src/lr.cu DiscreteExpParameterSchedule"),
    "optim.plateau_patience": Sourced(5, UNUSED + "schedule = 'dexp'"),
    "optim.plateau_min_delta": Sourced(0.001, UNUSED + "schedule = 'dexp'"),
    "optim.plateau_min_epochs": Sourced(10, UNUSED + "schedule = 'dexp'"),
    "optim.plateau_max_epochs": Sourced(25, UNUSED + "schedule = 'dexp'"),
    "optim.max_drops": Sourced(3, UNUSED + "schedule = 'dexp'"),
    "optim.milestones": Sourced((25, 50, 75), UNUSED + "schedule = 'dexp'"),
    "optim.dexp_factor": Sourced(250.0, _EPSW),
    "optim.dexp_steps": Sourced(4, _EPSW),
    "optim.dexp_bias_factor": Sourced(25.0, _EPSB),
    "optim.dexp_bias_steps": Sourced(2, _EPSB),
    "train.epochs": Sourced(90, f"{_WIKI}: --epochs 90"),
    "train.batch_size": Sourced(128, f"{_WIKI}: --mini 128"),
}
"""cuda-convnet2's imagenet-2gpu-model configuration, value by value."""


_BVLC = "models/bvlc_alexnet/train_val.prototxt (BVLC/caffe @ 9b89154)"

CAFFE: dict[str, Sourced] = {
    "model.num_classes": Sourced(1000, f"{_BVLC} fc8 num_output: 1000"),
    "model.input_size": Sourced(227, f"{_BVLC} transform_param crop_size: 227 (no pad in conv1)"),
    "model.towers": Sourced(2, f"{_BVLC} conv2, conv4, conv5 group: 2"),
    "model.lrn": Sourced(True, f"{_BVLC} norm1 (bottom: conv1), norm2 (bottom: conv2)"),
    "model.lrn_size": Sourced(5, f"{_BVLC} norm1, norm2 local_size: 5"),
    "model.lrn_alpha": Sourced(1e-4, f"{_BVLC} norm1, norm2 alpha: 0.0001"),
    "model.lrn_beta": Sourced(0.75, f"{_BVLC} norm1, norm2 beta: 0.75"),
    "model.lrn_k": Sourced(
        1.0, "src/caffe/proto/caffe.proto LRNParameter k default 1 (not set in the prototxt)"
    ),
    "model.lrn_alpha_per_size": Sourced(True, "src/caffe/layers/lrn_layer.cpp: alpha_ / size_"),
    "model.lrn_across_towers": Sourced(
        True, f"{_BVLC} norm1, norm2 have no group (windows span all channels)"
    ),
    "model.lrn1_before_relu": Sourced(False, f"{_BVLC} relu1 runs in place on conv1 before norm1"),
    "model.conv2_spatial_norm": Sourced(False, f"{_BVLC} has no such layer"),
    "model.spatial_norm_size": Sourced(5, UNUSED + "conv2_spatial_norm = false"),
    "model.spatial_norm_alpha": Sourced(1e-3, UNUSED + "conv2_spatial_norm = false"),
    "model.spatial_norm_beta": Sourced(0.75, UNUSED + "conv2_spatial_norm = false"),
    "model.spatial_norm_k": Sourced(1.0, UNUSED + "conv2_spatial_norm = false"),
    "model.pool_size": Sourced(3, f"{_BVLC} pool1, pool2, pool5 kernel_size: 3"),
    "model.pool_stride": Sourced(2, f"{_BVLC} pool1, pool2, pool5 stride: 2"),
    "model.dropout": Sourced(0.5, f"{_BVLC} drop6, drop7 dropout_ratio: 0.5"),
    "model.dropout_style": Sourced(
        "inverted", "src/caffe/layers/dropout_layer.cpp: training outputs × 1/(1 − p)"
    ),
    "model.init_std": Sourced(
        0.01, f"{_BVLC} conv1-conv5, fc8 weight_filler std: 0.01 (fc6, fc7: 0.005, not representable here)"
    ),
    "model.init_std_conv345": Sourced(0.01, f"{_BVLC} conv3, conv4, conv5 weight_filler std: 0.01"),
    "model.init_bias_one": Sourced(0.1, f"{_BVLC} conv2, conv4, conv5, fc6, fc7 bias_filler value: 0.1"),
    "model.fc8_placement": Sourced(
        "split", "our choice: Caffe's fc8 is one layer; split as in the paper preset"
    ),
}
"""Caffe's bvlc_alexnet (for weights from ``alexnet import-caffe``): its ``[model]`` values only —
it has no TOML file; the other sections are not what Caffe's solver ran."""


PRESETS: dict[str, dict[str, Sourced]] = {"paper": PAPER, "cuda-convnet": CUDA_CONVNET, "caffe": CAFFE}
"""Every preset's table, by the name ``model.preset`` takes."""

PRESET_FILES: dict[str, tuple[str, ...]] = {
    "paper": ("configs/alexnet-2gpu.toml", "configs/alexnet-1gpu.toml"),
    "cuda-convnet": ("configs/cuda-convnet-2gpu.toml",),
    "caffe": (),
}
"""The TOML files that set each preset (checked against its table by the tests)."""

DEVIATIONS: dict[str, tuple[str, ...]] = {
    "cuda-convnet": (
        "progress of the 'dexp' schedules: cuda-convnet2 measures it in 3072-image data batches, "
        "(batches done - 1) / (epochs × batches per epoch) (python_util/gpumodel.py get_progress, "
        "make-data.py OUTPUT_BATCH_SIZE); we count 128-image steps, so a rate changes up to one data "
        "batch (24 steps) earlier or later",
        "lighting eigen-decomposition: cuda-convnet2 reads fixed values from make-data/input_meta; we "
        "compute them from the training set ('alexnet stats', data.stats), or fall back to ImageNet's "
        "published values",
        "data order and random streams: cuda-convnet2 shuffles its data batches and draws from rand_r; "
        "ours are seeded per (seed, epoch, index) so runs resume exactly",
    ),
}
"""What the preset still does differently from its source, and why (no config key changes these)."""


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of preset ``name`` (its ``model.*`` values) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    values = {k.split(".", 1)[1]: v.value for k, v in PRESETS[name].items() if k.startswith("model.")}
    return ModelConfig(**{**values, **overrides, "preset": name})


def preset_values(name: str) -> dict[str, Any]:
    """``"section.key" -> value`` of preset ``name`` (tuples as lists, as TOML and configs hold them)."""
    return {k: list(v.value) if isinstance(v.value, tuple) else v.value for k, v in PRESETS[name].items()}


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value)


def provenance_lines(key: str) -> list[str]:
    """One line per preset: ``name: value — source`` for ``"section.key"`` (none if no preset sets it)."""
    return [
        f"{name}: {_cell(table[key].value)} — {table[key].source}"
        for name, table in PRESETS.items()
        if key in table
    ]


def provenance_markdown() -> str:
    """The preset table of ``docs/presets.md``: every key of every preset, its values and their sources."""
    names = list(PRESETS)
    head = ["key"] + [f"`{n}`" for n in names] + [f"source ({n})" for n in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    keys = list(dict.fromkeys(k for t in PRESETS.values() for k in t))
    for key in keys:
        cells = [f"`{key}`"]
        cells += [f"`{_cell(PRESETS[n][key].value)}`" if key in PRESETS[n] else "–" for n in names]
        cells += [PRESETS[n][key].source if key in PRESETS[n] else "–" for n in names]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for name, notes in DEVIATIONS.items():
        lines.append("")
        lines.append(f"Remaining differences of `{name}` from its source (no key changes them):")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def check_tables() -> None:
    """Every key of every table is a field of the schema (raises ConfigError otherwise)."""
    for name, table in PRESETS.items():
        for key in table:
            section, _, field = key.partition(".")
            if section not in SECTIONS or field not in {f.name for f in fields(SECTIONS[section])}:
                raise ConfigError(f"preset {name!r}: {key} is not a config key")
