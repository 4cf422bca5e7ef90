"""Additive secret sharing over Z_q: the average of private values without revealing any.

The lecture's "average grade": each of n parties splits its (fixed-point encoded) value
x_i into n random shares s_i1 + ... + s_in = x_i (mod q) and sends share s_ij to party j.
Party j publishes only the sum of the shares it received, S_j = sum_i s_ij; then
sum_j S_j = sum_i x_i (mod q). Any n-1 shares of x_i are uniformly random, so no coalition
of fewer than n parties learns x_i (the simplest form of secure aggregation, Bonawitz et al.
2017, Sec. 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trusttango.errors import require

MODULUS = 2**61 - 1  # a Mersenne prime; Python ints keep the arithmetic exact


@dataclass
class SharedAverage:
    """What the run revealed: the average, and each party's published share-sum."""

    average: np.ndarray
    published: list[list[int]]  # S_j per party j: uniformly random on their own
    shares: list[list[list[int]]]  # shares[i][j]: party i's share for party j (held by j only)


def encode(values: np.ndarray, scale: int, modulus: int = MODULUS) -> list[int]:
    """Fixed point: round(x * scale) mod q (negative numbers wrap around)."""
    return [int(round(float(v) * scale)) % modulus for v in np.ravel(values)]


def decode(codes: list[int], scale: int, modulus: int = MODULUS) -> np.ndarray:
    """Inverse of :func:`encode` (codes above q/2 are negative)."""
    return np.array([(c - modulus if c > modulus // 2 else c) / scale for c in codes])


def share(codes: list[int], parties: int, rng: np.random.Generator, modulus: int = MODULUS) -> list[list[int]]:
    """``parties`` additive shares of each code: n-1 uniform draws and the remainder."""
    randoms = [[int(rng.integers(0, modulus)) for _ in codes] for _ in range(parties - 1)]
    last = [(c - sum(r[k] for r in randoms)) % modulus for k, c in enumerate(codes)]
    return randoms + [last]


def secure_average(values: list[np.ndarray] | np.ndarray, scale: int = 10**6, seed: int | None = None) -> SharedAverage:
    """The mean of the parties' ``values`` (one scalar or vector each) by additive secret
    sharing; exact up to the fixed-point step ``1/scale``."""
    rows = [np.atleast_1d(np.asarray(v, dtype=float)) for v in values]
    require(len(rows) >= 2, f"values: secure averaging needs at least 2 parties, got {len(rows)}")
    require(all(r.shape == rows[0].shape for r in rows), "values: every party must hold a value of the same shape")
    require(all(np.isfinite(r).all() for r in rows), "values: must be finite numbers")
    require(scale >= 1, f"scale: must be >= 1, got {scale}")
    bound = max(float(np.abs(r).max()) for r in rows) * scale * len(rows)
    require(bound < MODULUS // 2, f"values: too large for the modulus at scale {scale}; lower the scale")
    rng = np.random.default_rng(seed)
    n = len(rows)
    shares = [share(encode(r, scale), n, rng) for r in rows]
    published = [[sum(shares[i][j][k] for i in range(n)) % MODULUS for k in range(rows[0].size)] for j in range(n)]
    total = [sum(p[k] for p in published) % MODULUS for k in range(rows[0].size)]
    average = (decode(total, scale) / n).reshape(rows[0].shape)
    return SharedAverage(average, published, shares)
