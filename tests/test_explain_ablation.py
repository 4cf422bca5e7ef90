"""Ablation: leave-one-feature-out retraining (iris + a noise feature); region ablation curves (Fashion-MNIST)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from trusttango.data import LabelledDataset
from trusttango.data.base import split
from trusttango.errors import InputError
from trusttango.explain import GradCAM, to_heatmap
from trusttango.explain.ablation import leave_one_feature_out
from trusttango.explain.regions import region_ablation, save_ablation_curves
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


def test_region_ablation_attribution_order_drops_faster_than_random(fmnist_model, fmnist_small, tmp_path):
    x = fmnist_small.test.x[:200]
    heat = to_heatmap(GradCAM(fmnist_model).attribute(x))
    res = region_ablation(fmnist_model, x, heat, region=4, steps=10)
    assert res.accuracy["attribution"][0] == res.accuracy["random"][0] == 1.0  # labels = predictions
    assert res.auc("accuracy") < res.auc("accuracy", "random") - 0.05
    assert res.auc("logit") < res.auc("logit", "random")
    true = region_ablation(fmnist_model, x, heat, labels=fmnist_small.test.y[:200], baseline="blur", steps=4)
    assert 0.6 < true.accuracy["random"][0] < 1.0 and len(true.fractions) == 5
    save_ablation_curves(res, tmp_path / "ablation.png")
    assert (tmp_path / "ablation.png").stat().st_size > 5000
    with pytest.raises(InputError, match="region"):
        region_ablation(fmnist_model, x, heat, region=0)
    with pytest.raises(InputError, match="heatmaps"):
        region_ablation(fmnist_model, x, heat[:, :5])
