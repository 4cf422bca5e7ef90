"""Robust accuracy, accuracy-vs-epsilon curves and the ARA score (Woods et al. 2019).

ARA (adversarial robustness area, SPECS section 6): a minimum-norm attack gives each
example the smallest RMS perturbation ``delta* = sqrt(mean_{C,H,W} (x_adv - x)^2)`` that
changes its prediction (0 when already misclassified); ``Acc(eps) = P(delta* > eps)`` and
``ARA = integral_0^inf max(0, Acc(eps) - 1/K) d eps``. ``Acc`` is a step function, so the
integral is computed exactly. An example the attack could not break is counted as robust up
to the largest possible RMS perturbation, ``hi - lo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trusttango.errors import require
from trusttango.robust.attacks import FGSM, PGD, Attack, MinNormL2

CURVE_ATTACKS = {"pgd": PGD, "fgsm": FGSM}


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]


def robust_accuracy(attack: Attack, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of ``(x, y)`` the model still classifies correctly after an untargeted ``attack``."""
    require(not attack.targeted, "attack: robust accuracy needs an untargeted attack")
    correct = 0
    for xb, yb in _batches(x, y, batch_size):
        result = attack.run(xb, yb)
        correct += int((result.predictions == yb.to(result.predictions.device)).sum())
    return correct / max(1, len(x))


@dataclass
class RobustnessCurve:
    """Accuracy under attack at each ``eps`` (``eps = 0``: clean accuracy)."""

    attack: str
    norm: str
    eps: list[float]
    accuracy: list[float]

    def to_dict(self) -> dict:
        return {"attack": self.attack, "norm": self.norm, "eps": self.eps, "accuracy": self.accuracy}


def robustness_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: Sequence[float],
    attack: str = "pgd",
    norm: str = "linf",
    batch_size: int = 256,
    **attack_options,
) -> RobustnessCurve:
    """Robust accuracy of ``model`` under ``attack`` (``pgd`` | ``fgsm``) at every ``eps``."""
    require(attack in CURVE_ATTACKS, f"attack: expected one of {tuple(CURVE_ATTACKS)}, got {attack!r}")
    require(len(eps) > 0, "eps: expected at least one value")
    acc = [
        robust_accuracy(CURVE_ATTACKS[attack](model, eps=float(e), norm=norm, **attack_options), x, y, batch_size)
        for e in eps
    ]
    return RobustnessCurve(attack, norm, [float(e) for e in eps], acc)


@dataclass
class ARAResult:
    """ARA, the per-example minimum RMS perturbations and the clean accuracy."""

    ara: float
    deltas: np.ndarray
    num_classes: int
    clean_accuracy: float
    attack_success_rate: float

    def accuracy_at(self, eps: float | np.ndarray) -> np.ndarray:
        """``Acc(eps)``: fraction of examples whose minimum perturbation exceeds ``eps``."""
        return (self.deltas[None, :] > np.atleast_1d(eps)[:, None]).mean(1)

    def to_dict(self) -> dict:
        return {
            "ara": self.ara,
            "num_classes": self.num_classes,
            "clean_accuracy": self.clean_accuracy,
            "attack_success_rate": self.attack_success_rate,
            "median_delta": float(np.median(self.deltas)),
        }


def ara_from_deltas(deltas: np.ndarray, num_classes: int) -> float:
    """Exact ``integral_0^inf max(0, Acc(eps) - 1/K) d eps`` for the step function ``Acc`` of ``deltas``."""
    d = np.sort(np.asarray(deltas, dtype=np.float64))
    require(len(d) > 0 and num_classes >= 2, "deltas: expected at least one value and K >= 2 classes")
    n = len(d)
    widths = np.diff(np.concatenate([[0.0], d]))  # interval [d_(i-1), d_(i)) ...
    acc = (n - np.arange(n)) / n  # ... on which Acc = (n - i + 1) / n
    return float(np.sum(np.maximum(0.0, acc - 1.0 / num_classes) * widths))


def ara(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: Attack | None = None,
    batch_size: int = 256,
) -> ARAResult:
    """Adversarial robustness area of ``model`` on ``(x, y)`` (Woods et al. 2019, SPECS section 6).

    ``attack`` must be an untargeted minimum-norm attack (default :class:`MinNormL2`, DDN).
    """
    attack = attack or MinNormL2(model)
    require(attack.minimum_norm and not attack.targeted, "attack: ARA needs an untargeted minimum-norm attack")
    lo, hi = attack.bounds
    deltas, success, clean = [], [], 0
    for xb, yb in _batches(x, y, batch_size):
        result = attack.run(xb, yb)
        yb = yb.to(result.predictions.device)
        with torch.no_grad():
            correct = model(xb.to(result.x_adv.device)).argmax(1) == yb
        clean += int(correct.sum())
        rms = torch.where(result.success, result.rms, torch.full_like(result.rms, hi - lo))
        deltas.append(torch.where(correct, rms, torch.zeros_like(rms)).cpu())
        success.append(result.success.cpu())
    with torch.no_grad():
        k = model(x[:1].to(next(model.parameters()).device)).shape[1]
    d = torch.cat(deltas).numpy()
    return ARAResult(ara_from_deltas(d, k), d, k, clean / len(x), float(torch.cat(success).float().mean()))
