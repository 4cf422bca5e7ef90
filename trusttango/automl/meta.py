"""Warm start from experience (meta-learning): describe a dataset by simple meta-features
and seed a new study with the best configurations of the most similar finished studies in
the same storage (Feurer et al., "Initializing Bayesian hyperparameter optimization via
meta-learning", AAAI 2015, with a hand-made distance instead of a learned one)."""

from __future__ import annotations

import math

import numpy as np
import optuna

from trusttango.data.base import LabelledDataset


def meta_features(data: LabelledDataset) -> dict:
    """Modality, size, classes, input shape and class balance (normalised entropy, 1 = balanced)."""
    counts = data.class_counts().astype(float)
    p = counts[counts > 0] / counts.sum()
    balance = float(-(p * np.log(p)).sum() / math.log(len(counts))) if len(counts) > 1 else 1.0
    return {
        "modality": data.modality,
        "examples": len(data),
        "classes": data.num_classes,
        "input_shape": list(data.input_shape),
        "balance": balance,
    }


def distance(a: dict, b: dict) -> float:
    """Sum of log-ratio gaps of size, classes, input volume and channels, plus the balance gap;
    infinite across modalities."""
    if a["modality"] != b["modality"]:
        return math.inf

    def gap(x: float, y: float) -> float:
        return abs(math.log(max(x, 1) / max(y, 1)))

    volume = gap(math.prod(a["input_shape"]), math.prod(b["input_shape"]))
    return (
        gap(a["examples"], b["examples"])
        + gap(a["classes"], b["classes"])
        + volume
        + gap(a["input_shape"][0], b["input_shape"][0])
        + abs(a["balance"] - b["balance"])
    )


def _best_params(study: optuna.Study) -> dict | None:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not done:
        return None
    return max(done, key=lambda t: t.values[0]).params


def similar_studies(storage: optuna.storages.BaseStorage, features: dict, exclude: str) -> list[tuple[float, str]]:
    """``(distance, name)`` of the other studies in ``storage`` with meta-features, nearest first."""
    found = []
    for name in optuna.get_all_study_names(storage):
        if name == exclude:
            continue
        other = optuna.load_study(study_name=name, storage=storage).user_attrs.get("meta_features")
        if other is not None and math.isfinite(d := distance(features, other)):
            found.append((d, name))
    return sorted(found)


def warm_start(study: optuna.Study, storage: optuna.storages.BaseStorage, k: int) -> list[str]:
    """Enqueue the best configuration of each of the ``k`` most similar finished studies; returns their names."""
    used = []
    for _, name in similar_studies(storage, study.user_attrs["meta_features"], study.study_name):
        params = _best_params(optuna.load_study(study_name=name, storage=storage))
        if params is not None:
            study.enqueue_trial(params, skip_if_exists=True)
            used.append(name)
        if len(used) == k:
            break
    return used
