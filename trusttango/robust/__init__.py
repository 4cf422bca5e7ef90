"""Robustness: adversarial attacks (named in :data:`ATTACKS`), robust accuracy, accuracy-vs-eps
curves and ARA, defences as training hooks, and adversarial explanations (Woods et al. 2019).
Detection of adversarial inputs is :mod:`trusttango.detect`."""

from trusttango.robust.apgd import APGD, APGDT
from trusttango.robust.attacks import (
    ATTACKS,
    BIM,
    FGSM,
    MIFGSM,
    PGD,
    CarliniWagnerL2,
    DeepFool,
    MinNormL2,
    make_attack,
)
from trusttango.robust.autoattack import AutoAttack, EnsembleReport
from trusttango.robust.base import Attack, AttackResult
from trusttango.robust.defences import AdversarialTraining, LipschitzRegulariser
from trusttango.robust.evaluation import (
    ARAResult,
    AttackReport,
    RobustnessCurve,
    ara,
    ara_from_deltas,
    attack_report,
    robust_accuracy,
    robustness_curve,
)
from trusttango.robust.explanations import edge_alignment, explain_classes
from trusttango.robust.fab import FAB, FABT
from trusttango.robust.plots import plot_ara, plot_curves, plot_examples, plot_gallery
from trusttango.robust.square import Square

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "AutoAttack",
    "EnsembleReport",
    "BIM",
    "FAB",
    "FABT",
    "FGSM",
    "MIFGSM",
    "PGD",
    "Square",
    "ARAResult",
    "AdversarialTraining",
    "Attack",
    "AttackReport",
    "AttackResult",
    "CarliniWagnerL2",
    "DeepFool",
    "LipschitzRegulariser",
    "MinNormL2",
    "RobustnessCurve",
    "ara",
    "ara_from_deltas",
    "attack_report",
    "edge_alignment",
    "explain_classes",
    "make_attack",
    "plot_ara",
    "plot_curves",
    "plot_examples",
    "plot_gallery",
    "robust_accuracy",
    "robustness_curve",
]
