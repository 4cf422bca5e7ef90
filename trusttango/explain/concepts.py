"""Concepts inside the network: TCAV (Kim et al. 2018) and linear CKA (Kornblith et al. 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import check_inputs, forward_recording, resolve_target
from trusttango.explain.cam import find_layer
from trusttango.records import Record
from trusttango.torchutil import model_device


def layer_activations(
    model: nn.Module, layer: str | nn.Module, x: torch.Tensor, batch_size: int = 256, flatten: bool = True
) -> torch.Tensor:
    """Activations of ``layer`` for ``x``, flattened to ``(N, D)`` unless ``flatten=False`` (no grad, batched)."""
    module, x = find_layer(model, layer), check_inputs(x).to(model_device(model))
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            _, acts = forward_recording(model, module, x[start : start + batch_size], detach=True)
            out += [a.flatten(1) if flatten else a for a in acts]
    return torch.cat(out)


def concept_activation_vector(concept: torch.Tensor, random: torch.Tensor, seed: int = 0) -> tuple[np.ndarray, float]:
    """Kim et al. 2018 sec. 3.2: unit normal of a logistic regression separating concept from random activations.

    Trained on 67 % of the examples; returns ``(cav, held-out accuracy on the other 33 %)``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    feats = torch.cat([concept, random]).cpu().numpy()
    labels = np.r_[np.ones(len(concept)), np.zeros(len(random))]
    xtr, xte, ytr, yte = train_test_split(feats, labels, test_size=0.33, random_state=seed, stratify=labels)
    clf = LogisticRegression(max_iter=2000).fit(xtr, ytr)
    w = clf.coef_[0]
    return w / max(np.linalg.norm(w), 1e-12), float(clf.score(xte, yte))


def directional_derivatives(model: nn.Module, layer: str | nn.Module, x: torch.Tensor, target, cav: np.ndarray):
    """``S_{C,k}(x) = grad_{f_l(x)} h_k(f_l(x)) . v_C`` (Kim et al. eq. 1) for each input."""
    module, x = find_layer(model, layer), check_inputs(x).to(model_device(model))
    with torch.enable_grad():
        logits, acts = forward_recording(model, module, x)
    t = resolve_target(target, logits)
    (grad,) = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), acts[0])
    return grad.flatten(1) @ torch.as_tensor(cav, dtype=grad.dtype, device=grad.device)


@dataclass
class TCAVResult(Record):
    """TCAV score of one concept for one class, with its random-set null and two-sided t-test."""

    score: float  # mean over random sets of the fraction of class inputs with positive derivative
    scores: list[float]  # one per random set (concept vs random set i)
    null_scores: list[float]  # random set i vs random set i+1 CAVs
    p_value: float
    significant: bool
    cav_accuracy: float

    @property
    def null_score(self) -> float:
        """Mean of the random-CAV null scores."""
        return float(np.mean(self.null_scores))


def tcav(
    model: nn.Module,
    layer: str | nn.Module,
    inputs: torch.Tensor,
    target: int,
    concept: torch.Tensor,
    random_sets: list[torch.Tensor],
    alpha: float = 0.05,
) -> TCAVResult:
    """TCAV_Q (Kim et al. 2018 eq. 2) with random-set significance testing (sec. 3.3).

    One CAV per random set (concept vs set i) and one null CAV per pair of random sets
    (set i vs set i+1); a two-sided t-test between the two lists of scores; significant at
    ``p <= alpha``.
    """
    from scipy.stats import ttest_ind

    require(len(random_sets) >= 3, f"random_sets: expected at least 3 sets of random examples, got {len(random_sets)}")
    acts_c = layer_activations(model, layer, concept)
    acts_r = [layer_activations(model, layer, r) for r in random_sets]
    score = lambda cav: float((directional_derivatives(model, layer, inputs, target, cav) > 0).float().mean())  # noqa: E731
    cavs = [concept_activation_vector(acts_c, r, seed=i) for i, r in enumerate(acts_r)]
    scores = [score(v) for v, _ in cavs]
    nulls = [
        score(concept_activation_vector(acts_r[i], acts_r[(i + 1) % len(acts_r)], i)[0]) for i in range(len(acts_r))
    ]
    p = float(ttest_ind(scores, nulls).pvalue)
    p = 1.0 if np.isnan(p) else p
    accuracy = float(np.mean([a for _, a in cavs]))
    return TCAVResult(float(np.mean(scores)), scores, nulls, p, p <= alpha, accuracy)


def load_image_set(folder: str | Path, shape: tuple[int, int, int], limit: int | None = None) -> torch.Tensor:
    """Every image under ``folder`` (recursively, sorted) as a batch ``(N, *shape)`` in [0, 1]: a TCAV example set."""
    from trusttango.data import load_images
    from trusttango.data.files import IMAGE_SUFFIXES

    folder = Path(folder)
    require(folder.is_dir(), f"{folder}: expected a folder of example images")
    files = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    require(len(files) >= 2, f"{folder}: expected at least 2 images ({'/'.join(IMAGE_SUFFIXES)}), found {len(files)}")
    return load_images(files, shape)


def linear_cka(a: torch.Tensor, b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019 eq. 5): ``||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F)`` on centred features."""
    require(len(a) == len(b), f"linear_cka: both representations need the same examples, got {len(a)} and {len(b)}")
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a, b = a - a.mean(0), b - b.mean(0)
    num = torch.linalg.matrix_norm(b.T @ a) ** 2
    return float(num / (torch.linalg.matrix_norm(a.T @ a) * torch.linalg.matrix_norm(b.T @ b)).clamp(min=1e-12))


def cka_matrix(
    model_a: nn.Module, layers_a: list[str], model_b: nn.Module, layers_b: list[str], x: torch.Tensor
) -> torch.Tensor:
    """Linear CKA between every layer of ``model_a`` and every layer of ``model_b`` on inputs ``x``."""
    acts_a = [layer_activations(model_a, name, x) for name in layers_a]
    acts_b = [layer_activations(model_b, name, x) for name in layers_b]
    return torch.tensor([[linear_cka(u, v) for v in acts_b] for u in acts_a])
