"""The audit's time budget, kept: stages share the time left and size their work to their share.

Each stage asks :meth:`Budget.seconds` for its share of what is left (by :data:`WEIGHTS`,
spread over the stages still to run, so time one stage leaves unspent goes to the later ones),
then sizes its samples with :func:`affordable` from a pilot timing, or runs work that is
linear in its examples in chunks with :func:`chunks` and stops at its deadline with the
examples it has. Every stage records the sample sizes it used; the report states them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

# the stages' shares of the time left after the search (robustness runs the strongest attacks)
WEIGHTS = {"evaluation": 0.08, "insight": 0.15, "robustness": 0.45, "detection": 0.17, "privacy": 0.1, "fairness": 0.05}


@dataclass
class Budget:
    """``total`` seconds from ``start`` (``time.perf_counter``)."""

    total: float
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        """Seconds left (negative once overrun)."""
        return self.total - (time.perf_counter() - self.start)

    def seconds(self, stage: str) -> float:
        """The share of the time left that ``stage`` (a key of :data:`WEIGHTS`) may spend."""
        names = list(WEIGHTS)
        later = names[names.index(stage) :]
        return max(0.0, self.left()) * WEIGHTS[stage] / sum(WEIGHTS[name] for name in later)


def affordable(seconds: float, per_item: float, wanted: int, minimum: int = 1) -> int:
    """How many of ``wanted`` items fit in ``seconds`` at ``per_item`` seconds each, at least
    ``minimum`` (or ``wanted``, if fewer): a stage always gives a result, on fewer examples."""
    if per_item <= 0 or seconds >= per_item * wanted:
        return wanted
    return max(min(minimum, wanted), int(seconds / per_item))


def chunks(n: int, size: int, deadline: float) -> Iterator[slice]:
    """Slices of ``range(n)`` of ``size``, until ``n`` or ``deadline`` (``time.perf_counter``) is
    reached; the first is always given."""
    for start in range(0, n, size):
        if start > 0 and time.perf_counter() >= deadline:
            return
        yield slice(start, min(n, start + size))
