"""The unified architecture of "Two to Trust" (Amirian et al.), Figure 1.

    preprocess -> backbone -> fusion -> global pool -> bottleneck -> classifier

The model takes raw inputs (images in [0, 1]) and owns its preprocessing: resizing to the
backbone's input side, grey -> 3 channels where the backbone wants colour, normalisation,
and training-time augmentation. So attacks and explanations operate in pixel space.

Extension points for other modalities (audio spectrograms, video frames): the
:data:`PREPROCESSORS` and :data:`FUSIONS` registries, keyed by ``ModelConfig.modality``
and ``ModelConfig.fusion``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import InputError, require
from trusttango.models.backbones import backbone_spec
from trusttango.models.layers import activation
from trusttango.records import Record
from trusttango.schema import STRICT, validate

AUGMENTATIONS = ("none", "shift", "flip_shift", "speech")  # speech: audio only (trusttango.models.audio)
MAX_WIDTH = 4.0  # width multiplier (channels of every stage), in (0, MAX_WIDTH]
MAX_DEPTH = 8  # stages (or layers), in [1, MAX_DEPTH]
MAX_INPUT_SIZE = 1024  # side the backbone sees, in [the backbone's minimum, MAX_INPUT_SIZE]
MAX_BOTTLENECK = 8192  # bottleneck features, in [1, MAX_BOTTLENECK]


@dataclass
class ModelConfig(Record):
    """Everything needed to rebuild a model; serialised as JSON next to its weights."""

    __pydantic_config__ = STRICT  # read back by trusttango.schema: strict types, no unknown fields

    num_classes: int
    input_shape: tuple[int, ...] = (1, 28, 28)  # one raw example, as the data gives it
    modality: str = "image"
    backbone: str = "small_cnn"
    input_size: int = 28  # side the backbone sees (images are resized to it; unused for tables)
    width: float = 0.5
    depth: int = 3  # stages, for backbones that take it
    fusion: str = "none"
    bottleneck: int = 128
    dropout: float = 0.2
    activation: str = "relu"
    norm: str = "batch"
    augment: str = "none"
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])
    sample_rate: int = 16000  # audio: waveform rate in Hz
    n_mels: int = 64  # audio: mel bands of the spectrogram
    frames: int = 0  # video: frames selected per clip (0 = from the clip length)

    @classmethod
    def from_dict(cls, data: dict, source: object = "model config") -> ModelConfig:
        """``data`` (parsed JSON) validated field by field; ``source`` names it in the error."""
        return validate(cls, data, source)


class ImagePreprocess(nn.Module):
    """Resize, grey -> RGB when needed, normalise; shift / flip augmentation in training."""

    def __init__(self, cfg: ModelConfig, rgb: bool) -> None:
        super().__init__()
        channels = cfg.input_shape[0]
        self.size = cfg.input_size
        self.repeat = 3 if rgb and channels == 1 else 1
        self.augment = cfg.augment
        out_channels = channels * self.repeat
        self.out_channels = out_channels
        mean = torch.tensor(cfg.mean, dtype=torch.float32).expand(channels).repeat(self.repeat)
        std = torch.tensor(cfg.std, dtype=torch.float32).expand(channels).repeat(self.repeat)
        self.register_buffer("mean", mean.view(1, out_channels, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, out_channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.augment != "none":
            x = _augment(x, self.augment)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.repeat > 1:
            x = x.repeat(1, self.repeat, 1, 1)
        return (x - self.mean) / self.std


class TabularPreprocess(nn.Module):
    """Standardise each feature, then view a row ``(N, F)`` as an ``(N, F, 1, 1)`` map."""

    def __init__(self, cfg: ModelConfig, rgb: bool) -> None:
        super().__init__()
        features = cfg.input_shape[0]
        require(not rgb, f"backbone {cfg.backbone} takes images; tabular data needs backbone 'mlp'")
        self.out_channels = features
        self.register_buffer(
            "mean", torch.tensor(cfg.mean, dtype=torch.float32).expand(features).clone(), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(cfg.std, dtype=torch.float32).expand(features).clone(), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std)[:, :, None, None]


def _augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Random shifts of up to 1/8 of the side (zero padding) and, for ``flip_shift``, h-flips."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2,)).tolist()
    x = padded[:, :, dy : dy + h, dx : dx + w]
    if policy == "flip_shift":
        flip = torch.rand(n, device=x.device) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    return x


PREPROCESSORS: dict[str, Callable[[ModelConfig, bool], nn.Module]] = {
    "image": ImagePreprocess,
    "tabular": TabularPreprocess,
}
FUSIONS: dict[str, Callable[[ModelConfig, int], nn.Module]] = {"none": lambda cfg, channels: nn.Identity()}
# per-modality option defaults for config_for (audio / video modules add theirs)
MODALITY_DEFAULTS: dict[str, dict[str, object]] = {"tabular": {"backbone": "mlp"}}


def _check_sizes(cfg: ModelConfig, pools_per_stage: bool) -> None:
    """Every size option within its named limit, before any layer is allocated."""
    require(0 < cfg.width <= MAX_WIDTH, f"width must lie in (0, {MAX_WIDTH:g}] (MAX_WIDTH), got {cfg.width:g}")
    require(1 <= cfg.depth <= MAX_DEPTH, f"depth must lie in [1, {MAX_DEPTH}] (MAX_DEPTH), got {cfg.depth}")
    require(
        cfg.input_size <= MAX_INPUT_SIZE,
        f"input_size must be <= {MAX_INPUT_SIZE} (MAX_INPUT_SIZE), got {cfg.input_size}",
    )
    require(
        1 <= cfg.bottleneck <= MAX_BOTTLENECK,
        f"bottleneck must lie in [1, {MAX_BOTTLENECK}] (MAX_BOTTLENECK), got {cfg.bottleneck}",
    )
    require(0 <= cfg.dropout < 1, f"dropout must lie in [0, 1), got {cfg.dropout:g}")
    side, halvings = 2 ** (cfg.depth - 1), cfg.depth - 1
    require(
        not pools_per_stage or cfg.input_size >= side,
        f"backbone {cfg.backbone} halves its input {halvings} times at depth {cfg.depth}: input_size must be >= {side}",
    )


class UnifiedModel(nn.Module):
    """Classifier ``raw input -> logits (N, num_classes)`` built from a :class:`ModelConfig`.

    Attributes ``preprocess``, ``backbone``, ``fusion``, ``pool``, ``bottleneck`` and
    ``head`` are the stages of Figure 1; :meth:`features` returns the bottleneck output
    (the penultimate representation used by probes, detectors and shift tests).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        spec = backbone_spec(cfg.backbone)
        require(cfg.modality in PREPROCESSORS, f"unknown modality {cfg.modality!r}; known: {', '.join(PREPROCESSORS)}")
        require(cfg.fusion in FUSIONS, f"unknown fusion {cfg.fusion!r}; choose one of {', '.join(FUSIONS)}")
        require(cfg.augment in AUGMENTATIONS, f"unknown augmentation {cfg.augment!r}; choose one of {AUGMENTATIONS}")
        require(cfg.num_classes >= 2, f"num_classes must be >= 2, got {cfg.num_classes}")
        require(cfg.input_size >= spec.min_size, f"backbone {cfg.backbone} needs input_size >= {spec.min_size}")
        _check_sizes(cfg, spec.pools_per_stage)
        self.config = cfg
        self.preprocess = PREPROCESSORS[cfg.modality](cfg, spec.rgb)
        in_channels = self.preprocess.out_channels
        self.backbone, channels = spec.build(cfg.width, cfg.depth, cfg.activation, cfg.norm, in_channels)
        self.fusion = FUSIONS[cfg.fusion](cfg, channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.bottleneck = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, cfg.bottleneck), activation(cfg.activation), nn.Dropout(cfg.dropout)
        )
        self.head = nn.Linear(cfg.bottleneck, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features ``(N, bottleneck)`` of raw inputs ``x``."""
        expected = tuple(self.config.input_shape)
        if tuple(x.shape[1:]) != expected:
            raise InputError(f"model expects inputs shaped (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        return self.bottleneck(self.pool(self.fusion(self.backbone(self.preprocess(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(cfg: ModelConfig, seed: int | None = 0) -> UnifiedModel:
    """Build a randomly initialised model; the same ``seed`` gives the same weights."""
    if seed is None:
        return UnifiedModel(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UnifiedModel(cfg)


def config_for(data_shape: tuple[int, ...], num_classes: int, **overrides: object) -> ModelConfig:
    """A :class:`ModelConfig` for data of ``data_shape`` with sensible defaults.

    The input side defaults to the data's side, raised to the backbone's minimum. Other
    defaults per modality come from :data:`MODALITY_DEFAULTS` (tabular: the ``mlp`` backbone).
    """
    cfg = ModelConfig(num_classes=num_classes, input_shape=tuple(data_shape), input_size=int(data_shape[-1]))
    overrides = {**MODALITY_DEFAULTS.get(str(overrides.get("modality", "image")), {}), **overrides}
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise InputError(f"unknown model option {key!r}")
        setattr(cfg, key, value)
    if "input_size" not in overrides:
        cfg.input_size = max(cfg.input_size, backbone_spec(cfg.backbone).min_size)
    return cfg


def check_compatible(cfg: ModelConfig, data: object) -> None:
    """Refuse ``data`` (anything with ``input_shape`` and ``num_classes``, e.g. a
    :class:`~trusttango.data.base.LabelledDataset`) whose input shape or class count the
    model of ``cfg`` was not built for, with an :class:`InputError` naming both."""
    shape = tuple(data.input_shape)
    require(shape == tuple(cfg.input_shape), f"model expects inputs shaped {tuple(cfg.input_shape)}, data has {shape}")
    require(data.num_classes == cfg.num_classes, f"model has {cfg.num_classes} classes, data has {data.num_classes}")
