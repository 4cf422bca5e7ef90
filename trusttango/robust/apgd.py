"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", alg. 1): PGD with momentum whose step size halves at
checkpoints where the loss stopped rising, so no step size needs tuning. :class:`APGD` ascends
cross-entropy (APGD-CE) or the difference-of-logits ratio (APGD-DLR, eq. 6); :class:`APGDT`
ascends the targeted DLR loss (eq. 7) towards each of the next most likely classes in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from trusttango.errors import require
from trusttango.robust.base import RestartingAttack, at_least_one, batch_view, ranked_classes

LOSSES = ("ce", "dlr")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of logits ratio, per example, to ascend (Croce & Hein 2020). Untargeted (eq. 6):
    ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; targeted (eq. 7):
    ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``, ``z_pi`` the logits sorted in decreasing
    order. Invariant to shifting and scaling the logits; needs 3 (targeted: 4) classes."""
    need = 3 if target is None else 4
    require(logits.shape[1] >= need, f"model: the DLR loss needs at least {need} classes, got {logits.shape[1]}")
    top = logits.sort(dim=1, descending=True).values
    own = logits.gather(1, y[:, None])[:, 0]
    if target is None:
        other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        return -(own - other) / (top[:, 0] - top[:, 2] + 1e-12)
    aim = logits.gather(1, target[:, None])[:, 0]
    return -(own - aim) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + 1e-12)


@dataclass
class _State:
    """One APGD run's per-example state, over the examples not yet broken."""

    rows: torch.Tensor  # positions in the batch
    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    x_adv: torch.Tensor
    x_prev: torch.Tensor
    grad: torch.Tensor
    loss: torch.Tensor  # at the last step (before the first: 0, as the authors' implementation counts rises)
    x_best: torch.Tensor
    grad_best: torch.Tensor
    loss_best: torch.Tensor
    eta: torch.Tensor  # the step size
    rises: torch.Tensor  # steps since the last checkpoint where the loss rose
    best_at_check: torch.Tensor
    halved_at_check: torch.Tensor

    def keep(self, mask: torch.Tensor) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                setattr(self, field.name, value[mask])


def checkpoints(steps: int) -> list[int]:
    """The iterations where the step size may halve: the first after ``0.22 steps``, each later
    one 3 % of ``steps`` sooner than the one before, at least ``0.06 steps`` apart (Croce & Hein
    2020, sec. 3.2: ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``), in whole iterations of
    at least one, as the authors' implementation rounds them (for 100 steps: 22, 41, 57, ..., 99)."""
    gap, shrink, least = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    points, at = [], gap
    while at < steps:
        points.append(at)
        gap = max(gap - shrink, least)
        at += gap
    return points


