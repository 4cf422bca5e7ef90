"""Robustness (SPECS section 6): adversarial attacks, robust accuracy and ARA, defences as
training hooks, and adversarial explanations (Woods et al. 2019)."""

from trusttango.robust.attacks import (
    BIM,
    FGSM,
    MIFGSM,
    PGD,
    Attack,
    AttackResult,
    CarliniWagnerL2,
    DeepFool,
    MinNormL2,
)
from trusttango.robust.defences import AdversarialTraining, LipschitzRegulariser
from trusttango.robust.evaluation import (
    ARAResult,
    RobustnessCurve,
    ara,
    ara_from_deltas,
    robust_accuracy,
    robustness_curve,
)
from trusttango.robust.explanations import edge_alignment, explain_classes
from trusttango.robust.plots import plot_ara, plot_curves, plot_examples, plot_gallery

__all__ = [
    "BIM",
    "FGSM",
    "MIFGSM",
    "PGD",
    "ARAResult",
    "AdversarialTraining",
    "Attack",
    "AttackResult",
    "CarliniWagnerL2",
    "DeepFool",
    "LipschitzRegulariser",
    "MinNormL2",
    "RobustnessCurve",
    "ara",
    "ara_from_deltas",
    "edge_alignment",
    "explain_classes",
    "plot_ara",
    "plot_curves",
    "plot_examples",
    "plot_gallery",
    "robust_accuracy",
    "robustness_curve",
]
