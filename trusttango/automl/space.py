"""The search space over the unified architecture and its training, with per-modality
defaults derived from the data (AutoDL 2019 winners: input side from the median shape,
capped at a 64x64 area; see SPECS section 1).

A point of the space is a flat dict of Optuna parameters; :func:`to_configs` turns it into
``(model options, TrainConfig options)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import optuna

from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.models import BACKBONES, FUSIONS
from trusttango.models.backbones import backbone_spec
from trusttango.models.unified import AUGMENTATIONS
from trusttango.train import OPTIMIZERS, SCHEDULES

MAX_SIDE = 64  # kakaobrain: input capped at a 64x64 area


@dataclass
class SearchSpace:
    """Choices per parameter. ``side`` is the data's median spatial side; ``input_scale``
    multiplies it (capped at :data:`MAX_SIDE`, raised to the backbone's minimum)."""

    modality: str = "image"
    side: int = 28
    backbones: tuple[str, ...] = ("small_cnn", "resnet18", "mobilenet_v2")
    fusions: tuple[str, ...] = ("none",)
    input_scales: tuple[int, ...] = (1, 2)
    widths: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    depth: tuple[int, int] = (2, 4)
    bottlenecks: tuple[int, ...] = (64, 128, 256, 512)
    dropout: tuple[float, float] = (0.0, 0.5)
    activations: tuple[str, ...] = ("relu", "gelu", "silu")
    augments: tuple[str, ...] = AUGMENTATIONS
    optimizers: tuple[str, ...] = OPTIMIZERS
    lr: tuple[float, float] = (1e-4, 1e-2)
    schedules: tuple[str, ...] = SCHEDULES
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256)
    epochs: tuple[int, int] = (1, 10)
    default: dict = field(default_factory=dict)  # the fast first trial

    def __post_init__(self) -> None:
        for name in self.backbones:
            backbone_spec(name)
        for name in self.fusions:
            require(name in FUSIONS, f"unknown fusion {name!r}; choose one of {', '.join(FUSIONS)}")
        if not self.default:
            self.default = default_point(self)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SearchSpace:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def median_side(data: LabelledDataset) -> int:
    """Median spatial side of the examples (the last axis; per-example sizes in ``extra['sides']`` when given)."""
    sides = data.extra.get("sides") if isinstance(data.extra, dict) else None
    return int(np.median(sides)) if sides is not None else int(data.input_shape[-1])


def space_for(data: LabelledDataset, **overrides: object) -> SearchSpace:
    """Per-modality defaults: image side from the data; for audio / video, the fusions
    registered besides ``none`` (temporal 1D / 3D convolution, attention)."""
    temporal = tuple(f for f in FUSIONS if f != "none")
    fusions = ("none",) if data.modality == "image" or not temporal else temporal
    options = {"modality": data.modality, "side": median_side(data), "fusions": fusions}
    options.update(overrides)
    return SearchSpace(**options)


def default_point(space: SearchSpace) -> dict:
    """A fast, small configuration: the first trial, so the run scores from its first minute."""
    return {
        "backbone": space.backbones[0],
        "fusion": space.fusions[0],
        "input_scale": space.input_scales[0],
        "width": space.widths[min(1, len(space.widths) - 1)],
        "depth": space.depth[0],
        "bottleneck": space.bottlenecks[min(1, len(space.bottlenecks) - 1)],
        "dropout": min(max(0.1, space.dropout[0]), space.dropout[1]),
        "activation": space.activations[0],
        "augment": space.augments[0],
        "optimizer": space.optimizers[0],
        "lr": float(np.clip(2e-3, *space.lr)),
        "schedule": "onecycle" if "onecycle" in space.schedules else space.schedules[0],
        "batch_size": space.batch_sizes[min(1, len(space.batch_sizes) - 1)],
        "epochs": min(max(3, space.epochs[0]), space.epochs[1]),
    }


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict:
    """Sample one point of ``space`` (flat, every parameter always present: CMA-ES friendly)."""
    return {
        "backbone": trial.suggest_categorical("backbone", space.backbones),
        "fusion": trial.suggest_categorical("fusion", space.fusions),
        "input_scale": trial.suggest_categorical("input_scale", space.input_scales),
        "width": trial.suggest_categorical("width", space.widths),
        "depth": trial.suggest_int("depth", *space.depth),
        "bottleneck": trial.suggest_categorical("bottleneck", space.bottlenecks),
        "dropout": trial.suggest_float("dropout", *space.dropout),
        "activation": trial.suggest_categorical("activation", space.activations),
        "augment": trial.suggest_categorical("augment", space.augments),
        "optimizer": trial.suggest_categorical("optimizer", space.optimizers),
        "lr": trial.suggest_float("lr", *space.lr, log=True),
        "schedule": trial.suggest_categorical("schedule", space.schedules),
        "batch_size": trial.suggest_categorical("batch_size", space.batch_sizes),
        "epochs": trial.suggest_int("epochs", *space.epochs),
    }


def to_configs(point: dict, space: SearchSpace) -> tuple[dict, dict]:
    """``(model options for config_for, TrainConfig options)`` of a point of the space."""
    spec = BACKBONES[point["backbone"]]
    size = max(spec.min_size, min(MAX_SIDE, space.side * int(point["input_scale"])))
    depth = int(point["depth"])
    if point["backbone"] == "small_cnn":  # each stage but the last halves the side
        depth = max(1, min(depth, int(math.log2(size / 2)) + 1))
    model = {
        "backbone": point["backbone"],
        "fusion": point["fusion"],
        "input_size": size,
        "width": float(point["width"]),
        "depth": depth,
        "bottleneck": int(point["bottleneck"]),
        "dropout": float(point["dropout"]),
        "activation": point["activation"],
        "augment": point["augment"],
    }
    train = {key: point[key] for key in ("optimizer", "lr", "schedule", "batch_size", "epochs")}
    return model, train
