"""The audit's verdicts: each a pure function of measured figures and the user's thresholds,
returning the verdict and the rule, with its source, that the report prints beside it.

Contract: a verdict never says more than the evidence behind it.

* ``pass`` / ``warn`` / ``fail``: the figure against its threshold (``warn``: on the wrong side
  by at most 10 % of the threshold).
* ``not established``: the evidence a reviewer of the field asks for has not been produced
  (a detector not evaluated under an adaptive attack; privacy with membership attacks alone and
  no differential-privacy bound: attacks can show a leak, never its absence).
* ``not meaningful``: the model fails its accuracy threshold, so robustness, explanations and
  leakage of that model say nothing about one worth deploying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trusttango.errors import require

PASS, WARN, FAIL = "pass", "warn", "fail"
NOT_ESTABLISHED, NOT_MEANINGFUL = "not established", "not meaningful"
VERDICTS = (PASS, WARN, FAIL, NOT_ESTABLISHED, NOT_MEANINGFUL, "n/a")
# weakest first: no evidence ("not established") ranks above a measured failure, below a warning;
# "n/a" (a stage that does not apply) is not ranked
ORDER = (NOT_MEANINGFUL, FAIL, NOT_ESTABLISHED, WARN, PASS)


def at_or_below(verdict: str, level: str) -> bool:
    """Whether ``verdict`` is ranked at or below ``level`` in :data:`ORDER` ("n/a" never is)."""
    return verdict in ORDER and ORDER.index(verdict) <= ORDER.index(level)


ENSEMBLE = "AutoAttack (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020)"  # the verdict's attack


@dataclass(frozen=True)
class Verdict:
    """A verdict and the rule (with its source) it was reached by."""

    verdict: str
    rule: str


@dataclass(frozen=True)
class ThreatModel:
    """The perturbation budget robustness is judged at, and where that budget comes from."""

    eps: float
    norm: str
    source: str


THREAT_MODELS: dict[str, ThreatModel] = {
    "mnist-5k": ThreatModel(0.3, "linf", "MNIST: Madry et al. 2018, the MNIST challenge budget"),
    "fashion-mnist": ThreatModel(0.1, "linf", "Fashion-MNIST: Wong & Kolter 2018, Sec. 5"),
    "digits": ThreatModel(0.1, "linf", "8x8 digits: no published budget; Fashion-MNIST's, Wong & Kolter 2018"),
}
NATURAL_IMAGES = ThreatModel(8 / 255, "linf", "natural images: RobustBench's L-inf budget, Croce et al. 2021")
NATURAL_IMAGES_L2 = ThreatModel(0.5, "l2", "natural images: RobustBench's L2 budget, Croce et al. 2021")
NORMS = ("linf", "l2")


def threat_model(data: str, eps: float | None = None, norm: str = "linf") -> ThreatModel:
    """The budget for ``data`` in ``norm``: L-inf from :data:`THREAT_MODELS` (else
    :data:`NATURAL_IMAGES`), L2 :data:`NATURAL_IMAGES_L2`; ``eps`` given by the user overrides it
    and is reported as the user's choice."""
    require(norm in NORMS, f"norm (--norm): expected one of {', '.join(NORMS)}, got {norm!r}")
    if eps is not None:
        limit = 1.0 if norm == "linf" else float("inf")
        bad = f"robust_eps (--eps) must lie in (0, {limit:g}] for {norm}, got {eps}"
        require(math.isfinite(eps) and 0 < eps <= limit, bad)
        return ThreatModel(float(eps), norm, "set by the user")
    if norm == "l2":
        return NATURAL_IMAGES_L2
    return THREAT_MODELS.get(data, NATURAL_IMAGES)


def graded(value: float, threshold: float, higher_is_better: bool = True) -> str:
    """``pass`` on the right side of ``threshold``, ``warn`` within 10 % of it, ``fail`` beyond."""
    good = value >= threshold if higher_is_better else value <= threshold
    near = value >= 0.9 * threshold if higher_is_better else value <= 1.1 * threshold
    return PASS if good else WARN if near else FAIL


_NOT_ACCURATE = "the model fails its accuracy threshold: this figure describes no model worth deploying"


def accuracy_verdict(accuracy: float, threshold: float) -> Verdict:
    return Verdict(graded(accuracy, threshold), f"test accuracy >= {threshold:g} (the user's threshold)")


