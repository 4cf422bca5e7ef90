"""Randomised response (Warner 1965) for a binary survey question, as local DP.

Each respondent answers truthfully with probability ``p``, otherwise flips a fair coin and
answers "yes" on heads. So ``P(yes | truth yes) = (1 + p) / 2`` and ``P(yes | truth no) =
(1 - p) / 2``: the mechanism is ``epsilon``-DP with ``epsilon = ln((1 + p) / (1 - p))`` (the
log-odds of the two outcomes; Dwork & Roth 2014, Section 3.2). With ``lambda`` the observed
"yes" rate over ``n`` answers, the unbiased estimate of the true rate is
``pi = (lambda - (1 - p) / 2) / p`` with variance ``lambda (1 - lambda) / (n p^2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trusttango.errors import InputError, require


def epsilon_of(p: float) -> float:
    """Privacy loss of randomised response with truth probability ``p``."""
    require(0 <= p < 1, f"p must lie in [0, 1), got {p}")
    return math.log((1 + p) / (1 - p))


def p_for_epsilon(epsilon: float) -> float:
    """Truth probability giving exactly ``epsilon``: ``(e^eps - 1) / (e^eps + 1)``."""
    require(epsilon > 0 and math.isfinite(epsilon), f"epsilon must be > 0 and finite, got {epsilon}")
    return math.tanh(epsilon / 2)


def as_binary(values: np.ndarray, name: str = "answers") -> np.ndarray:
    """A 0/1 boolean array from booleans, 0/1 numbers or yes/no / true/false strings."""
    arr = np.asarray(values)
    if arr.dtype == bool:
        return arr
    text = np.char.lower(arr.astype(str))
    yes, no = np.isin(text, ["1", "1.0", "true", "yes", "y"]), np.isin(text, ["0", "0.0", "false", "no", "n"])
    if not (yes | no).all():
        bad = arr[~(yes | no)][0]
        raise InputError(f"{name}: expected binary values (0/1, yes/no, true/false), found {bad!r}")
    return yes


def randomize(answers: np.ndarray, epsilon: float, seed: int = 0) -> np.ndarray:
    """Each respondent's randomised answer under ``epsilon``-DP randomised response."""
    truth = as_binary(answers)
    rng = np.random.default_rng(seed)
    honest = rng.random(len(truth)) < p_for_epsilon(epsilon)
    return np.where(honest, truth, rng.random(len(truth)) < 0.5)


@dataclass
class RateEstimate:
    """Unbiased estimate of the true "yes" rate from randomised answers, with its CI."""

    rate: float
    low: float
    high: float
    observed: float
    epsilon: float
    n: int
    confidence: float

    def __str__(self) -> str:
        return (
            f"true rate ~ {self.rate:.4f} ({self.confidence:.0%} CI [{self.low:.4f}, {self.high:.4f}]) from "
            f"{self.n} answers at epsilon {self.epsilon:.3g} (observed yes rate {self.observed:.4f})"
        )


def estimate(responses: np.ndarray, epsilon: float, confidence: float = 0.95) -> RateEstimate:
    """Unbiased estimate of the true rate and a normal-approximation confidence interval
    (clipped to [0, 1]) from randomised ``responses``."""
    from scipy.stats import norm

    require(0 < confidence < 1, f"confidence must lie in (0, 1), got {confidence}")
    answers = as_binary(responses, "responses")
    require(len(answers) > 0, "responses: empty")
    p = p_for_epsilon(epsilon)
    observed = float(answers.mean())
    rate = (observed - (1 - p) / 2) / p
    half = norm.ppf(0.5 + confidence / 2) * math.sqrt(observed * (1 - observed) / len(answers)) / p
    return RateEstimate(rate, max(0.0, rate - half), min(1.0, rate + half), observed, epsilon, len(answers), confidence)
