"""AlexNet as published (Krizhevsky, Sutskever & Hinton, NIPS 2012): two towers, two devices."""

from alexnet.config import Config, ConfigError, ModelConfig, load_config, model_preset
from alexnet.models.grouped import (
    GroupedAlexNet,
    grouped_from,
    to_grouped_state,
    to_two_tower_state,
    two_tower_from,
)
from alexnet.models.model import AlexNet

__version__ = "0.1.0"

__all__ = [
    "AlexNet",
    "Config",
    "ConfigError",
    "GroupedAlexNet",
    "ModelConfig",
    "grouped_from",
    "load_config",
    "model_preset",
    "to_grouped_state",
    "to_two_tower_state",
    "two_tower_from",
]
