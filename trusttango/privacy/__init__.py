"""Privacy, one subpackage per concept:

* :mod:`~trusttango.privacy.dp`: DP-SGD training (Abadi et al. 2016), accountants, randomised response;
* :mod:`~trusttango.privacy.audits`: leakage audits (membership, attribute inference, model inversion);
* :mod:`~trusttango.privacy.release`: data release (k-anonymity with Mondrian, hierarchies, linkage attack);
* :mod:`~trusttango.privacy.crypto`: homomorphic encryption and secret sharing.

Federated learning is :mod:`trusttango.federated`. The names below are exported lazily
(PEP 562): ``import trusttango.privacy`` loads none of the subpackages, so neither Opacus nor
TenSEAL nor scikit-learn.
"""

from __future__ import annotations

from trusttango.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["DPSGD", "make_dp_compatible"], "dp"),
    **dict.fromkeys(["RateEstimate", "epsilon_of", "estimate", "p_for_epsilon", "randomize"], "dp"),
    **dict.fromkeys(["AttributeInference", "attribute_inference", "Inversion", "invert_classes"], "audits"),
    **dict.fromkeys(["mi_face", "plot_inversion", "MembershipResult", "loss_threshold_attack"], "audits"),
    **dict.fromkeys(["plot_roc", "shadow_attack"], "audits"),
    **dict.fromkeys(["Anonymized", "Linkage", "anonymize", "lecture_table", "linkage_attack"], "release"),
    **dict.fromkeys(["Hierarchy", "adult_hierarchies", "parse_hierarchies"], "release"),
}
_SUBPACKAGES = ("dp", "audits", "release", "crypto")

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBPACKAGES)
