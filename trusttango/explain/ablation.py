"""Leave-one-feature-out retraining importance for tabular models (Lei et al. 2018, LOCO).

Each feature in turn is replaced by its training mean (a constant carries no information)
in every split, a fresh model is trained with the library's one loop, and the importance is
the drop of test accuracy against the model trained on all features. Unlike permutation
importance this measures what the *model class* can do without the feature.
"""

from __future__ import annotations

from dataclasses import replace

from trusttango.data import LabelledDataset, Splits
from trusttango.errors import require
from trusttango.train import TrainConfig
from trusttango.workflow import train_model


def _without(ds: LabelledDataset, feature: int, value: float) -> LabelledDataset:
    x = ds.x.clone()
    x[:, feature] = value
    return replace(ds, x=x)


def leave_one_feature_out(
    splits: Splits, train_config: TrainConfig | None = None, features: list[int] | None = None, **model_options
) -> dict[int, float]:
    """``{feature: test accuracy(all features) - test accuracy(retrained without the feature)}``."""
    require(splits.train.x.dim() == 2, f"splits: expected tabular data (N, F), got {tuple(splits.train.x.shape)}")
    n_features = splits.train.x.shape[1]
    features = list(range(n_features)) if features is None else features
    require(all(0 <= f < n_features for f in features), f"features: expected indices in 0..{n_features - 1}")
    score = lambda s: train_model(s, train_config, **model_options).meta["metrics"]["test_accuracy"]  # noqa: E731
    base = score(splits)
    out = {}
    for f in features:
        mean = float(splits.train.x[:, f].mean())
        out[f] = base - score(Splits(*(_without(ds, f, mean) for ds in (splits.train, splits.val, splits.test))))
    return out
