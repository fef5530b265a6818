"""The configuration schema: frozen dataclasses, one per section, each field documented.

Every field carries its documentation in ``metadata["doc"]`` (shown by ``alexnet config --explain``).
The defaults are the paper's published text; the presets and the source of each of their values are
in :mod:`alexnet.config.presets`; reading and writing TOML is :mod:`alexnet.config.loader`.
Validation of single values happens here (``__post_init__``), so a bad value is refused wherever a
config is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration problem, reported before any work starts."""


def _f(default: Any, doc: str) -> Any:
    """A dataclass field with its documentation attached."""
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults so configs stay immutable")
    return field(default=default, metadata={"doc": doc})


# --------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class ModelConfig:
    """The network (paper section 3). Defaults are the paper's published text (preset ``paper``)."""

    preset: Literal["paper", "cuda-convnet", "caffe"] = _f(
        "paper",
        "Base preset the other model keys override: 'paper' (the published text), "
        "'cuda-convnet' (cuda-convnet2's imagenet-2gpu-model configuration, Krizhevsky's released "
        "two-GPU files) or 'caffe' (what Caffe's bvlc_alexnet computes; for weights from 'alexnet "
        "import-caffe'); see alexnet.config.presets for the source of every value.",
    )
    num_classes: int = _f(1000, "Number of output classes of fc8 (ILSVRC: 1000).")
    input_size: Literal[224, 227] = _f(
        224,
        "Side of the input images (training crops, test views and mean-image windows follow it). "
        "224: the paper's, with cuda-convnet's output rule for conv1, 1 + ceil((224 - 11) / 4) = 55, "
        "i.e. 3 zero pixels padded at the right and bottom of the input. 227: Caffe's convention "
        "(no padding, floor((227 - 11) / 4) + 1 = 55). Both give 55x55 after conv1 and 6x6 pool5.",
    )
    towers: Literal[1, 2] = _f(
        2,
        "2: the paper's two towers. 1: the one-tower ablation (half the kernels in conv1-conv4, "
        "conv5 256, fc6/fc7 4096 — the paper's footnote in section 3.2).",
    )
    lrn: bool = _f(True, "Local response normalisation after conv1 and conv2 (section 3.3).")
    lrn_size: int = _f(5, "LRN window n: adjacent channels summed (odd).")
    lrn_alpha: float = _f(1e-4, "LRN α as written in the paper's formula.")
    lrn_beta: float = _f(0.75, "LRN exponent β.")
    lrn_k: float = _f(2.0, "LRN constant k.")
    lrn_alpha_per_size: bool = _f(
        False,
        "Divide α by n before multiplying the sum (cuda-convnet, Caffe and nn.LocalResponseNorm "
        "convention; α_eff = 2e-5). The paper's text does not divide.",
    )
    lrn_across_towers: bool = _f(
        False,
        "LRN windows span both towers' maps, as Caffe's ungrouped norm1/norm2 do: each tower "
        "receives the other's n//2 boundary maps at conv1 and conv2 (a crossing of its own, sites "
        "'lrn1'/'lrn2'). Caffe's computation, not the paper's connectivity (section 3.2).",
    )
    lrn1_before_relu: bool = _f(
        False, "Apply conv1's LRN before its ReLU (cuda-convnet); the paper applies it after."
    )
    conv2_spatial_norm: bool = _f(
        False, "cuda-convnet's extra within-map ('rnorm') normalisation after conv2's LRN; not in the paper."
    )
    spatial_norm_size: int = _f(5, "Window (size×size) of the conv2 spatial normalisation.")
    spatial_norm_alpha: float = _f(
        1e-3, "Scale of the spatial normalisation (divided by size², as cuda-convnet)."
    )
    spatial_norm_beta: float = _f(0.75, "Exponent of the spatial normalisation.")
    spatial_norm_k: float = _f(1.0, "Constant of the spatial normalisation (cuda-convnet's rnorm adds 1).")
    pool_size: int = _f(3, "Max-pool window z (section 3.4: z = 3 > s = 2 overlaps).")
    pool_stride: int = _f(2, "Max-pool stride s (2/2 is the 'no-overlap' ablation).")
    dropout: float = _f(0.5, "Dropout probability in fc6 and fc7 (section 4.2); 0 disables.")
    dropout_style: Literal["paper", "inverted"] = _f(
        "paper",
        "'paper': no scaling while training, outputs × (1−p) at test. 'inverted': kept units "
        "× 1/(1−p) while training, identity at test (cuda-convnet2 and PyTorch).",
    )
    init_std: float = _f(0.01, "Std of the zero-mean Gaussian initialising every weight (section 5).")
    init_std_conv345: float = _f(0.01, "Std for conv3, conv4, conv5 weights (cuda-convnet: 0.03).")
    init_bias_one: float = _f(
        1.0,
        "Value of the biases the paper sets to 1 (conv2, conv4, conv5, fc6, fc7); Caffe used 0.1 "
        "to avoid the flat-loss stall.",
    )
    fc8_placement: Literal["split", "a"] = _f(
        "split",
        "'split': each tower computes half of the classes from both towers' fc7 (the paper's "
        "'half of the neurons on each GPU'). 'a': all of fc8 on tower a (cuda-convnet).",
    )

    def __post_init__(self) -> None:
        _positive(self, "num_classes", "lrn_size", "spatial_norm_size", "pool_size", "pool_stride")
        for name in ("lrn_size", "spatial_norm_size"):
            if getattr(self, name) % 2 == 0:
                raise ConfigError(f"model.{name} must be odd, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.init_std < 0 or self.init_std_conv345 < 0:
            raise ConfigError("model.init_std and model.init_std_conv345 must be >= 0")
        if self.lrn_across_towers and self.towers != 2:
            raise ConfigError("model.lrn_across_towers needs two towers (model.towers = 2)")


# ---------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class DataConfig:
    """The data pipeline (paper section 2 and 4.1)."""

    root: str = _f("", "Dataset root holding train/<class>/ and val/<class>/ folders (ImageNet layout).")
    train_dir: str = _f("train", "Training sub-folder of root.")
    val_dir: str = _f("val", "Validation sub-folder of root.")
    image_size: int = _f(
        256,
        "Shorter side rescaled to this, then the central square kept (section 2). "
        "Crops and views are model.input_size wide.",
    )
    flip: bool = _f(True, "Random horizontal reflections in training (section 4.1).")
    random_crop: bool = _f(True, "Random crops in training; False uses the centre crop (ablation).")
    lighting_std: float = _f(0.1, "Std of α in the PCA colour noise (section 4.1); 0 disables it.")
    lighting_formula: Literal["paper", "cuda-convnet"] = _f(
        "paper",
        "PCA noise per pixel, in 0..255 units: 'paper' adds 255·Σ α_i λ_i p_i with λ the "
        "eigenvalues of the RGB covariance of 0..1-scaled pixels (the scale of the published values); "
        "'cuda-convnet' adds Σ α_i √λ_i p_i with λ of the 0..255 covariance (Krizhevsky's code).",
    )
    lighting_rescale: bool = _f(
        False,
        "After adding the lighting noise, scale the whole training input by 1/(1 + lighting_std) "
        "(cuda-convnet2's convdata.py, so the training inputs' overall scale stays close to the test "
        "inputs'); not in the paper.",
    )
    mean_window: Literal["crop", "centre"] = _f(
        "crop",
        "Which window of the 256x256 mean image is subtracted from a view: 'crop' the view's own "
        "window (mirrored with it), i.e. the mean subtracted from each pixel before cropping (section 2); "
        "'centre' the central input_size window for every view (cuda-convnet2's convdata.py).",
    )
    stats: str = _f(
        "",
        "File with the mean image and RGB eigen-decomposition ('alexnet stats'); empty: "
        "<root>/stats.pt if present, else ImageNet's published values with a warning.",
    )
    workers: int = _f(-1, "DataLoader worker processes; -1 = one per CPU core.")
    max_per_class: int = _f(0, "Use at most this many images per class (0 = all); for quick runs.")

    def __post_init__(self) -> None:
        _positive(self, "image_size")
        if self.lighting_std < 0:
            raise ConfigError("data.lighting_std must be >= 0")


# ------------------------------------------------------------------------------------------- optim
@dataclass(frozen=True)
class OptimConfig:
    """Stochastic gradient descent with the paper's update rule (section 5, eq. 1)."""

    lr: float = _f(0.01, "Initial learning rate ε (of the weights; the biases' is lr × bias_lr_mult).")
    momentum: float = _f(0.9, "Momentum μ.")
    weight_decay: float = _f(0.0005, "Weight decay λ (inside the update: v ← μv − λεw − ε∇L).")
    bias_lr_mult: float = _f(1.0, "Learning-rate multiplier for biases (cuda-convnet: 2).")
    bias_decay: bool = _f(True, "Apply weight decay to biases (cuda-convnet: no).")
    schedule: Literal["plateau", "milestones", "dexp"] = _f(
        "plateau",
        "'plateau': divide ε by 10 when the validation error stops improving (the paper); "
        "'milestones': at the epochs listed in milestones; 'dexp': cuda-convnet2's discrete exponential "
        "schedules, one for weights and one for biases, stepped by the fraction of the planned training "
        "steps done (epochs × steps per epoch).",
    )
    plateau_patience: int = _f(
        5,
        "Plateau rule: epochs in a row without an improvement of the validation error (by more than "
        "plateau_min_delta) before ε is divided by 10.",
    )
    plateau_min_delta: float = _f(
        0.001,
        "Plateau rule: an epoch counts as an improvement only if the validation error falls below "
        "the best so far by more than this (fraction; 0.001 = 0.1 points), so noise cannot keep the "
        "rule from firing.",
    )
    plateau_min_epochs: int = _f(
        10,
        "Plateau rule: ε stays at least this many epochs at each rate before a plateau may divide it "
        "(the rule cannot fire in the first, noisy epochs).",
    )
    plateau_max_epochs: int = _f(
        25,
        "Plateau rule: ε is divided anyway after this many epochs at one rate (0: never), so a curve "
        "that keeps creeping down still gets its three drops within ~90 epochs (at the latest after "
        "epochs 25, 50, 75).",
    )
    max_drops: int = _f(3, "Most times ε is divided by 10 ('three times prior to termination').")
    milestones: tuple[int, ...] = _f(
        (25, 50, 75), "Epochs after which ε is divided by 10 with schedule = 'milestones'."
    )
    dexp_factor: float = _f(
        250.0,
        "schedule = 'dexp', weights: ε falls from lr to lr / dexp_factor in dexp_steps equal "
        "geometric steps over the training (cuda-convnet2 epsW=dexp[base;tgtFactor;numSteps]).",
    )
    dexp_steps: int = _f(4, "schedule = 'dexp', weights: number of constant-ε stretches (numSteps).")
    dexp_bias_factor: float = _f(
        25.0,
        "schedule = 'dexp', biases: ε falls from lr × bias_lr_mult to that / dexp_bias_factor "
        "(cuda-convnet2 epsB=dexp[...]).",
    )
    dexp_bias_steps: int = _f(2, "schedule = 'dexp', biases: number of constant-ε stretches.")
    lr_scaling: Literal["none", "linear"] = _f(
        "none", "Data-parallel runs: 'linear' multiplies ε by the number of replicas."
    )

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError("optim.lr must be > 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("optim.momentum must be in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError("optim.weight_decay must be >= 0")
        _positive(
            self, "plateau_patience", "dexp_factor", "dexp_steps", "dexp_bias_factor", "dexp_bias_steps"
        )
        if self.plateau_min_delta < 0 or self.plateau_min_epochs < 0 or self.plateau_max_epochs < 0:
            raise ConfigError(
                "optim.plateau_min_delta, plateau_min_epochs and plateau_max_epochs must be >= 0"
            )


# ------------------------------------------------------------------------------------------- train
@dataclass(frozen=True)
class TrainConfig:
    """The training run: length, batch, checkpoints, logging, devices."""

    name: str = _f("alexnet", "Run name; the run directory is <runs_dir>/<name>.")
    runs_dir: str = _f("runs", "Parent folder of run directories (dashboards, checkpoints).")
    epochs: int = _f(90, "Number of passes over the training set (the paper: ~90).")
    batch_size: int = _f(128, "Images per step; both towers see the same batch (section 5).")
    seed: int = _f(0, "Seed for initialisation, data order and augmentation.")
    devices: tuple[str, ...] | str = _f(
        "auto",
        "'auto' (two GPUs, else one, else the CPU), 'single' (one GPU whatever the number present, "
        "else the CPU) or [tower a, tower b], e.g. ['cuda:0', 'cuda:1']. Data-parallel replicas: see "
        "docs/training.md, 'Data-parallel replicas'.",
    )
    grouped_when_single_device: bool = _f(
        True,
        "With both towers on one device, run the grouped-convolution twin (same math, faster); "
        "checkpoints keep the two-tower layout.",
    )
    checkpoint_minutes: float = _f(
        30.0, "Also checkpoint every this many minutes within an epoch (0: only per epoch)."
    )
    keep_last: int = _f(3, "Number of most recent checkpoints kept (the best one is kept as well).")
    log_every: int = _f(20, "Steps between console progress lines and scalar logs.")
    max_steps: int = _f(0, "Stop after this many steps in total (0: no limit); for smoke tests.")
    stall_warn_steps: int = _f(
        2000,
        "Warn when the loss has stayed within 0.05 of ln(num_classes) for this many steps (the "
        "known AlexNet stall with biases at 1; 0 disables the warning).",
    )
    val_limit: int = _f(0, "Validate each epoch on at most this many images (a fixed subset; 0 = all).")
    dashboard_images: int = _f(
        16,
        "Validation images shown with their top-5 labels, and fc7 embeddings (×16) written to the "
        "projector, each epoch (0: neither).",
    )
    dist_timeout_s: float = _f(
        600.0,
        "Data-parallel runs: seconds a collective may wait for the other replicas before the job "
        "fails (so no rank hangs when another died).",
    )
    cpu_allocator_cache: bool = _f(
        True,
        "When a tower runs on the CPU, keep freed memory in the process heap (glibc mallopt) "
        "instead of paging it in afresh for every large activation: about 10 % faster CPU steps, "
        "more resident memory kept. No effect on GPUs.",
    )
    channels_last: bool = _f(
        True,
        "Keep activations and weights in the channels_last (NHWC) memory format: faster on GPUs and, "
        "measured with make bench, on the CPU too (the LRN's window sum becomes one 1×1 convolution). "
        "Same numbers up to float rounding.",
    )
    precision: Literal["fp32", "tf32", "bf16"] = _f(
        "fp32",
        "Arithmetic (twogpu/precision.py), logged at start: 'fp32' the paper's IEEE float32 (TF32 off "
        "for cuDNN convolutions and matmuls); 'tf32' float32 with TF32 tensor cores allowed (GPUs); "
        "'bf16' bfloat16 autocast on GPUs (normalisations and loss in float32).",
    )
    compile: bool = _f(False, "Wrap each tower in torch.compile.")

    def __post_init__(self) -> None:
        _positive(self, "epochs", "batch_size", "keep_last", "log_every")
        if isinstance(self.devices, str) and self.devices not in ("auto", "single"):
            raise ConfigError(
                f"train.devices must be 'auto', 'single' or a pair of devices, got {self.devices!r}"
            )
        if not isinstance(self.devices, str) and len(self.devices) != 2:
            raise ConfigError(
                f"train.devices must name two devices (tower a, tower b), got {list(self.devices)}"
            )


# -------------------------------------------------------------------------------------------- eval
@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (section 6): centre crop and the ten-view average."""

    batch_size: int = _f(128, "Images per evaluation batch.")
    ten_view: bool = _f(True, "Also report the 10-view (corners + centre and mirrors) softmax average.")

    def __post_init__(self) -> None:
        _positive(self, "batch_size")


# ---------------------------------------------------------------------------------------------- all
@dataclass(frozen=True)
class Config:
    """A whole run's configuration."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"doc": "The network."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"doc": "The data pipeline."})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"doc": "The optimiser and schedule."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"doc": "The training run."})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"doc": "Evaluation."})

    def __post_init__(self) -> None:
        if self.model.input_size > self.data.image_size:
            raise ConfigError(
                f"model.input_size ({self.model.input_size}) exceeds data.image_size "
                f"({self.data.image_size}): the crops are cut from the image_size square"
            )


def _positive(obj: Any, *names: str) -> None:
    section = _SECTION_NAMES.get(type(obj).__name__, type(obj).__name__)
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {getattr(obj, name)}")


_SECTION_NAMES = {
    "ModelConfig": "model",
    "DataConfig": "data",
    "OptimConfig": "optim",
    "TrainConfig": "train",
    "EvalConfig": "eval",
}


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
"""Each section's name in TOML and its dataclass, in the order of :class:`Config`."""
