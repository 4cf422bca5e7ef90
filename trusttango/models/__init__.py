"""The unified architecture, its building blocks, and model files."""

from trusttango.models import audio, temporal, video  # noqa: F401  (register modalities and fusions)
from trusttango.models.backbones import BACKBONES, register_backbone
from trusttango.models.io import SavedModel, load_model, read_config, register_format, save_model
from trusttango.models.layers import HalfHuberReLU
from trusttango.models.unified import (
    FUSIONS,
    PREPROCESSORS,
    ModelConfig,
    UnifiedModel,
    build_model,
    check_compatible,
    config_for,
)

__all__ = [
    "BACKBONES",
    "FUSIONS",
    "PREPROCESSORS",
    "HalfHuberReLU",
    "ModelConfig",
    "SavedModel",
    "UnifiedModel",
    "build_model",
    "check_compatible",
    "config_for",
    "load_model",
    "read_config",
    "register_format",
    "register_backbone",
    "save_model",
]
