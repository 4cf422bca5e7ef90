"""How a saved model was trained, so that reference models for LiRA and RMIA can be trained
the same way: its architecture (fresh weights per model), the recorded training settings, its
DP-SGD settings (same noise multiplier and clipping norm) and the queries its training
augmentation implies. What is not replicated is said in ``notes``."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

from torch import nn

from trusttango.errors import require
from trusttango.train import Hook, TrainConfig


@dataclass
class Recipe:
    """What :class:`~trusttango.privacy.audits.reference.ReferenceModels` needs to mimic a model."""

    make_model: Callable[[], nn.Module]
    train_config: TrainConfig
    hooks: Callable[[], Sequence[Hook]] | None = None
    shift: int = 0
    flip: bool = False
    notes: list[str] = field(default_factory=list)


def _dp_hooks(privacy: dict) -> Callable[[], Sequence[Hook]]:
    from trusttango.privacy.dp import DPSGD

    def hooks() -> list[Hook]:
        return [DPSGD(noise_multiplier=privacy["noise_multiplier"], delta=privacy["delta"],
                      max_grad_norm=privacy["max_grad_norm"], accountant=privacy.get("accountant", "rdp"),
                      max_physical_batch_size=privacy.get("max_physical_batch_size"))]  # fmt: skip

    return hooks


def saved_recipe(saved, progress: bool = False) -> Recipe:
    """The recipe of a trusttango model (a :class:`~trusttango.models.io.SavedModel`) from what its
    ``config.json`` records; refused in one line where it records no training settings."""
    from trusttango.models import build_model

    record = saved.meta.get("train")
    require(isinstance(record, dict),
            "the model records no training settings ('train' in config.json): reference models cannot be "
            "trained like it; use the loss-threshold attack (--attack loss)")  # fmt: skip
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in record.items() if k in known} | {"progress": progress})
    seeds = itertools.count(1000)
    recipe = Recipe(lambda: build_model(saved.config, seed=next(seeds)), config)
    if isinstance(saved.meta.get("privacy"), dict):
        recipe.hooks = _dp_hooks(saved.meta["privacy"])
        recipe.notes.append("DP-SGD with the model's noise multiplier and clipping norm")
    augment = saved.config.augment
    if augment in ("shift", "flip_shift") and len(saved.config.input_shape) == 3:
        recipe.shift, recipe.flip = max(1, saved.config.input_shape[-2] // 8), augment == "flip_shift"
        recipe.notes.append(f"queries shifted by {recipe.shift} px{' and mirrored' if recipe.flip else ''}")
    recipe.notes.append("other training hooks (adversarial training, Lipschitz) are not replicated")
    return recipe
