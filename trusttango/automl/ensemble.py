"""Ensembles of the search's top-k models: averaged class probabilities (Caruana et al.,
"Ensemble selection from libraries of models", ICML 2004, with uniform weights), reported
against the single best model on the test split."""

from __future__ import annotations

import numpy as np
import torch

from trusttango.automl.alc import nauc
from trusttango.automl.runner import Snapshot
from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.evaluate import predict_proba


def ensemble_proba(snapshots: list[Snapshot], data: LabelledDataset | torch.Tensor) -> torch.Tensor:
    """Mean of the snapshots' softmax probabilities ``(N, K)``."""
    require(len(snapshots) > 0, "ensemble: no trained models to combine")
    return torch.stack([predict_proba(s.model(), data) for s in snapshots]).mean(0)


def compare(snapshots: list[Snapshot], test: LabelledDataset) -> dict:
    """Test accuracy and NAUC of the top-k ensemble vs the single best (``snapshots[0]``)."""
    y = test.y.numpy()
    single = predict_proba(snapshots[0].model(), test).numpy()
    mixed = ensemble_proba(snapshots, test).numpy()
    return {
        "k": len(snapshots),
        "trials": [s.trial for s in snapshots],
        "single_test_accuracy": float(np.mean(single.argmax(1) == y)),
        "ensemble_test_accuracy": float(np.mean(mixed.argmax(1) == y)),
        "single_nauc": nauc(y, single),
        "ensemble_nauc": nauc(y, mixed),
    }
