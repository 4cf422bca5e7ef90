"""Robust accuracy, attack reports, accuracy-vs-epsilon curves and the ARA score (Woods et al. 2019).

ARA (adversarial robustness area, Woods et al. 2019, sec. 3): a minimum-norm attack gives each
example the smallest RMS perturbation ``delta* = sqrt(mean_{C,H,W} (x_adv - x)^2)`` that
changes its prediction (0 when already misclassified); ``Acc(eps) = P(delta* > eps)`` and
``ARA = integral_0^inf max(0, Acc(eps) - 1/K) d eps``. ``Acc`` is a step function, so the
integral is computed exactly. The perturbations an attack finds bound the minimal ones from
above, so ARA from any attack can only overstate the true one. A correctly classified example
the attack could not break has an unknown ``delta*`` in ``[0, hi - lo]``: such examples are
counted (``unbroken``) and warned about; ``ara`` counts them at ``hi - lo`` (as the paper's
definition does), ``ara_unbroken_at_zero`` at 0 (it credits the attack's failures with nothing).

Every metric takes ``(model, x, y, attack=...)``, runs the model in eval mode and leaves each
submodule's train/eval flag as it was.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trusttango.errors import require
from trusttango.modes import eval_mode
from trusttango.robust.attacks import ATTACKS, PGD, MinNormL2, make_attack
from trusttango.robust.base import Attack, AttackResult
from trusttango.torchutil import batched_forward


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int):
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]


def _check_attack(model: nn.Module, attack: Attack) -> None:
    require(attack.model is model, "attack: built on another model than the one measured")
    require(not attack.targeted, "attack: robustness metrics need an untargeted attack")


def robust_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack | None = None, batch_size: int = 256
) -> float:
    """Fraction of ``(x, y)`` ``model`` still classifies correctly after an untargeted ``attack``
    (default :class:`~trusttango.robust.attacks.PGD` with its evaluation defaults)."""
    attack = attack or PGD(model)
    _check_attack(model, attack)
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
        robust_accuracy(model, x, y, make_attack(attack, model, eps=float(e), norm=norm, **attack_options), batch_size)
        for e in eps
    ]
    return RobustnessCurve(attack, norm, [float(e) for e in eps], acc)


@dataclass
class ARAResult:
    """ARA (unbroken examples at the largest perturbation), the same with them at 0, the
    per-example minimum RMS perturbations found and the clean accuracy (module docstring)."""

    ara: float
    deltas: np.ndarray
    num_classes: int
    clean_accuracy: float
    attack_success_rate: float
    unbroken: int = 0  # correctly classified examples the attack did not break
    ara_unbroken_at_zero: float | None = None

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
            "unbroken": self.unbroken,
            "ara_unbroken_at_zero": self.ara if self.ara_unbroken_at_zero is None else self.ara_unbroken_at_zero,
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
    Correct predictions are taken in eval mode; examples the attack did not break are counted
    in ``unbroken`` and warned about (module docstring).
    """
    attack = attack or MinNormL2(model)
    _check_attack(model, attack)
    require(attack.minimum_norm, "attack: ARA needs a minimum-norm attack")
    lo, hi = attack.bounds
    with torch.no_grad():
        correct = batched_forward(model, x, batch_size).argmax(1) == torch.as_tensor(y).cpu()
        k = batched_forward(model, x[:1]).shape[1]
    rms, success = [], []
    for xb, yb in _batches(x, y, batch_size):
        result = attack.run(xb, yb)
        rms.append(result.rms.cpu())
        success.append(result.success.cpu())
    rms, success = torch.cat(rms), torch.cat(success)
    unbroken = correct & ~success
    upper = torch.where(correct, torch.where(success, rms, torch.full_like(rms, hi - lo)), torch.zeros_like(rms))
    lower = torch.where(unbroken, torch.zeros_like(upper), upper)
    if unbroken.any():
        warnings.warn(
            f"ARA: {int(unbroken.sum())} of {int(correct.sum())} correctly classified examples were not broken by "
            f"{type(attack).__name__} in {attack.steps} steps; ARA counts them at the largest perturbation "
            f"({hi - lo:g}); ara_unbroken_at_zero counts them at 0; give the attack more steps",
            stacklevel=2,
        )
    d = upper.numpy()
    return ARAResult(
        ara_from_deltas(d, k), d, k, float(correct.float().mean()), float(success.float().mean()),
        int(unbroken.sum()), ara_from_deltas(lower.numpy(), k),
    )  # fmt: skip
