"""Leakage audits: what an adversary with access to a trained model learns about its training
data. Membership inference (was this example used?), attribute inference (what is this
person's sensitive value?) and model inversion (what does a class's typical input look like?).

``MEMBERSHIP_ATTACKS`` names the membership attacks the CLI and the audit run: ``loss`` (Yeom et
al. 2018), ``lira`` (Carlini et al. 2022) and ``rmia`` (Zarifzadeh et al. 2024); the last two
need :class:`ReferenceModels`."""

from trusttango.privacy.audits.attribute_inference import AttributeInference, attribute_inference
from trusttango.privacy.audits.inversion import Inversion, invert_classes, mi_face, plot_inversion
from trusttango.privacy.audits.lira import lira_attack
from trusttango.privacy.audits.lower_bound import EpsilonLowerBound, empirical_epsilon
from trusttango.privacy.audits.membership import (
    LOW_FPRS,
    MembershipResult,
    loss_threshold_attack,
    plot_roc,
    shadow_attack,
)
from trusttango.privacy.audits.reference import ReferenceModels
from trusttango.privacy.audits.rmia import rmia_attack

MEMBERSHIP_ATTACKS = {"loss": loss_threshold_attack, "lira": lira_attack, "rmia": rmia_attack}

__all__ = [
    "LOW_FPRS",
    "MEMBERSHIP_ATTACKS",
    "AttributeInference",
    "EpsilonLowerBound",
    "Inversion",
    "MembershipResult",
    "ReferenceModels",
    "attribute_inference",
    "empirical_epsilon",
    "invert_classes",
    "lira_attack",
    "loss_threshold_attack",
    "mi_face",
    "plot_inversion",
    "plot_roc",
    "rmia_attack",
    "shadow_attack",
]
