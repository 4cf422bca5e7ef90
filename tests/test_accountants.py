"""Every offered accountant is an upper bound on epsilon: checked against an independent
implementation, Google's ``dp-accounting`` PLD accountant (Koskela et al. 2020; Doroshenko et
al. 2022, pessimistic estimate), on a grid of (sigma, q, steps). GDP, an approximation, is
shown to fail the same check, so the check can tell an estimate from a bound."""

from __future__ import annotations

import itertools
import math

import pytest
from dp_accounting import dp_event
from dp_accounting.pld import pld_privacy_accountant
from opacus.accountants import GaussianAccountant

from trusttango.errors import InputError
from trusttango.privacy.dp.accountants import ACCOUNTANTS, check_accountant, composed_epsilon

DELTA = 1e-5
GRID = list(itertools.product((0.7, 1.0, 1.5, 3.0), (0.005, 0.05), (200, 3000)))  # 16 points
TOLERANCE = 0.01  # PLD is discretised: an accountant may undercut it by this much, relatively


def pld_epsilon(sigma: float, q: float, steps: int) -> float:
    accountant = pld_privacy_accountant.PLDAccountant()
    event = dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma))
    accountant.compose(dp_event.SelfComposedDpEvent(event, steps))
    return accountant.get_epsilon(DELTA)


@pytest.fixture(scope="module")
def reference() -> dict[tuple[float, float, int], float]:
    return {point: pld_epsilon(*point) for point in GRID}


def under_reported(epsilon_of, reference) -> list[str]:
    """The grid points where ``epsilon_of(sigma, q, steps)`` falls below PLD's epsilon by more than 1 %."""
    return [
        f"{point}: {eps:.4g} < PLD {ref:.4g}"
        for point, ref in reference.items()
        if (eps := epsilon_of(*point)) < ref * (1 - TOLERANCE)
    ]


@pytest.mark.parametrize("accountant", ACCOUNTANTS)
def test_every_offered_accountant_bounds_the_pld_epsilon(accountant, reference):
    low = under_reported(lambda s, q, n: composed_epsilon([(s, q, n)], DELTA, accountant), reference)
    assert not low, f"{accountant} under-reports epsilon:\n" + "\n".join(low)


def test_gdp_would_fail_the_same_check(reference):
    """The wrong implementation the check exists for: Opacus' GDP accountant (a CLT estimate)."""

    def gdp(sigma: float, q: float, steps: int) -> float:
        tracker = GaussianAccountant()
        tracker.history = [(sigma, q, steps)]
        return tracker.get_epsilon(DELTA)

    assert len(under_reported(gdp, reference)) >= len(GRID) // 2


def test_gdp_is_refused_with_the_reason():
    with pytest.raises(InputError, match="approximation, not a bound"):
        check_accountant("gdp")
    with pytest.raises(InputError, match="choose one of rdp, prv"):
        composed_epsilon([(1.0, 0.01, 10)], DELTA, "moments")


@pytest.mark.parametrize(
    "mechanism,delta",
    [((0.0, 0.01, 10), DELTA), ((math.nan, 0.01, 10), DELTA), ((1.0, 0.0, 10), DELTA), ((1.0, 1.5, 10), DELTA),
     ((1.0, 0.01, 10), 1.0), ((1.0, 0.01, -1), DELTA)],
)  # fmt: skip
def test_bad_mechanisms_are_refused(mechanism, delta):
    with pytest.raises(InputError):
        composed_epsilon([mechanism], delta)


def test_no_steps_spend_nothing():
    assert composed_epsilon([], DELTA) == 0.0 and composed_epsilon([(1.0, 0.1, 0)], DELTA) == 0.0
