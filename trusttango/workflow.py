"""End-to-end helpers the CLI and the audit share: data in, saved model out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import torch

from trusttango.data.base import LabelledDataset, Splits
from trusttango.evaluate import evaluate
from trusttango.models.io import SavedModel
from trusttango.models.unified import build_model, config_for
from trusttango.train import Hook, TrainConfig, fit


def channel_stats(data: LabelledDataset) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of image data (for the model's normalisation)."""
    x = data.x.transpose(0, 1).reshape(data.x.shape[1], -1)
    return x.mean(1).tolist(), x.std(1).clamp_min(1e-6).tolist()


def train_model(
    splits: Splits,
    train_config: TrainConfig | None = None,
    hooks: Sequence[Hook] = (),
    **model_options: object,
) -> SavedModel:
    """Build a model for ``splits`` (options as :class:`~trusttango.models.ModelConfig`
    fields), train it with the one loop, evaluate it on the test split, and return it with
    its history, test metrics and seed as metadata (ready for :func:`save_model`)."""
    tc = train_config or TrainConfig()
    mean, std = channel_stats(splits.train)
    model_options = {"mean": mean, "std": std, "modality": splits.train.modality, **model_options}
    cfg = config_for(splits.train.input_shape, splits.train.num_classes, **model_options)
    model = build_model(cfg, seed=tc.seed)
    history = fit(model, splits.train, splits.val, tc, hooks)
    model.eval()
    result = evaluate(model, splits.test)
    meta = {
        "seed": tc.seed,
        "data": splits.train.name.split("/")[0],
        "train": asdict(tc),
        "history": history.to_dict(),
        "metrics": {"test_accuracy": result.accuracy},
    }
    for hook in hooks:
        meta.update(hook.meta())
    return SavedModel(model.to(torch.device("cpu")), cfg, splits.class_names, meta)
