"""Explanation metrics on the trained digits model: informative maps must beat random ones."""

from __future__ import annotations

import pytest
import torch

from trusttango.errors import InputError
from trusttango.explain import (
    GradCAM,
    GuidedBackprop,
    Occlusion,
    Saliency,
    compare_methods,
    deletion_game,
    deletion_insertion,
    pointing_game,
    randomisation_check,
    to_heatmap,
)


@pytest.fixture(scope="module")
def sample(digits, digits_model):
    x = digits.test.x[:48]
    with torch.no_grad():
        pred = digits_model(x).argmax(1)
    random_heat = torch.rand(len(x), 8, 8, generator=torch.Generator().manual_seed(0))
    return x, pred, random_heat


def test_deletion_game_informative_beats_random(digits_model, sample):
    x, pred, random_heat = sample
    heat = to_heatmap(GuidedBackprop(digits_model).attribute(x, pred))
    ours, rand = deletion_game(digits_model, x, heat, pred), deletion_game(digits_model, x, random_heat, pred)
    assert ours.shape == (48,) and bool(((ours > 0) & (ours <= 1)).all())
    assert float(ours.mean()) < float(rand.mean())


def test_deletion_and_insertion_auc(digits_model, sample):
    x, pred, random_heat = sample
    heat = to_heatmap(Saliency(digits_model).attribute(x, pred))
    curves, auc = deletion_insertion(digits_model, x, heat, pred, steps=16)
    assert curves.shape == (48, 17)
    with torch.no_grad():
        p0 = digits_model(x).softmax(1).gather(1, pred[:, None]).squeeze(1)
    torch.testing.assert_close(curves[:, 0], p0)  # nothing deleted yet
    _, auc_rand = deletion_insertion(digits_model, x, random_heat, pred, steps=16)
    _, ins = deletion_insertion(digits_model, x, heat, pred, steps=16, mode="insertion")
    _, ins_rand = deletion_insertion(digits_model, x, random_heat, pred, steps=16, mode="insertion")
    assert float(auc.mean()) < float(auc_rand.mean())
    assert float(ins.mean()) > float(ins_rand.mean())


def test_pointing_game_hits_the_strokes(digits_model, sample):
    x, pred, random_heat = sample
    strokes = x[:, 0] > 0.25
    # occlusion: windows on the (zero) background change nothing, so its peak should sit on ink.
    # (Guided backprop's peak falls off the strokes here: 27 % hits vs 39 % ink area, measured.)
    heat = to_heatmap(Occlusion(digits_model, window=2, stride=1).attribute(x, pred))
    hits = pointing_game(heat, strokes)
    assert set(hits.unique().tolist()) <= {0.0, 1.0}
    assert float(hits.mean()) > float(strokes.float().mean()) + 0.1  # far above chance (stroke area)
    assert float(pointing_game(-strokes.float(), strokes).mean()) == 0.0
    assert float(pointing_game(heat, strokes, tolerance=8).mean()) == 1.0


def test_randomisation_sanity_check(digits_model, sample):
    x, pred, _ = sample
    rho = randomisation_check(Saliency, digits_model, x[:16], pred[:16])
    assert rho.shape == (16,) and float(rho.mean()) < 0.6


def test_a_constant_map_never_passes_the_sanity_check(digits_model, sample):
    """A map without ranks: the model's own constant map counts as rho 1 (it shows nothing, so it
    cannot pass), a randomised model's constant map beside a real one as 0 (its order is gone)."""
    x, pred, _ = sample

    class Constant(Saliency):
        def attribute(self, inputs, target=None):
            return torch.zeros_like(inputs)

    def erased_when_randomised(model):
        return Saliency(model) if model is digits_model else Constant(model)

    assert randomisation_check(Constant, digits_model, x[:4], pred[:4]).tolist() == [1.0] * 4
    assert randomisation_check(erased_when_randomised, digits_model, x[:4], pred[:4]).tolist() == [0.0] * 4


def test_compare_methods_table(digits_model, sample):
    x, pred, _ = sample
    rows = compare_methods(
        digits_model, x[:16], pred[:16], methods={"saliency": Saliency, "gradcam": GradCAM}, masks=x[:16, 0] > 0.25
    )
    assert [r["method"] for r in rows] == ["saliency", "gradcam"]
    for r in rows:
        assert r["maps_per_s"] > 0 and 0 < r["deletion_game_area"] <= 1
        assert 0 <= r["deletion_auc"] <= 1 and 0 <= r["insertion_auc"] <= 1 and 0 <= r["pointing"] <= 1
        assert -1 <= r["sanity_spearman"] <= 1


def test_metric_shape_errors(digits_model, sample):
    x, pred, random_heat = sample
    with pytest.raises(InputError, match="heatmaps"):
        deletion_game(digits_model, x, random_heat[:3], pred)
    with pytest.raises(InputError, match="masks"):
        pointing_game(random_heat, random_heat[:, :4] > 0)
