"""Privacy accountants: an upper bound on epsilon at a given delta for a composition of
Poisson-subsampled Gaussian mechanisms, each given as (noise multiplier sigma, sampling rate q,
steps).

Contract: every name in :data:`ACCOUNTANTS` returns an upper bound on epsilon, never an
estimate that may fall below the true value.

* ``rdp``: Renyi DP of the sampled Gaussian mechanism (Mironov, Talwar & Zhang 2019, Eq. 7),
  composed additively over steps and converted to (epsilon, delta) (Balle et al. 2020, Thm. 21).
* ``prv``: privacy random variables (Gopi, Lee & Wutschitz 2021), composed numerically; the
  upper end of its error interval (Thm. 5.5) is returned.

Both are Opacus' accountants. Gaussian DP through the central limit theorem (Dong, Roth & Su
2019, Cor. 5.4) is deliberately not offered: it is an approximation that under-reports epsilon
for realistic (sigma, q, steps), so it cannot back a guarantee.

Opacus warns when the optimal RDP order lies at the edge of its grid (the bound could be
tighter, never looser); :func:`quiet` silences that hint for the duration of a ``with`` block.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from trusttango.errors import require

ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")
NOT_BOUNDS: dict[str, str] = {"gdp": "Gaussian DP is a central-limit approximation, not a bound"}
Mechanism = tuple[float, float, int]  # (noise multiplier, sampling rate, steps)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence Opacus' "optimal order is the largest alpha" hint inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
        yield


def check_accountant(name: str) -> str:
    """``name`` if it is an accountant that bounds epsilon; an ``InputError`` otherwise."""
    reason = f" ({NOT_BOUNDS[name]})" if name in NOT_BOUNDS else ""
    require(name in ACCOUNTANTS, f"accountant {name!r}{reason}: choose one of {', '.join(ACCOUNTANTS)}")
    return name


def check_mechanism(sigma: float, q: float, steps: int) -> None:
    """A subsampled Gaussian mechanism: sigma > 0 finite, q in (0, 1], steps >= 0."""
    require(math.isfinite(sigma) and sigma > 0, f"noise multiplier must be a finite value > 0, got {sigma}")
    require(0 < q <= 1, f"sampling rate must lie in (0, 1], got {q}")
    require(int(steps) >= 0, f"steps must be >= 0, got {steps}")


def composed_epsilon(mechanisms: list[Mechanism], delta: float, accountant: str = "rdp") -> float:
    """An upper bound on epsilon at ``delta`` of the composition of the Poisson-subsampled
    Gaussian ``mechanisms`` (possibly different ones, e.g. one per federated round); 0 for none."""
    from opacus.accountants import create_accountant

    check_accountant(accountant)
    require(0 < delta < 1, f"delta must lie in (0, 1), got {delta}")
    for sigma, q, steps in mechanisms:
        check_mechanism(sigma, q, steps)
    history = [(float(s), float(q), int(n)) for s, q, n in mechanisms if int(n) > 0]
    if not history:
        return 0.0
    tracker = create_accountant(accountant)
    tracker.history = history
    with quiet():
        return float(tracker.get_epsilon(delta))
