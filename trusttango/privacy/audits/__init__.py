"""Leakage audits: what an adversary with access to a trained model learns about its training
data. Membership inference (was this example used?), attribute inference (what is this
person's sensitive value?) and model inversion (what does a class's typical input look like?)."""

from trusttango.privacy.audits.attribute_inference import AttributeInference, attribute_inference
from trusttango.privacy.audits.inversion import Inversion, invert_classes, mi_face, plot_inversion
from trusttango.privacy.audits.membership import (
    MembershipResult,
    loss_threshold_attack,
    plot_roc,
    sample_members,
    shadow_attack,
)

__all__ = [
    "AttributeInference",
    "Inversion",
    "MembershipResult",
    "attribute_inference",
    "invert_classes",
    "loss_threshold_attack",
    "mi_face",
    "plot_inversion",
    "plot_roc",
    "sample_members",
    "shadow_attack",
]
