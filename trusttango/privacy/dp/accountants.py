"""Privacy accountants: (epsilon, delta) of a composition of Poisson-subsampled Gaussian
mechanisms, each given as (noise multiplier sigma, sampling rate q, steps).

* ``rdp``: Renyi DP of the sampled Gaussian mechanism (Mironov, Talwar & Zhang 2019, Eq. 7),
  composed additively over steps and converted to (epsilon, delta) (Balle et al. 2020, Thm. 21).
* ``prv``: privacy random variables (Gopi, Lee & Wutschitz 2021), composed numerically.
* ``gdp``: Gaussian DP through the central limit theorem (Dong, Roth & Su 2019, Cor. 5.4);
  an approximation, not an upper bound.

All three are Opacus' accountants. Opacus warns when the optimal RDP order lies at the edge of
its grid (the bound could be tighter, never looser); :func:`quiet` silences that hint for the
duration of a ``with`` block only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from trusttango.errors import require

ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv", "gdp")
Mechanism = tuple[float, float, int]  # (noise multiplier, sampling rate, steps)


@contextmanager
def quiet() -> Iterator[None]:
    """Silence Opacus' "optimal order is the largest alpha" hint inside the block."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the (largest|smallest) alpha")
        yield


def composed_epsilon(mechanisms: list[Mechanism], delta: float) -> float:
    """epsilon at ``delta`` of the composition of the subsampled Gaussian ``mechanisms``
    (possibly different ones, e.g. one per federated round), RDP accountant; 0 for none."""
    from opacus.accountants import RDPAccountant

    require(0 < delta < 1, f"delta must lie in (0, 1), got {delta}")
    if not mechanisms:
        return 0.0
    tracker = RDPAccountant()
    tracker.history = [(float(s), float(q), int(n)) for s, q, n in mechanisms]
    with quiet():
        return float(tracker.get_epsilon(delta))