def robustness_verdict(
    robust: float, threat: ThreatModel, threshold: float, accurate: bool, attack: str = ENSEMBLE
) -> Verdict:
    """Robust accuracy (correct before and after the attack) under the standard ensemble
    ``attack`` (:data:`ENSEMBLE`, the field's standard evaluation) at the stated budget, against
    ``threshold``."""
    if not accurate:
        return Verdict(NOT_MEANINGFUL, _NOT_ACCURATE)
    rule = f"robust accuracy >= {threshold:g} under {attack} at {threat.norm} eps {threat.eps:.4g} ({threat.source})"
    return Verdict(graded(robust, threshold), rule)


def black_box_robustness_verdict(robust: float, threat: ThreatModel, threshold: float, accurate: bool) -> Verdict:
    """Robust accuracy under the score-based Square attack only (a model without gradients): an
    upper bound, so it can fail a model but never pass one."""
    if not accurate:
        return Verdict(NOT_MEANINGFUL, _NOT_ACCURATE)
    rule = (
        f"robust accuracy >= {threshold:g} at {threat.norm} eps {threat.eps:.4g} ({threat.source}); measured by the "
        "score-based Square attack alone (no gradients), an upper bound: it can fail a model, never pass it"
    )
    verdict = graded(robust, threshold)
    return Verdict(NOT_ESTABLISHED if verdict == PASS else verdict, rule)


def insight_verdict(
    sanity_spearman: float | None, accurate: bool, why_not_run: str = "the model's weights cannot be randomised"
) -> Verdict:
    """The most faithful map must fail the model-randomisation sanity check's similarity bound
    (None: the check could not run, ``why_not_run``; e.g. a black box's weights cannot be randomised)."""
    if not accurate:
        return Verdict(NOT_MEANINGFUL, _NOT_ACCURATE)
    rule = "maps of a randomised model must differ: Spearman < 0.5 (Adebayo et al. 2018, sanity checks)"
    if sanity_spearman is None:
        return Verdict(NOT_ESTABLISHED, f"{rule}; not run: {why_not_run}")
    return Verdict(PASS if sanity_spearman < 0.5 else WARN, rule)


def detection_verdict(adaptive: bool, auc: float | None = None, threshold: float = 0.9) -> Verdict:
    """A detector counts only once evaluated under an adaptive attack that knows it."""
    source = "Carlini & Wagner 2017, 'Adversarial examples are not easily detected'; Tramer et al. 2020"
    if not adaptive or auc is None:
        return Verdict(NOT_ESTABLISHED, f"no adaptive attack has been run against the detector ({source})")
    return Verdict(graded(auc, threshold), f"AUC >= {threshold:g} under an adaptive attack ({source})")


def privacy_verdict(
    membership_auc: float,
    auc_threshold: float,
    dp_epsilon: float | None,
    epsilon_threshold: float,
    accurate: bool,
    proven_epsilon: float = 0.0,
) -> Verdict:
    """``fail`` when an attack already shows a leak, when the epsilon an attack proves (a lower
    bound, :mod:`trusttango.privacy.audits.lower_bound`) exceeds the claimed DP epsilon, or when
    the DP bound is weak; ``pass`` only on a differential-privacy bound; ``not established``
    otherwise."""
    if not accurate:
        return Verdict(NOT_MEANINGFUL, _NOT_ACCURATE)
    if membership_auc > auc_threshold:
        return Verdict(FAIL, f"a leak shown: membership AUC above {auc_threshold:g} (Yeom et al. 2018)")
    if dp_epsilon is not None and proven_epsilon > dp_epsilon:
        return Verdict(FAIL, f"an attack proves epsilon >= {proven_epsilon:.3g}, above the claimed {dp_epsilon:.3g}: "
                             "the DP guarantee does not hold (Jagielski et al. 2020)")  # fmt: skip
    dp_rule = f"DP bound epsilon <= {epsilon_threshold:g} (Ponomareva et al. 2023, 'How to DP-fy ML', Sec. 5.2)"
    if dp_epsilon is not None:
        return Verdict(PASS if dp_epsilon <= epsilon_threshold else FAIL, dp_rule)
    return Verdict(
        NOT_ESTABLISHED,
        "membership attacks cannot show the absence of a leak, even at low false-positive rates (Carlini et al. "
        f"2022): needs a {dp_rule}",
    )
