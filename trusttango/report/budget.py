"""The audit's time budget, kept: stages share the time left and size their work to their share.

Each stage asks :meth:`Budget.seconds` for its share of what is left (by :data:`WEIGHTS`,
spread over the stages still to run, so time one stage leaves unspent goes to the later ones),
then sizes its samples with :func:`affordable` from a pilot timing, or runs work that is
linear in its examples in chunks with :func:`chunks` and stops at its deadline with the
examples it has. Every stage records the sample sizes it used; the report states them.
"""

from __future__ import annotations

import math
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
    ``minimum`` (or ``wanted``, if fewer); ``minimum=0`` lets a caller skip a part that does not fit."""
    if per_item <= 0 or seconds >= per_item * wanted:
        return wanted
    return max(min(minimum, wanted), int(max(0.0, seconds) / per_item))


def chunks(n: int, size: int, deadline: float, first: int | None = None) -> Iterator[slice]:
    """Slices of ``range(n)`` until ``n`` or ``deadline`` (``time.perf_counter``): the first of
    ``first`` items (default ``size``), each later one as many, up to ``size``, as the time per
    item so far says fit before ``deadline``; none once not one more item fits. The first
    slice is always given, so a caller always has a result (on fewer items)."""
    start, begun, step = 0, time.perf_counter(), min(size, first or size)
    while start < n:
        yield slice(start, min(n, start + step))
        start += step
        left, per_item = deadline - time.perf_counter(), (time.perf_counter() - begun) / start
        if math.isinf(left) or per_item <= 0:
            step = size
        elif (step := min(size, int(left / per_item))) < 1:
            return
