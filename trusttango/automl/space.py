"""The search space over the unified architecture and its training, with per-modality
defaults derived from the data (AutoDL 2019 winners: input side from the median shape,
capped at a 64x64 area).

A point of the space is a flat dict of Optuna parameters; :func:`to_configs` turns it into
``(model options, TrainConfig options)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import optuna

from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.models import BACKBONES, FUSIONS
from trusttango.models.backbones import backbone_spec
from trusttango.models.unified import AUGMENTATIONS
from trusttango.records import Record
from trusttango.schema import STRICT, validate
from trusttango.train import OPTIMIZERS, SCHEDULES

MAX_SIDE = 64  # kakaobrain: input capped at a 64x64 area
DEFAULT_STEPS = 300  # optimiser steps of the default point on small data
QUICK_EPOCHS = 10  # passes of the quick-start model over its subsample (its time cap usually ends it first)


@dataclass
class SearchSpace(Record):
    """Choices per parameter. ``side`` is the data's median spatial side; ``input_scale``
    multiplies it (capped at :data:`MAX_SIDE`, raised to the backbone's minimum)."""

    __pydantic_config__ = STRICT  # read back from search.json by trusttango.schema

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
    augments: tuple[str, ...] = tuple(a for a in AUGMENTATIONS if a != "speech")
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

    @classmethod
    def from_dict(cls, data: dict, source: object = "search space") -> SearchSpace:
        """``data`` (parsed JSON) validated field by field; ``source`` names it in the error."""
        return validate(cls, data, source)


def median_side(data: LabelledDataset) -> int:
    """Median spatial side of the examples (the last axis; per-example sizes in ``extra['sides']`` when given)."""
    sides = data.extra.get("sides") if isinstance(data.extra, dict) else None
    return int(np.median(sides)) if sides is not None else int(data.input_shape[-1])


def space_for(data: LabelledDataset, **overrides: object) -> SearchSpace:
    """Per-modality defaults: image side from the data; for audio / video, the fusions
    registered besides ``none`` (temporal 1D / 3D convolution, attention); for audio, the
    augmentation policies ``speech`` (the default), ``shift`` and ``none``, never flips."""
    temporal = tuple(f for f in FUSIONS if f != "none")
    fusions = ("none",) if data.modality == "image" or not temporal else temporal
    options = {"modality": data.modality, "side": median_side(data), "fusions": fusions}
    if data.modality == "audio":
        options["augments"] = ("speech", "shift", "none")
    options.update(overrides)
    space = SearchSpace(**options)
    if "default" not in overrides:
        space.default = sized_default(space, len(data))
    return space


def sized_default(space: SearchSpace, examples: int) -> dict:
    """The default point fitted to the training-set size: batch 32 below 10k examples, and
    enough epochs (at least 3) for :data:`DEFAULT_STEPS` optimiser steps, within the space."""
    point = dict(space.default)
    if examples < 10_000 and 32 in space.batch_sizes:
        point["batch_size"] = 32
    steps_per_epoch = max(1, math.ceil(examples / point["batch_size"]))
    point["epochs"] = int(np.clip(max(3, math.ceil(DEFAULT_STEPS / steps_per_epoch)), *space.epochs))
    return point


def default_point(space: SearchSpace) -> dict:
    """The first trial: the foundation's default small CNN (``ModelConfig`` / ``TrainConfig``
    defaults, 3 epochs), known to be good on small images, clipped to the space; with a cosine
    schedule, which unlike one-cycle's warm-up learns fast from the first step (anytime)."""

    def pick(choices: tuple, value: object) -> object:
        return value if value in choices else choices[min(1, len(choices) - 1)]

    return {
        "backbone": space.backbones[0],
        "fusion": space.fusions[0],
        "input_scale": space.input_scales[0],
        "width": pick(space.widths, 0.5),
        "depth": int(np.clip(3, *space.depth)),
        "bottleneck": pick(space.bottlenecks, 128),
        "dropout": float(np.clip(0.2, *space.dropout)),
        "activation": space.activations[0],
        "augment": space.augments[0],
        "optimizer": space.optimizers[0],
        "lr": float(np.clip(2e-3, *space.lr)),
        "schedule": "cosine" if "cosine" in space.schedules else space.schedules[0],
        "batch_size": pick(space.batch_sizes, 128),
        "epochs": int(np.clip(3, *space.epochs)),
    }


def quick_configs(space: SearchSpace) -> tuple[dict, dict]:
    """``(model options, TrainConfig options)`` of the quick-start model: the default point at
    the narrowest width, fewest stages and half the input side (AutoDL 2019 winners: a fast
    first prediction matters most on the log time axis)."""
    point = {**space.default, "width": min(space.widths), "depth": space.depth[0], "input_scale": space.input_scales[0]}
    model, train = to_configs(point, space)
    spec = BACKBONES[point["backbone"]]
    model["input_size"] = max(spec.min_size, model["input_size"] // 2 if model["input_size"] >= 16 else 0)
    train.update(batch_size=64, lr=3e-3, schedule="constant", epochs=QUICK_EPOCHS)
    return model, train


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
