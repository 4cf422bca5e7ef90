"""Detection quality: clean/adversarial pairs, AUC, precision and recall at the fitted
threshold, FPR at 95 % recall, and ROC curves.

Pairs follow the usual protocol (Feinman et al. 2017, sec. 4; Xu et al. 2018, sec. 5): the
clean inputs the model classifies correctly whose attacked copy it misclassifies, with those
copies. Adversarial inputs are the positive class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trusttango.detect.base import Detector
from trusttango.errors import require
from trusttango.modes import eval_mode
from trusttango.records import Record
from trusttango.torchutil import model_device

DETECTION_ATTACKS = ("fgsm", "pgd", "mifgsm", "cw", "deepfool")
ATTACK_SETTINGS: dict[str, dict] = {  # the detection protocol: a shorter C&W search, PGD-10 with one start
    "cw": {"steps": 50, "binary_steps": 3},
    "pgd": {"steps": 10, "restarts": 1},
}


@dataclass
class DetectionResult(Record):
    """Detection quality on one attack: adversarial inputs are the positive class."""

    attack: str
    auc: float
    precision: float
    recall: float
    fpr_at_95_recall: float
    n_clean: int
    n_adversarial: int


def detection_roc(s_clean: np.ndarray, s_adv: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(fpr, tpr, auc)`` of scores on clean (negative) and adversarial (positive) inputs, the
    curve format of :func:`trusttango.plotting.plot_roc`."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.r_[np.zeros(len(s_clean)), np.ones(len(s_adv))]
    scores = np.r_[s_clean, s_adv]
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr, float(roc_auc_score(labels, scores))


def evaluate_detector(
    detector: Detector, clean: torch.Tensor, adversarial: torch.Tensor, attack: str = ""
) -> DetectionResult:
    """AUC, precision and recall at the fitted threshold, and FPR at 95 % recall."""
    require(
        len(clean) > 0 and len(adversarial) > 0,
        f"evaluate_detector{f' ({attack})' if attack else ''}: need clean and adversarial inputs, "
        f"got {len(clean)} and {len(adversarial)} (did the attack flip no prediction?)",
    )
    s_clean, s_adv = detector.score(clean), detector.score(adversarial)
    labels = np.r_[np.zeros(len(s_clean)), np.ones(len(s_adv))]
    flagged = np.r_[s_clean, s_adv] >= detector.threshold
    tp = int((flagged & (labels == 1)).sum())
    fpr, tpr, auc = detection_roc(s_clean, s_adv)
    return DetectionResult(
        attack,
        auc,
        tp / max(1, int(flagged.sum())),
        tp / len(s_adv),
        float(fpr[np.argmax(tpr >= 0.95)]),
        len(s_clean),
        len(s_adv),
    )


def adversarial_pairs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean inputs the model classifies correctly and whose attacked copy it misclassifies,
    with those copies (on the CPU; the model's train/eval flags are restored)."""
    device = model_device(model)
    x, y = x.to(device), torch.as_tensor(y).to(device)
    with eval_mode(model):
        x_adv = attack(x, y).detach()
        with torch.no_grad():
            keep = (model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)
    return x[keep].cpu(), x_adv[keep].cpu()


def detection_attack(name: str, model: nn.Module, eps: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The attack ``name`` of :data:`~trusttango.robust.attacks.ATTACKS` as the detection protocol
    runs it: L-inf budget ``eps`` for the norm-bounded attacks, :data:`ATTACK_SETTINGS` otherwise."""
    from trusttango.robust.attacks import make_attack

    return make_attack(name, model, eps=eps, **ATTACK_SETTINGS.get(name, {}))


def attack_pairs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attacks: Sequence[str], eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The :func:`adversarial_pairs` of every attack in ``attacks`` (by name), concatenated;
    :class:`InputError` when an attack leaves fewer than 2 pairs."""
    require(len(attacks) > 0, "attacks: names no attack")
    pairs = []
    for name in attacks:
        clean, adv = adversarial_pairs(model, x, y, detection_attack(name, model, eps))
        require(len(clean) >= 2, f"attack {name}: fewer than 2 successful adversarial examples; raise --eps or --n")
        pairs.append((clean, adv))
    return torch.cat([c for c, _ in pairs]), torch.cat([a for _, a in pairs])


def score_attacks(
    detector: Detector, x: torch.Tensor, y: torch.Tensor, attacks: Sequence[str], eps: float
) -> tuple[list[DetectionResult], dict[str, tuple[np.ndarray, np.ndarray, float]]]:
    """:func:`evaluate_detector` on the pairs of each attack (by name) and the ROC curves
    (:func:`detection_roc`), keyed by attack."""
    results, curves = [], {}
    for name in attacks:
        clean, adv = attack_pairs(detector.model, x, y, [name], eps)
        results.append(evaluate_detector(detector, clean, adv, name))
        curves[name] = detection_roc(detector.score(clean), detector.score(adv))
    return results, curves
