"""Configuration: frozen dataclasses, one per section, loaded from TOML and ``--set`` overrides.

Every field carries its documentation in ``metadata["doc"]`` (shown by ``alexnet config --explain``).
Unknown sections or keys and wrong types are errors that name the file and key; they are raised
before any work starts. The resolved config (every field, defaults included) is written into the
run directory and into every checkpoint.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence


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
        "paper", "Base preset the other model keys override: 'paper' (published text), "
        "'cuda-convnet' (Krizhevsky's released layers-145 configuration) or 'caffe' (what Caffe's "
        "bvlc_alexnet computes; for weights from 'alexnet import-caffe').")
    num_classes: int = _f(1000, "Number of output classes of fc8 (ILSVRC: 1000).")
    towers: Literal[1, 2] = _f(
        2, "2: the paper's two towers. 1: the one-tower ablation (half the kernels in conv1-conv4, "
        "conv5 256, fc6/fc7 4096 — the paper's footnote in section 3.2).")
    lrn: bool = _f(True, "Local response normalisation after conv1 and conv2 (section 3.3).")
    lrn_size: int = _f(5, "LRN window n: adjacent channels summed (odd).")
    lrn_alpha: float = _f(1e-4, "LRN α as written in the paper's formula.")
    lrn_beta: float = _f(0.75, "LRN exponent β.")
    lrn_k: float = _f(2.0, "LRN constant k.")
    lrn_alpha_per_size: bool = _f(
        False, "Divide α by n before multiplying the sum (cuda-convnet, Caffe and nn.LocalResponseNorm "
        "convention; α_eff = 2e-5). The paper's text does not divide.")
    lrn_across_towers: bool = _f(
        False, "LRN windows span both towers' maps, as Caffe's ungrouped norm1/norm2 do: each tower "
        "receives the other's n//2 boundary maps at conv1 and conv2 (a crossing of its own, sites "
        "'lrn1'/'lrn2'). Caffe's computation, not the paper's connectivity (section 3.2).")
    lrn1_before_relu: bool = _f(
        False, "Apply conv1's LRN before its ReLU (cuda-convnet); the paper applies it after.")
    conv2_spatial_norm: bool = _f(
        False, "cuda-convnet's extra within-map ('rnorm') normalisation after conv2's LRN; not in the paper.")
    spatial_norm_size: int = _f(5, "Window (size×size) of the conv2 spatial normalisation.")
    spatial_norm_alpha: float = _f(1e-3, "Scale of the spatial normalisation (divided by size², as cuda-convnet).")
    spatial_norm_beta: float = _f(0.75, "Exponent of the spatial normalisation.")
    spatial_norm_k: float = _f(1.0, "Constant of the spatial normalisation (cuda-convnet's rnorm adds 1).")
    pool_size: int = _f(3, "Max-pool window z (section 3.4: z = 3 > s = 2 overlaps).")
    pool_stride: int = _f(2, "Max-pool stride s (2/2 is the 'no-overlap' ablation).")
    dropout: float = _f(0.5, "Dropout probability in fc6 and fc7 (section 4.2); 0 disables.")
    dropout_style: Literal["paper", "inverted"] = _f(
        "paper", "'paper': no scaling while training, outputs × (1−p) at test. 'inverted': PyTorch's "
        "convention (× 1/(1−p) while training).")
    init_std: float = _f(0.01, "Std of the zero-mean Gaussian initialising every weight (section 5).")
    init_std_conv345: float = _f(0.01, "Std for conv3, conv4, conv5 weights (cuda-convnet: 0.03).")
    init_bias_one: float = _f(
        1.0, "Value of the biases the paper sets to 1 (conv2, conv4, conv5, fc6, fc7); Caffe used 0.1 "
        "to avoid the flat-loss stall.")
    fc8_placement: Literal["split", "a"] = _f(
        "split", "'split': each tower computes half of the classes from both towers' fc7 (the paper's "
        "'half of the neurons on each GPU'). 'a': all of fc8 on tower a (cuda-convnet).")

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


MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cuda-convnet": {
        "lrn_alpha_per_size": True,
        "lrn1_before_relu": True,
        "conv2_spatial_norm": True,
        "init_std_conv345": 0.03,
        "fc8_placement": "a",
    },
    # BVLC Caffe, models/bvlc_alexnet/train_val.prototxt (norm1/norm2: local_size 5, alpha 1e-4,
    # beta 0.75, k left at LRNParameter's default 1, not grouped; relu1 before norm1; bias_filler
    # 0.1 in conv2, conv4, conv5, fc6, fc7), src/caffe/layers/lrn_layer.cpp (alpha_ / size_) and
    # dropout_layer.cpp (train outputs × 1/(1 − p): inverted).
    "caffe": {
        "lrn_alpha_per_size": True,
        "lrn_k": 1.0,
        "lrn_across_towers": True,
        "dropout_style": "inverted",
        "init_bias_one": 0.1,
    },
}
"""Each preset as its differences from the paper's text (documented in README, 'Presets')."""


