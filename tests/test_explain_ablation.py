"""Leave-one-feature-out retraining importance on real tabular data (iris + a pure-noise feature)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from trusttango.data import LabelledDataset
from trusttango.data.base import split
from trusttango.errors import InputError
from trusttango.explain.ablation import leave_one_feature_out
from trusttango.train import TrainConfig


def test_lofo_ranks_the_informative_feature_above_noise():
    iris = load_iris()
    noise = np.random.default_rng(0).normal(size=(150, 1))
    x = torch.tensor(np.c_[iris.data[:, [0, 2]], noise], dtype=torch.float32)  # sepal length, petal length, noise
    ds = LabelledDataset(x, torch.tensor(iris.target), list(iris.target_names), modality="tabular", name="iris")
    splits = split(ds, 0.1, 0.3, seed=0)
    tc = TrainConfig(epochs=40, batch_size=32, lr=1e-2, progress=False)
    imp = leave_one_feature_out(splits, tc, features=[1, 2])
    assert imp[1] > 0.15 and imp[1] > imp[2] + 0.1 and abs(imp[2]) < 0.1
    with pytest.raises(InputError, match="features"):
        leave_one_feature_out(splits, tc, features=[7])
