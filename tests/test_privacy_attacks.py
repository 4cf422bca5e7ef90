"""Privacy attacks on real models: membership inference separates members of a deliberately
overfit model, MI-FACE reconstructs confidently classified class representatives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trusttango.data.tabular import CATEGORICAL, NUMERIC, adult_frame, adult_splits
from trusttango.models import build_model, config_for
from trusttango.privacy.audits import (
    attribute_inference,
    invert_classes,
    loss_threshold_attack,
    plot_inversion,
    plot_roc,
    shadow_attack,
)
from trusttango.train import TrainConfig, fit

OVERFIT = TrainConfig(epochs=25, batch_size=32, lr=3e-3, weight_decay=0.0, schedule="constant", progress=False)


@pytest.fixture(scope="module")
def overfit(digits):
    """A small CNN trained to memorise 150 digits; 150 other digits are non-members."""
    order = np.random.default_rng(0).permutation(len(digits.train))
    members, nonmembers = digits.train.subset(order[:150]), digits.train.subset(order[150:300])
    shadow_pool = digits.train.subset(order[300:600])

    def make():
        return build_model(config_for(digits.train.input_shape, 10, depth=2, width=0.25, dropout=0.0), seed=1)

    model = make()
    fit(model, members, None, OVERFIT)
    return model.eval(), members, nonmembers, shadow_pool, make


def test_membership_attacks_separate_members(overfit, tmp_path):
    model, members, nonmembers, shadow_pool, make = overfit
    yeom = loss_threshold_attack(model, members, nonmembers)
    assert yeom.auc > 0.58 and yeom.advantage > 0.1, yeom.interpretation()
    shokri = shadow_attack(model, members, nonmembers, shadow_pool, make, OVERFIT, n_shadows=2)
    assert shokri.auc > 0.56, shokri.interpretation()
    # a shuffled membership labelling is at chance: the attack measures membership, not the data
    fake = loss_threshold_attack(model, members.subset(np.arange(75)), members.subset(np.arange(75, 150)))
    assert abs(fake.auc - 0.5) < 0.15
    png = plot_roc([yeom, shokri], tmp_path / "roc.png")
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"


def test_mi_face_reconstructs_confident_class_representatives(overfit, digits, tmp_path):
    model = overfit[0]
    labels = [0, 3, 7]
    with torch.no_grad():
        start = model(torch.zeros(1, *digits.train.input_shape)).softmax(1)[0, labels]
    result = invert_classes(model, digits.train.input_shape, labels, lr=0.05, max_steps=400)
    with torch.no_grad():
        pred = model(result.images).softmax(1)
    assert (pred.argmax(1) == torch.tensor(labels)).all()
    assert min(result.confidence) > 0.9 and bool((start < 0.5).all())
    assert result.images.min() >= 0 and result.images.max() <= 1
    png = plot_inversion(result, digits.class_names, tmp_path / "inversion.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_attribute_inference_beats_the_no_model_baseline_on_training_rows():
    """Adult with sensitive features; infer ``occupation`` of people in the (overfit) model's
    training set from their other columns, label and the model: model access helps on
    members, much less on non-members (Yeom et al. 2018: leakage follows overfitting)."""
    splits = adult_splits(0, include_sensitive=True)
    reference = adult_frame().query("split == 'train'")
    start = len(NUMERIC) + sum(reference[c].nunique() for c in CATEGORICAL[: CATEGORICAL.index("occupation")])
    columns = list(range(start, start + reference["occupation"].nunique()))
    members, nonmembers = splits.train.subset(np.arange(2000)), splits.train.subset(np.arange(2000, 6000))
    model = build_model(config_for(splits.train.input_shape, 2, modality="tabular"), seed=0)
    fit(
        model, members, None, TrainConfig(epochs=30, batch_size=64, weight_decay=0, schedule="constant", progress=False)
    )
    inside = attribute_inference(model, members, columns)
    outside = attribute_inference(model, nonmembers, columns)
    assert inside.advantage > 0.03, inside.interpretation()
    assert inside.advantage > outside.advantage + 0.02, outside.interpretation()
    assert inside.baseline_accuracy == pytest.approx(outside.baseline_accuracy, abs=0.03)  # same population prior