def model_preset(name: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of preset ``name`` with ``overrides`` applied."""
    if name not in MODEL_PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(MODEL_PRESETS)}")
    return ModelConfig(**{**MODEL_PRESETS[name], **overrides, "preset": name})


# ---------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class DataConfig:
    """The data pipeline (paper section 2 and 4.1)."""

    root: str = _f("", "Dataset root holding train/<class>/ and val/<class>/ folders (ImageNet layout).")
    train_dir: str = _f("train", "Training sub-folder of root.")
    val_dir: str = _f("val", "Validation sub-folder of root.")
    image_size: int = _f(256, "Shorter side rescaled to this, then the central square kept (section 2).")
    crop_size: int = _f(227, "Side of the random training crops and the test views.")
    flip: bool = _f(True, "Random horizontal reflections in training (section 4.1).")
    random_crop: bool = _f(True, "Random crops in training; False uses the centre crop (ablation).")
    lighting_std: float = _f(0.1, "Std of α in the PCA colour noise (section 4.1); 0 disables it.")
    lighting_formula: Literal["paper", "cuda-convnet"] = _f(
        "paper", "PCA noise per pixel, in 0..255 units: 'paper' adds 255·Σ α_i λ_i p_i with λ the "
        "eigenvalues of the RGB covariance of 0..1-scaled pixels (the scale of the published values); "
        "'cuda-convnet' adds Σ α_i √λ_i p_i with λ of the 0..255 covariance (Krizhevsky's code).")
    stats: str = _f("", "File with the mean image and RGB eigen-decomposition ('alexnet stats'); empty: "
                        "<root>/stats.pt if present, else ImageNet's published values with a warning.")
    workers: int = _f(-1, "DataLoader worker processes; -1 = one per CPU core.")
    max_per_class: int = _f(0, "Use at most this many images per class (0 = all); for quick runs.")

    def __post_init__(self) -> None:
        _positive(self, "image_size", "crop_size")
        if self.crop_size > self.image_size:
            raise ConfigError(f"data.crop_size ({self.crop_size}) exceeds data.image_size ({self.image_size})")
        if self.lighting_std < 0:
            raise ConfigError("data.lighting_std must be >= 0")


# ------------------------------------------------------------------------------------------- optim
@dataclass(frozen=True)
class OptimConfig:
    """Stochastic gradient descent with the paper's update rule (section 5, eq. 1)."""

    lr: float = _f(0.01, "Initial learning rate ε.")
    momentum: float = _f(0.9, "Momentum μ.")
    weight_decay: float = _f(0.0005, "Weight decay λ (inside the update: v ← μv − λεw − ε∇L).")
    bias_lr_mult: float = _f(1.0, "Learning-rate multiplier for biases (cuda-convnet: 2).")
    bias_decay: bool = _f(True, "Apply weight decay to biases (cuda-convnet: no).")
    schedule: Literal["plateau", "milestones"] = _f(
        "plateau", "'plateau': divide ε by 10 when validation error stops improving (the paper); "
        "'milestones': at the epochs listed in milestones.")
    plateau_patience: int = _f(5, "Epochs without improvement of validation error before ε is divided by 10.")
    max_drops: int = _f(3, "Most times ε is divided by 10 ('three times prior to termination').")
    milestones: tuple[int, ...] = _f((25, 51, 78), "Epochs at which ε is divided by 10 with schedule = 'milestones'.")
    lr_scaling: Literal["none", "linear"] = _f(
        "none", "Data-parallel runs: 'linear' multiplies ε by the number of replicas.")

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError("optim.lr must be > 0")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("optim.momentum must be in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError("optim.weight_decay must be >= 0")


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
        "auto", "'auto' (two GPUs, else one, else the CPU) or [tower a, tower b], e.g. ['cuda:0', 'cuda:1'].")
    grouped_when_single_device: bool = _f(
        True, "With both towers on one device, run the grouped-convolution twin (same math, faster); "
              "checkpoints keep the two-tower layout.")
    checkpoint_minutes: float = _f(30.0, "Also checkpoint every this many minutes within an epoch (0: only per epoch).")
    keep_last: int = _f(3, "Number of most recent checkpoints kept (the best one is kept as well).")
    log_every: int = _f(20, "Steps between console progress lines and scalar logs.")
    max_steps: int = _f(0, "Stop after this many steps in total (0: no limit); for smoke tests.")
    stall_warn_steps: int = _f(
        2000, "Warn when the loss has stayed within 0.05 of ln(num_classes) for this many steps (the "
              "known AlexNet stall with biases at 1; 0 disables the warning).")
    val_limit: int = _f(0, "Validate each epoch on at most this many images (a fixed subset; 0 = all).")
    dashboard_images: int = _f(
        16, "Validation images shown with their top-5 labels, and fc7 embeddings (×16) written to the "
            "projector, each epoch (0: neither).")
    dist_timeout_s: float = _f(
        600.0, "Data-parallel runs: seconds a collective may wait for the other replicas before the job "
               "fails (so no rank hangs when another died).")
    cpu_allocator_cache: bool = _f(
        True, "When a tower runs on the CPU, keep freed memory in the process heap (glibc mallopt) "
              "instead of paging it in afresh for every large activation: about 10 % faster CPU steps, "
              "more resident memory kept. No effect on GPUs.")
    channels_last: bool = _f(
        True, "Keep activations and weights in the channels_last (NHWC) memory format: faster on GPUs and, "
              "measured with make bench, on the CPU too (the LRN's window sum becomes one 1×1 convolution). "
              "Same numbers up to float rounding.")
    amp: Literal["none", "bf16"] = _f("none", "Mixed precision autocast on CUDA; 'none' is the paper's fp32.")
    compile: bool = _f(False, "Wrap each tower in torch.compile.")

    def __post_init__(self) -> None:
        _positive(self, "epochs", "batch_size", "keep_last", "log_every")
        if isinstance(self.devices, str) and self.devices != "auto":
            raise ConfigError(f"train.devices must be 'auto' or a pair of devices, got {self.devices!r}")
        if not isinstance(self.devices, str) and len(self.devices) != 2:
            raise ConfigError(f"train.devices must name two devices (tower a, tower b), got {list(self.devices)}")


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


def _positive(obj: Any, *names: str) -> None:
    section = _SECTION_NAMES.get(type(obj).__name__, type(obj).__name__)
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {getattr(obj, name)}")


_SECTION_NAMES = {"ModelConfig": "model", "DataConfig": "data", "OptimConfig": "optim",
                  "TrainConfig": "train", "EvalConfig": "eval"}


# ------------------------------------------------------------------------------------------ loading
def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (TOML types), returning it in canonical form."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if not any(value == c and type(value) is type(c) for c in choices):
            raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of the allowed types ({'; '.join(errors)})")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(hint)[:1]
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {where}")


def _build_section(cls: type, values: Mapping[str, Any], source: str, section: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
                          f"known keys of [{section}]: {', '.join(sorted(known))}")
    kwargs = {k: _coerce(v, hints[k], f"{source}: {section}.{k}") for k, v in values.items()}
    if cls is ModelConfig:
        preset = kwargs.pop("preset", "paper")
        try:
            return model_preset(preset, **kwargs)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def config_from_dict(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Build a validated :class:`Config` from nested sections (as read from TOML)."""
    sections = {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; known sections: {sorted(sections)}")
    built = {}
    for name, factory in sections.items():
        values = data.get(name, {})
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table of keys, got {values!r}")
        built[name] = _build_section(type(factory()), values, source, name)
    return Config(**built)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as TOML (``0.1``, ``true``, ``"x"``, ``[1, 2]``)
    and, failing that, taken as a bare string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) != 2 or not all(path):
        raise ConfigError(f"--set {text!r}: the key must be section.key, e.g. optim.lr=0.02")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def _check_names(data: Mapping[str, Any], source: str) -> None:
    """Unknown sections or keys in one TOML file, reported against that file."""
    sections = {f.name: type(f.default_factory()) for f in dataclasses.fields(Config)}  # type: ignore[misc]
    for name, values in data.items():
        if name not in sections:
            raise ConfigError(f"{source}: unknown section [{name}]; known sections: {sorted(sections)} "
                              f"(and the top-level key 'base')")
        if isinstance(values, Mapping):
            known = {f.name for f in dataclasses.fields(sections[name])}
            unknown = sorted(set(values) - known)
            if unknown:
                raise ConfigError(f"{source}: unknown key(s) {', '.join(f'{name}.{k}' for k in unknown)}; "
                                  f"known keys of [{name}]: {', '.join(sorted(known))}")


def read_preset(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A TOML preset as nested sections, with its ``base`` presets merged in.

    A top-level key ``base = "other.toml"`` (a path relative to this file) names the preset this one
    starts from: the base is read first (it may have a base of its own) and then this file's keys
    replace the base's, key by key within each section. Every file's sections and keys are checked
    against the config, so a typo is reported in the file that has it. Used by the ablation presets
    (``configs/ablations/``), each the paper preset plus one change.
    """
    path = Path(path)
    if path.resolve() in _chain:
        loop = " -> ".join(str(p) for p in (*_chain, path.resolve()))
        raise ConfigError(f"{path}: the 'base' chain loops: {loop}")
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        where = f" (named as 'base' in {_chain[-1]})" if _chain else ""
        raise ConfigError(f"config file not found: {path}{where}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    base = data.pop("base", None)
    _check_names(data, str(path))
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base must be the path of another TOML preset, got {base!r}")
    merged = read_preset(path.parent / base, (*_chain, path.resolve()))
    for section, values in data.items():
        if isinstance(values, Mapping) and isinstance(merged.get(section), Mapping):
            merged[section] = {**merged[section], **values}
        else:
            merged[section] = values
    return merged


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load a TOML preset (or the defaults when ``path`` is None), merging its ``base`` presets
    (:func:`read_preset`), and apply ``--set`` overrides."""
    data: dict[str, dict[str, Any]] = {}
    source = "<defaults>"
    if path is not None:
        path = Path(path)
        source = str(path)
        data = read_preset(path)
    for text in overrides:
        (section, key), value = parse_override(text)
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"--set {text!r}: [{section}] is not a table")
        table[key] = value
    if overrides:
        source = f"{source} with --set {' '.join(overrides)}"
    return config_from_dict(data, source)


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Every field of every section, as plain TOML-compatible values (tuples become lists)."""
    def plain(v: Any) -> Any:
        return list(v) if isinstance(v, tuple) else v
    return {s.name: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, s.name)).items()}
            for s in dataclasses.fields(cfg)}


def config_to_toml(cfg: Config) -> str:
    """The resolved config as TOML text (written into each run directory)."""
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return repr(v)
    lines = []
    for section, values in config_to_dict(cfg).items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {fmt(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def explain(cfg_cls: type = Config) -> str:
    """Every key with its default and documentation, for ``alexnet config --explain``."""
    out = []
    for section in dataclasses.fields(cfg_cls):
        cls = type(section.default_factory())  # type: ignore[misc]
        out.append(f"[{section.name}]  {cls.__doc__.splitlines()[0]}")
        for f in dataclasses.fields(cls):
            out.append(f"  {f.name} = {f.default!r}\n      {f.metadata.get('doc', '')}")
    return "\n".join(out)
