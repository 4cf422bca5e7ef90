"""Net2Vec on the trained Fashion-MNIST CNN: concept embeddings beat the best single filter (held-out)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trusttango.errors import InputError
from trusttango.explain.net2vec import net2vec

LAYER = "backbone.12"  # 32 filters at 14 x 14
FOOTWEAR, SNEAKER_SANDAL, SLEEVES = (5, 7, 9), (5, 7), (0, 2, 4, 6)


@pytest.fixture(scope="module")
def images(fmnist_small):
    test = fmnist_small.test
    return test.x[:450], test.y[:450]


def _concept(y: torch.Tensor, classes: tuple[int, ...]) -> torch.Tensor:
    return torch.isin(y, torch.tensor(classes))


def test_classification_embedding_beats_best_single_filter(fmnist_model, images):
    x, y = images
    results = {c: net2vec(fmnist_model, LAYER, x, _concept(y, c)) for c in (FOOTWEAR, SNEAKER_SANDAL)}
    for r in results.values():
        assert r.metric == "average_precision" and (r.embedding >= 0).all() and r.embedding.shape == (32,)
        assert r.score > 0.8 and r.score >= r.best_filter_score - 0.01
    sleeves = net2vec(fmnist_model, LAYER, x, _concept(y, SLEEVES))
    assert sleeves.score > 0.7 and sleeves.score >= sleeves.best_filter_score - 0.01
    # related concepts (footwear vs sneaker-or-sandal) have closer embeddings than unrelated ones
    foot = results[FOOTWEAR]
    assert foot.similarity(results[SNEAKER_SANDAL]) > foot.similarity(sleeves)


def test_segmentation_embedding_beats_best_single_filter(fmnist_model, images):
    x, y = images
    masks = (x[:, 0] > 0.1) & _concept(y, FOOTWEAR)[:, None, None]  # footwear silhouettes, empty elsewhere
    r = net2vec(fmnist_model, LAYER, x, masks)
    assert r.metric == "iou" and (r.embedding >= 0).all() and int(np.count_nonzero(r.embedding)) > 1
    assert r.score > 0.05 and r.score > 2 * r.best_filter_score  # top-0.5 % binarisation: one filter covers little
    with pytest.raises(InputError, match="concept"):
        net2vec(fmnist_model, LAYER, x, masks[:, :10])
    with pytest.raises(InputError, match=r"\(N, K, h, w\)"):
        net2vec(fmnist_model, "head", x, _concept(y, FOOTWEAR))
    with pytest.raises(InputError, match="layer"):
        net2vec(fmnist_model, "nope", x, _concept(y, FOOTWEAR))
