"""Privacy: DP-SGD training, privacy attacks that measure leakage, randomised response and
k-anonymity for released tables (issue 7). Federated learning, HE and secret sharing live in
sibling modules (issue 8)."""

from trusttango.privacy.anonymity import Anonymized, Linkage, anonymize, lecture_table, linkage_attack
from trusttango.privacy.attribute_inference import AttributeInference, attribute_inference
from trusttango.privacy.dp import DPSGD, make_dp_compatible
from trusttango.privacy.hierarchy import Hierarchy, adult_hierarchies, parse_hierarchies
from trusttango.privacy.inversion import Inversion, invert_classes, mi_face, plot_inversion
from trusttango.privacy.membership import MembershipResult, loss_threshold_attack, plot_roc, shadow_attack
from trusttango.privacy.randomized_response import RateEstimate, epsilon_of, estimate, p_for_epsilon, randomize

__all__ = [
    "DPSGD",
    "Anonymized",
    "AttributeInference",
    "Hierarchy",
    "Inversion",
    "Linkage",
    "MembershipResult",
    "RateEstimate",
    "adult_hierarchies",
    "anonymize",
    "attribute_inference",
    "epsilon_of",
    "estimate",
    "invert_classes",
    "lecture_table",
    "linkage_attack",
    "loss_threshold_attack",
    "make_dp_compatible",
    "mi_face",
    "p_for_epsilon",
    "parse_hierarchies",
    "plot_inversion",
    "plot_roc",
    "randomize",
    "shadow_attack",
]
