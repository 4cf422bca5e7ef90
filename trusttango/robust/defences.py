"""Defences as hooks on the one training loop (:func:`trusttango.train.fit`).

- :class:`AdversarialTraining`: replace a fraction of each batch by adversarial examples made
  against the current model, PGD (Madry et al. 2018) or FGSM with a random start
  (Wong et al. 2020, "Fast is better than free": uniform start in the ball, step 1.25 eps).
- :class:`LipschitzRegulariser`: Woods et al. 2019's input-gradient penalty
  ``CE + psi * mean_n |d zeta_n / d x_n|^2`` by double backprop, where ``zeta_n`` is a random
  logit (probability 0.8) or the margin ``logit_y - max_{j != y} logit_j`` (0.2), and ``psi``
  adapts multiplicatively so the CE stays near ``target_ce``. The paper pairs it with the
  half-Huber ReLU (``activation="half_huber"``), whose second derivative is not zero almost
  everywhere; on a short budget (4 epochs, 6k Fashion-MNIST images) the half-Huber small CNN
  reached only 0.68 test accuracy against 0.85 with ReLU, so measure before choosing it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trusttango.errors import require
from trusttango.robust.attacks import PGD
from trusttango.robust.base import Attack
from trusttango.train import EpochRecord, Hook, TrainState

ADVERSARIAL_METHODS = ("pgd", "fgsm")


class AdversarialTraining(Hook):
    """Mix attacked examples into every training batch.

    ``method``: ``pgd`` (``steps`` steps of ``alpha``, default ``2.5 eps / steps``) or ``fgsm``
    (FGSM from a uniform random start, step ``1.25 eps``); ``ratio``: the fraction of each
    batch replaced by its adversarial version (1.0 = Madry's pure adversarial training).
    """

    def __init__(
        self,
        eps: float = 0.1,
        method: str = "pgd",
        norm: str = "linf",
        steps: int = 7,
        ratio: float = 0.5,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        require(method in ADVERSARIAL_METHODS, f"method: expected one of {ADVERSARIAL_METHODS}, got {method!r}")
        require(0 < ratio <= 1, f"ratio: expected in (0, 1], got {ratio}")
        require(math.isfinite(eps) and eps > 0, f"eps: expected > 0, got {eps}")
        self.eps, self.method, self.norm, self.steps, self.ratio, self.bounds = eps, method, norm, steps, ratio, bounds

    def _attack(self, state: TrainState) -> Attack:
        if self.method == "pgd":
            return PGD(state.model, eps=self.eps, norm=self.norm, steps=self.steps, restarts=1, bounds=self.bounds)
        return _RandomStartFGSM(state.model, eps=self.eps, norm=self.norm, bounds=self.bounds)

    def batch(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(1, round(self.ratio * len(x)))
        x_adv = self._attack(state)(x[:n], y[:n])  # made in eval mode; the model's train mode is restored
        return torch.cat([x_adv, x[n:]]), y

    def meta(self) -> dict:
        return {
            "defence": "adversarial",
            "method": self.method,
            "eps": self.eps,
            "norm": self.norm,
            "ratio": self.ratio,
        }


class _RandomStartFGSM(PGD):
    """One step of ``1.25 eps`` from a uniform random start, projected (Wong et al. 2020)."""

    def __init__(self, model, eps: float, norm: str, bounds: tuple[float, float]) -> None:
        super().__init__(model, eps=eps, norm=norm, steps=1, alpha=1.25 * eps, bounds=bounds)


def _zeta(logits: torch.Tensor, y: torch.Tensor, p_logit: float) -> torch.Tensor:
    """Per example: a uniformly random logit (prob. ``p_logit``) or the margin logit_y - max_{j!=y} logit_j."""
    n, k = logits.shape
    rows = torch.arange(n, device=logits.device)
    random_logit = logits[rows, torch.randint(k, (n,), device=logits.device)]
    others = logits.masked_fill(F.one_hot(y, k).bool(), -torch.inf).amax(1)
    margin = logits[rows, y] - others
    use_logit = torch.rand(n, device=logits.device) < p_logit
    return torch.where(use_logit, random_logit, margin)


class LipschitzRegulariser(Hook):
    """Input-gradient (Lipschitz-inspired) regulariser of Woods et al. 2019 with adaptive ``psi``.

    After each step ``psi <- psi * exp(rate * (target_ce - CE) / target_ce)``: the penalty grows
    while the CE is below ``target_ce`` and shrinks when it rises above, so accuracy is traded
    for smoothness only down to that CE. ``psi`` stays in ``[psi_min, psi_max]``. The relative
    error makes the controller fast enough to recover, within an epoch, from the collapse of
    ``psi`` while the CE of the first epoch is still far above the target. ``target_ce`` sets
    the trade between robustness (ARA) and clean accuracy (measured trades:
    ``benchmarks/RESULTS.md``).
    """

    def __init__(
        self,
        psi: float = 1.0,
        target_ce: float = 0.6,
        rate: float = 0.5,
        p_logit: float = 0.8,
        psi_min: float = 1e-3,
        psi_max: float = 1e4,
    ) -> None:
        require(
            psi > 0 and target_ce > 0 and rate >= 0,
            f"psi, target_ce: expected > 0, rate >= 0; got {psi}, {target_ce}, {rate}",
        )
        require(0 <= p_logit <= 1, f"p_logit: expected in [0, 1], got {p_logit}")
        self.psi, self.target_ce, self.rate, self.p_logit = float(psi), float(target_ce), float(rate), float(p_logit)
        self.psi_min, self.psi_max = psi_min, psi_max
        self._penalty_sum, self._steps = 0.0, 0

    def batch(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.detach().requires_grad_(True), y  # the logits' graph then reaches x

    def loss(
        self, state: TrainState, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor
    ) -> torch.Tensor:
        (grad,) = torch.autograd.grad(_zeta(logits, y, self.p_logit).sum(), x, create_graph=True)
        penalty = grad.flatten(1).pow(2).sum(1).mean()
        ce = float(loss.detach())
        psi = self.psi * math.exp(self.rate * (self.target_ce - ce) / self.target_ce)
        self.psi = min(self.psi_max, max(self.psi_min, psi))
        self._penalty_sum, self._steps = self._penalty_sum + float(penalty.detach()), self._steps + 1
        return loss + self.psi * penalty

    def epoch_end(self, state: TrainState, record: EpochRecord) -> None:
        record.extra.update(psi=self.psi, grad_penalty=self._penalty_sum / max(1, self._steps))
        self._penalty_sum, self._steps = 0.0, 0

    def meta(self) -> dict:
        return {"defence": "lipschitz", "psi": self.psi, "target_ce": self.target_ce, "p_logit": self.p_logit}


DEFENCES = ("none", "adversarial", "lipschitz")


def defence_hooks(
    name: str, eps: float = 0.1, method: str = "pgd", psi: float = 1.0, target_ce: float = 0.5
) -> list[Hook]:
    """The training hooks of a defence chosen by name (the ``train --defence`` option)."""
    require(name in DEFENCES, f"--defence: expected one of {', '.join(DEFENCES)}, got {name!r}")
    if name == "adversarial":
        return [AdversarialTraining(eps=eps, method=method)]
    if name == "lipschitz":
        return [LipschitzRegulariser(psi=psi, target_ce=target_ce)]
    return []
