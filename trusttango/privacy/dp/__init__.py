"""Differential privacy: DP-SGD training (:class:`DPSGD`, a hook on the one training loop), the
accountants that turn its mechanisms into (epsilon, delta), and randomised response (local DP
for one binary answer). Opacus is imported only when a hook is set up or epsilon is computed."""

from trusttango.privacy.dp.accountants import ACCOUNTANTS, composed_epsilon
from trusttango.privacy.dp.randomized_response import RateEstimate, epsilon_of, estimate, p_for_epsilon, randomize
from trusttango.privacy.dp.sgd import DPSGD, GRAD_SAMPLE_MODES, PHYSICAL_BATCH, make_dp_compatible

__all__ = [
    "ACCOUNTANTS",
    "DPSGD",
    "GRAD_SAMPLE_MODES",
    "PHYSICAL_BATCH",
    "RateEstimate",
    "composed_epsilon",
    "epsilon_of",
    "estimate",
    "make_dp_compatible",
    "p_for_epsilon",
    "randomize",
]
