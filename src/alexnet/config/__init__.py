"""Configuration: the schema (:mod:`.schema`), the presets with the source of every value
(:mod:`.presets`), reading and writing TOML (:mod:`.loader`) and ``alexnet config --explain``
(:mod:`.explain`). Import from here."""

from alexnet.config.explain import explain
from alexnet.config.loader import (
    config_from_dict,
    config_to_dict,
    config_to_toml,
    load_config,
    parse_override,
    read_preset,
    toml_string,
    toml_value,
)
from alexnet.config.presets import PRESETS, Sourced, model_preset, preset_values, provenance_markdown
from alexnet.config.schema import (
    SECTIONS,
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    TrainConfig,
)

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "PRESETS",
    "SECTIONS",
    "Sourced",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "explain",
    "load_config",
    "model_preset",
    "parse_override",
    "preset_values",
    "provenance_markdown",
    "read_preset",
    "toml_string",
    "toml_value",
]
