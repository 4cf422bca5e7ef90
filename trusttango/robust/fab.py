"""Fast Adaptive Boundary attack (Croce & Hein 2020, "Minimally distorted adversarial examples
with a fast adaptive boundary attack", alg. 1), L-inf and L2: each step projects onto the
linearised decision boundary, both from the current point and from the original input, and
mixes the two so the point found stays close to the input. :class:`FAB` takes the nearest
linearised boundary of any class; :class:`FABT` (FAB-T, the AutoAttack ensemble's) aims at
each of the next most likely classes in turn.
"""

from __future__ import annotations

import torch
from torch import nn

from trusttango.errors import require
from trusttango.robust.base import (
    RestartingAttack,
    at_least_one,
    batch_view,
    margin_gradients,
    ranked_classes,
)


def level(weights: torch.Tensor, breaks: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Per row, the smallest ``lam >= 0`` with ``sum_i weights_i * min(lam, breaks_i) = c``
    (``weights``, ``breaks`` >= 0, (n, d); ``c`` >= 0, (n,)); ``inf`` where even
    ``lam = inf`` falls short. The sum is piecewise linear and non-decreasing in ``lam`` with
    kinks at the sorted ``breaks``: count the kinks below the level, then solve the linear piece."""
    breaks, order = breaks.sort(dim=1)
    weights = weights.gather(1, order)
    zero = torch.zeros_like(c)[:, None]
    saturated = torch.cat([zero, (weights * breaks).cumsum(1)], 1)  # sum over the first k kinks
    free = weights.sum(1, keepdim=True) - torch.cat([zero, weights.cumsum(1)], 1)  # weight beyond them
    at_kinks = saturated[:, 1:] + free[:, 1:] * breaks  # the sum at lam = breaks_k
    k = (at_kinks < c[:, None]).sum(1, keepdim=True)
    lam = ((c[:, None] - saturated.gather(1, k)) / free.gather(1, k).clamp_min(1e-30))[:, 0]
    return torch.where(k[:, 0] == breaks.shape[1], torch.full_like(lam, float("inf")), lam)


def project_onto_boundary(
    t: torch.Tensor, w: torch.Tensor, c: torch.Tensor, norm: str, bounds: tuple[float, float]
) -> torch.Tensor:
    """The smallest step ``d`` (in ``norm``) with ``w . d = c`` and ``t + d`` inside ``bounds``:
    the projection of each row of ``t`` (n, d) onto the hyperplane intersected with the box.
    With ``c >= 0`` (else flip ``w``), coordinate ``i`` can move ``cap_i`` in the direction of
    ``w_i`` before it hits the box; L-inf: ``d_i = sign(w_i) min(r, cap_i)``, L2:
    ``d_i = w_i min(lam, cap_i / |w_i|)``, the radius ``r`` or multiplier ``lam`` from
    :func:`level`. Where the hyperplane cannot be reached, every coordinate moves its full ``cap``."""
    w = torch.where(c[:, None] < 0, -w, w)
    c = c.abs()
    lo, hi = bounds
    cap = torch.where(w > 0, hi - t, t - lo).clamp_min(0)
    if norm == "linf":
        radius = level(w.abs(), cap, c)
        return w.sign() * torch.minimum(cap, radius[:, None])
    moving = w.abs() > 1e-12
    breaks = torch.where(moving, cap / w.abs().clamp_min(1e-12), torch.zeros_like(cap))
    lam = level(w.pow(2), breaks, c)
    return w * torch.minimum(breaks, lam[:, None])


class FAB(RestartingAttack):
    """FAB, untargeted: the point found is the closest adversarial one of its run; it counts
    (and is returned) only inside the ``eps`` ball, as in AutoAttack; an example not broken
    inside the ball is returned unchanged.

    Each step linearises the margins ``logit_c - logit_y`` at the current point, takes the class
    whose linearised boundary is nearest (``|f_c| / ||grad f_c||_*``, the dual norm; a targeted
    subclass: the target), projects onto that boundary within the box from the current point
    (``d1``) and from the input (``d2``), and moves to
    ``(1 - a)(x_k + eta d1) + a (x + eta d2)``, ``a = min(|d1| / (|d1| + |d2|), alpha_max)``.
    A point that is adversarial is kept if closer than the best, then pulled back towards the
    input: ``x + beta (x_k - x)``. Restarts after the first start at a random point at distance
    ``eps / 2``. Defaults are the paper's and AutoAttack's: 100 steps, ``alpha_max`` 0.1,
    ``eta`` 1.05, ``beta`` 0.9, one restart. Examples broken inside the ball leave the batch.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float | None = None,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, eps, norm, restarts, bounds=bounds)
        self.steps = at_least_one(steps, "steps")
        require(0 <= alpha_max <= 1 and eta >= 1 and 0 < beta <= 1, "alpha_max, beta: expected in [0, 1]; eta >= 1")
        self.alpha_max, self.eta, self.beta = float(alpha_max), float(eta), float(beta)

    def _boundary(
        self, x_k: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w, f)``: gradient (n, d) and value (n,) of the chosen linearised margin at ``x_k``."""
        x_in = x_k.detach().requires_grad_(True)
        logits = self._net(x_in)
        if target is None:
            classes = logits.detach().argsort(1, descending=True)
            classes = classes[classes != y[:, None]].view(len(y), -1)  # every class but the label
        else:
            classes = target[:, None]
        w, f = margin_gradients(x_in, logits, classes, y)
        w = w.flatten(2)
        dual = w.abs().sum(2) if self.norm == "linf" else w.norm(dim=2)
        nearest = (f.abs() / dual.clamp_min(1e-12)).argmin(1)
        rows = torch.arange(len(y), device=y.device)
        return w[rows, nearest], f[rows, nearest]

    def _run(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, restart: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, hit = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        rows = torch.arange(len(x), device=x.device)
        x_k = x.clone() if restart == 0 else self._sphere_point(x, 0.5 * self.eps)
        best = torch.full((len(x),), float("inf"), device=x.device)
        for _ in range(self.steps):
            self._on_time()
            x0, aim = x[rows], None if target is None else target[rows]
            x_k = self._step(x0, x_k, y[rows], aim)
            with torch.no_grad():
                adversarial = self.succeeded(self._net(x_k).argmax(1), y[rows])
            size = self._size(x_k - x0)
            closer = adversarial & (size < best[rows])
            out[rows[closer]], best[rows[closer]] = x_k[closer], size[closer]
            x_k = torch.where(batch_view(adversarial, x_k), x0 + self.beta * (x_k - x0), x_k)
            inside = best[rows] <= self.eps + 1e-7
            hit[rows[inside]] = True
            if self.drop_broken:
                rows, x_k = rows[~inside], x_k[~inside]
            if len(rows) == 0:
                break
        out[~hit] = x[~hit]
        return out, hit

    def _step(self, x0: torch.Tensor, x_k: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """One FAB step from ``x_k`` (alg. 1, lines 4-8)."""
        w, f = self._boundary(x_k, y, target)
        flat_k, flat_0 = x_k.flatten(1), x0.flatten(1)
        d1 = project_onto_boundary(flat_k, w, -f, self.norm, self.bounds)
        d2 = project_onto_boundary(flat_0, w, (w * (flat_k - flat_0)).sum(1) - f, self.norm, self.bounds)
        a1, a2 = self._size(d1).clamp_min(1e-8), self._size(d2).clamp_min(1e-8)
        alpha = (a1 / (a1 + a2)).clamp(0, self.alpha_max)[:, None]
        mixed = (1 - alpha) * (flat_k + self.eta * d1) + alpha * (flat_0 + self.eta * d2)
        return self._clip(mixed.view_as(x_k)).detach()


class FABT(FAB):
    """FAB-T: FAB towards each of the ``targets`` classes the model ranks highest after its
    prediction, in turn, on the examples no earlier target broke; success is untargeted, as in
    AutoAttack, whose standard settings are the defaults (9 targets, 100 steps, one restart)."""

    def __init__(self, model: nn.Module, targets: int = 9, **settings: object) -> None:
        """``settings``: those of :class:`FAB`."""
        super().__init__(model, **settings)
        require(int(targets) >= 1, f"targets: expected >= 1, got {targets}")
        self.targets = int(targets)

    def _targets(self, logits: torch.Tensor) -> list[torch.Tensor | None]:
        return ranked_classes(logits, self.targets)
