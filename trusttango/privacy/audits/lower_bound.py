"""The privacy an attack proves is missing: an empirical lower bound on epsilon.

A mechanism that is (epsilon, delta)-DP bounds every membership test at every threshold by
``TPR <= e^eps FPR + delta`` and ``1 - FPR <= e^eps (1 - TPR) + delta`` (Kairouz et al. 2015;
used for auditing by Jagielski et al. 2020, "Auditing differentially private machine learning",
and Nasr et al. 2021). So each ROC point gives
``eps >= max(log((TPR - delta) / FPR), log((1 - FPR - delta) / (1 - TPR)))``.

The point estimate takes the observed rates. The bound a reviewer can rely on takes, at each
ROC point, a Clopper-Pearson lower limit on TPR and upper limit on FPR, with the error rate
split over every point and both limits (Bonferroni), so the maximum over points holds with the
stated confidence. This is a bound on the training run that produced the scored model with
respect to the scored examples; it never proves privacy, it can only show its absence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from trusttango.errors import require
from trusttango.privacy.audits.membership import MembershipResult


@dataclass(frozen=True)
class EpsilonLowerBound:
    """``lower``: epsilon that holds with ``confidence``; ``point``: from the observed rates
    (infinite where the attack separated some members with no false positive)."""

    method: str
    delta: float
    confidence: float
    point: float
    lower: float

    def against(self, claimed: float) -> str:
        """One sentence setting the attack's bound beside a claimed epsilon."""
        figures = (f"{self.method} implies epsilon >= {self.lower:.3f} ({self.confidence:.0%} confidence; point "
                   f"estimate {self.point:.3f}) at delta {self.delta:.2g}")  # fmt: skip
        if self.lower > claimed:
            return f"{figures}: ABOVE the claimed epsilon {claimed:g}: the claimed guarantee does not hold."
        return f"{figures}: below the claimed epsilon {claimed:g}, consistent with it (this cannot prove it)."


def _epsilon(tpr: np.ndarray, fpr: np.ndarray, delta: float) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.concatenate([(tpr - delta) / fpr, (1 - fpr - delta) / (1 - tpr)])
    ratios = ratios[~np.isnan(ratios) & (ratios > 0)]  # inf: a point no epsilon explains
    return float(max(np.log(ratios).max(initial=0.0), 0.0))


def empirical_epsilon(result: MembershipResult, delta: float, confidence: float = 0.95) -> EpsilonLowerBound:
    """The epsilon ``result``'s attack proves at ``delta`` (see the module's docstring)."""
    require(0 <= delta < 1, f"delta must lie in [0, 1), got {delta}")
    require(0 < confidence < 1, f"confidence must lie in (0, 1), got {confidence}")
    n_pos, n_neg = result.n_members, result.n_nonmembers
    tp, fp = np.rint(result.tpr * n_pos), np.rint(result.fpr * n_neg)
    alpha = (1 - confidence) / (2 * len(tp))
    tpr_low = np.where(tp > 0, beta.ppf(alpha, tp, n_pos - tp + 1), 0.0)
    fpr_high = np.where(fp < n_neg, beta.ppf(1 - alpha, fp + 1, n_neg - fp), 1.0)
    point = _epsilon(result.tpr, result.fpr, delta)
    return EpsilonLowerBound(result.method, delta, confidence, point, _epsilon(tpr_low, fpr_high, delta))
