"""Concepts: TCAV with random-set significance, linear CKA against the kernel (HSIC) formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trusttango.errors import InputError
from trusttango.explain.concepts import cka_matrix, layer_activations, linear_cka, tcav
from trusttango.explain.figures import save_matrix

LAYER = "backbone.12"


def _by_class(ds, c: int, n: int, offset: int = 0) -> torch.Tensor:
    return ds.x[ds.y == c][offset : offset + n]


def test_tcav_class_concept_scores_above_random_directions(digits, digits_model):
    train, test = digits.train, digits.test
    g = torch.Generator().manual_seed(0)
    randoms = [train.x[torch.randperm(len(train), generator=g)[:40]] for _ in range(10)]
    zeros = _by_class(test, 0, 30)
    concept = _by_class(train, 0, 40)
    res = tcav(digits_model, LAYER, zeros, 0, concept, randoms)
    assert res.cav_accuracy > 0.9 and res.score > 0.9 and len(res.scores) == len(res.null_scores) == 10
    assert res.score > float(np.mean(res.null_scores)) + 0.1  # the concept beats random directions
    assert 0.0 <= res.p_value <= 1.0 and res.significant == (res.p_value <= 0.05)
    with pytest.raises(InputError, match="random_sets"):
        tcav(digits_model, LAYER, zeros, 0, concept, randoms[:2])


def _kernel_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """CKA from Gram matrices: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), H the centring matrix."""
    n = len(a)
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = a.double() @ a.double().T, b.double() @ b.double().T  # noqa: E741
    hsic = lambda p, q: torch.trace(p @ h @ q @ h)  # noqa: E731
    return float(hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l)))


def test_linear_cka_matches_kernel_form_and_invariances(digits, digits_model, tmp_path):
    x = digits.test.x[:100]
    a = layer_activations(digits_model, "backbone.5", x)
    b = layer_activations(digits_model, LAYER, x)
    assert linear_cka(a, b) == pytest.approx(_kernel_cka(a, b), rel=1e-6)
    assert linear_cka(a, a) == pytest.approx(1.0)
    q, _ = torch.linalg.qr(torch.randn(b.shape[1], b.shape[1], generator=torch.Generator().manual_seed(1)))
    assert linear_cka(a, 3.0 * b @ q) == pytest.approx(linear_cka(a, b), rel=1e-5)  # orthogonal + isotropic scaling
    layers = ["backbone.2", "backbone.5", "backbone.9", LAYER]
    m = cka_matrix(digits_model, layers, digits_model, layers, x)
    assert m.shape == (4, 4) and torch.allclose(m.diagonal(), torch.ones(4, dtype=m.dtype), atol=1e-6)
    assert float(m[0, 3]) < 0.99
    save_matrix(m, layers, layers, tmp_path / "cka.png")
    assert (tmp_path / "cka.png").stat().st_size > 1000