class APGD(RestartingAttack):
    """Auto-PGD, untargeted success (the prediction leaves the label), ascending ``loss``
    (``"ce"``, the AutoAttack ensemble's APGD-CE, or ``"dlr"``).

    From a random point on the ``eps`` sphere, ``steps`` steps of size ``eta`` (``2 eps`` at
    first) with momentum 0.75; at each of :func:`checkpoints` ``eta`` halves, and the run goes
    back to its highest-loss point, where the loss rose in at most ``rho`` of the steps since the
    last checkpoint, or where ``eta`` was not halved last time and the best loss has not moved.
    ``restarts`` re-attack only the examples no run broke. Broken examples leave the batch
    (their adversarial point is kept), so a run costs what its unbroken examples cost. Defaults
    are AutoAttack's standard settings: 100 steps, one restart, ``rho`` 0.75; ``eps`` as
    :func:`~trusttango.robust.base.default_eps`. Random draws use torch's global generator.
    ``targeted=True`` with ``loss="ce"`` descends the cross-entropy of the target ``y``.
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float | None = None,
        norm: str = "linf",
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        rho: float = 0.75,
        targeted: bool = False,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, eps, norm, restarts, targeted, bounds)
        self.steps = at_least_one(steps, "steps")
        require(loss in LOSSES, f"loss: expected one of {LOSSES}, got {loss!r}")
        require(0 < rho < 1, f"rho: expected in (0, 1), got {rho}")
        require(
            not (targeted and loss == "dlr"), "loss: a targeted APGD ascends 'ce'; APGDT is the targeted DLR attack"
        )
        self.loss, self.rho = loss, float(rho)

    def _evaluate(
        self, x_adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-example loss to ascend, its gradient and the predictions at ``x_adv``."""
        x_adv = x_adv.detach().requires_grad_(True)
        logits = self._net(x_adv)
        loss = self._loss(logits, y) if self.loss == "ce" else dlr_loss(logits, y, target)
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
        return loss.detach(), grad, logits.detach().argmax(1)

    def _run(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, restart: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One run: per example, an adversarial point if one was found (else the highest-loss
        point), and whether it was found."""
        out, hit = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device)
        x_adv = self._sphere_point(x, self.eps)  # a random start on the eps sphere
        loss, grad, pred = self._evaluate(x_adv, y, target)
        zeros = torch.zeros(len(x), device=x.device)
        s = _State(
            torch.arange(len(x), device=x.device), x, y, target, x_adv, x_adv, grad, zeros, x_adv, grad, loss,
            torch.full((len(x),), 2 * self.eps, device=x.device), zeros, loss, torch.ones_like(zeros, dtype=torch.bool),
        )  # fmt: skip
        out, hit = self._record(s, pred, out, hit)
        marks, last = checkpoints(self.steps), 0
        for step in range(self.steps):
            if len(s.rows) == 0:
                break
            self._on_time()
            x_next = self._step(s, momentum=0.75 if step > 0 else 1.0)
            loss, grad, pred = self._evaluate(x_next, s.y, s.target)
            s.rises += (loss > s.loss).float()
            s.x_prev, s.x_adv, s.loss, s.grad = s.x_adv, x_next, loss, grad
            better = loss > s.loss_best
            s.x_best[better], s.grad_best[better], s.loss_best[better] = x_next[better], grad[better], loss[better]
            if step + 1 in marks:
                self._checkpoint(s, step + 1 - last)
                last = step + 1
            out, hit = self._record(s, pred, out, hit)
        open_ = ~hit[s.rows]  # examples still unbroken get their highest-loss point
        out[s.rows[open_]] = s.x_best[open_]
        return out, hit

    def _record(self, s: _State, pred: torch.Tensor, out: torch.Tensor, hit: torch.Tensor):
        """Keep the points that broke their example; those examples leave the run (``drop_broken``)."""
        broke = self.succeeded(pred, s.y)
        out[s.rows[broke]], hit[s.rows[broke]] = s.x_adv[broke], True
        if self.drop_broken:
            s.keep(~broke)
        return out, hit

    def _step(self, s: _State, momentum: float) -> torch.Tensor:
        """``z = P(x + eta d)``, then ``P(x + a (z - x) + (1 - a)(x - x_prev))`` (alg. 1, lines 8-9)."""
        z = self._project(s.x, s.x_adv + batch_view(s.eta, s.x) * self._direction(s.grad))
        return self._project(s.x, s.x_adv + momentum * (z - s.x_adv) + (1 - momentum) * (s.x_adv - s.x_prev))

    def _checkpoint(self, s: _State, since: int) -> None:
        """Halve ``eta`` and restart from the best point where progress stalled (conditions 1 and 2)."""
        stalled = s.rises <= self.rho * since
        stalled |= ~s.halved_at_check & (s.loss_best <= s.best_at_check)
        s.eta = torch.where(stalled, s.eta / 2, s.eta)
        s.x_adv = torch.where(batch_view(stalled, s.x), s.x_best, s.x_adv)
        s.grad = torch.where(batch_view(stalled, s.x), s.grad_best, s.grad)
        s.halved_at_check, s.best_at_check, s.rises = stalled, s.loss_best.clone(), torch.zeros_like(s.rises)


class APGDT(APGD):
    """APGD-T: APGD on the targeted DLR loss (eq. 7), aimed in turn at each of the ``targets``
    classes the model ranks highest after its prediction, on the examples no earlier target
    broke. Success is untargeted (the prediction leaves the label), as in AutoAttack, whose
    standard settings are the defaults: 9 targets, 100 steps, one restart per target."""

    def __init__(self, model: nn.Module, targets: int = 9, **settings: object) -> None:
        """``settings``: those of :class:`APGD` (``eps``, ``norm``, ``steps``, ``restarts``, ``rho``, ``bounds``)."""
        super().__init__(model, **{**settings, "loss": "dlr"})
        require(int(targets) >= 1, f"targets: expected >= 1, got {targets}")
        self.targets = int(targets)

    def _targets(self, logits: torch.Tensor) -> list[torch.Tensor | None]:
        return ranked_classes(logits, self.targets)
