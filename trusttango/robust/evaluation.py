"""Robust accuracy, attack reports, accuracy-vs-epsilon curves and the ARA score (Woods et al. 2019).

ARA (adversarial robustness area, Woods et al. 2019, sec. 3): a minimum-norm attack gives each
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
from trusttango.modes import eval_mode
from trusttango.robust.attacks import ATTACKS, Attack, AttackResult, MinNormL2, make_attack
from trusttango.torchutil import model_device


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
class AttackReport:
    """An attack's effect on ``n`` examples: clean and robust accuracy, success rate and the mean
    L-inf / L2 size of the successful perturbations (0 when none succeeded)."""

    n: int
    clean_accuracy: float
    robust_accuracy: float
    success_rate: float
    mean_linf: float
    mean_l2: float
    result: AttackResult

    def to_dict(self) -> dict:
        names = ("n", "clean_accuracy", "robust_accuracy", "success_rate", "mean_linf", "mean_l2")
        return {name: getattr(self, name) for name in names}

    def successful_first(self) -> torch.Tensor:
        """Indices of the examples, the successfully attacked ones first (stable order otherwise)."""
        return torch.argsort(self.result.success.cpu().int(), descending=True, stable=True)


def attack_report(attack: Attack, x: torch.Tensor, y: torch.Tensor) -> AttackReport:
    """Run an untargeted ``attack`` on ``(x, y)`` and summarise it as an :class:`AttackReport`
    (predictions, flags and ``x_adv`` in ``report.result``, on the CPU)."""
    require(not attack.targeted, "attack: the report needs an untargeted attack")
    result = attack.run(x, y)
    with eval_mode(attack.model), torch.no_grad():
        clean = attack.model(x.to(result.x_adv.device)).argmax(1).cpu()
    pred, success, y = result.predictions.cpu(), result.success.cpu(), torch.as_tensor(y).cpu()
    cpu = AttackResult(result.x_adv.cpu(), success, result.linf.cpu(), result.l2.cpu(), result.rms.cpu(), pred)
    return AttackReport(
        len(x),
        float((clean == y).float().mean()),
        float((pred == y).float().mean()),
        result.success_rate,
        float(cpu.linf[success].mean()) if success.any() else 0.0,
        float(cpu.l2[success].mean()) if success.any() else 0.0,
        cpu,
    )


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
    """Robust accuracy of ``model`` under the norm-bounded ``attack`` (a name in
    :data:`~trusttango.robust.attacks.ATTACKS`, e.g. ``pgd``) at every ``eps``; ``attack_options``
    go to :func:`~trusttango.robust.attacks.make_attack`."""
    budgeted = [name for name, cls in ATTACKS.items() if not cls.minimum_norm]
    require(attack in budgeted, f"attack: expected one of {tuple(budgeted)}, got {attack!r}")
    require(len(eps) > 0, "eps: expected at least one value")
    acc = [
        robust_accuracy(make_attack(attack, model, eps=float(e), norm=norm, **attack_options), x, y, batch_size)
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
    """Adversarial robustness area of ``model`` on ``(x, y)`` (Woods et al. 2019).

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
        k = model(x[:1].to(model_device(model))).shape[1]
    d = torch.cat(deltas).numpy()
    return ARAResult(ara_from_deltas(d, k), d, k, clean / len(x), float(torch.cat(success).float().mean()))
