"""Adversarial attacks behind one interface.

``attack = PGD(model, eps=0.1)``; ``x_adv = attack(x, y)``; ``result = attack.run(x, y)``
gives an :class:`AttackResult` with the per-example success flag and the L-inf, L2 and RMS
sizes of the perturbation. For a targeted attack (``targeted=True``) ``y`` is the target
class; ``run(x, y, labels=...)`` names the true labels (default: the clean predictions) and
a target equal to the true label is refused. Inputs must lie in ``bounds``; every attack
keeps its output inside ``bounds`` and the norm-bounded ones inside the ``eps`` ball.
Attacks run the model in eval mode, with BatchNorm folded into the convolutions before it
(:class:`~trusttango.models.folding.FoldedBatchNorm`: the same function, fewer layers); set
``attack.fold_batchnorm = False`` to run the model exactly as given.

Papers: FGSM (Goodfellow et al. 2015, eq. 3), BIM (Kurakin et al. 2017), PGD (Madry et al.
2018, eq. 2 with random start and restarts), MI-FGSM (Dong et al. 2018, alg. 1), C&W-L2
(Carlini & Wagner 2017, eq. 7 in tanh space with binary search on c), DeepFool
(Moosavi-Dezfooli et al. 2016, alg. 2) and DDN (Rony et al. 2019, alg. 1) as the
minimum-norm L2 attack used for ARA; Square (Andriushchenko et al. 2020, :mod:`~trusttango.robust.square`)
as the score-based attack; APGD-CE and APGD-T (Croce & Hein 2020, :mod:`~trusttango.robust.apgd`), FAB
and FAB-T (Croce & Hein 2020, :mod:`~trusttango.robust.fab`), and their standard ensemble, AutoAttack
(:mod:`~trusttango.robust.autoattack`).
The interface itself is :mod:`~trusttango.robust.base`.

:data:`ATTACKS` names every attack; :func:`make_attack` builds one by name from the settings
it takes. The base class takes only the model and holds the success rule; each attack's
settings (``targeted``, ``bounds``, budget, steps, ...) are in its ``__init__``.
"""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import require
from trusttango.robust.apgd import APGD, APGDT
from trusttango.robust.autoattack import AutoAttack
from trusttango.robust.base import (
    Attack,
    BallAttack,
    batch_view,
    check_logits,
    default_eps,
    flat_norm,
    margin_gradients,
)
from trusttango.robust.fab import FAB, FABT
from trusttango.robust.square import Square


class _GradientAttack(BallAttack):
    """Iterated (normalised) gradient steps projected onto the ``eps`` ball of ``norm``: FGSM,
    BIM, PGD, MI-FGSM. ``alpha`` (the step) defaults to ``2.5 eps / steps`` (Madry et al. 2018)."""

    random_start = False
    momentum: float | None = None  # MI-FGSM's decay factor mu
    restarts = 1

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        norm: str = "linf",
        steps: int = 10,
        alpha: float | None = None,
        targeted: bool = False,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model)
        self._threat(targeted, bounds)
        self._ball(eps, norm)
        require(int(steps) >= 1, f"steps: expected >= 1, got {steps}")
        require(alpha is None or alpha > 0, f"alpha: expected > 0, got {alpha}")
        self.steps = int(steps)
        self.alpha = float(alpha) if alpha is not None else 2.5 * float(eps) / int(steps)

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each restart re-attacks only the examples no earlier run broke."""
        best = self._one_run(x, y)
        for _ in range(self.restarts - 1):
            with torch.no_grad():
                pred = self._net(best).argmax(1)
            done = self.succeeded(pred, y)
            if bool(done.all()):
                break
            best[~done] = self._one_run(x[~done], y[~done])
        return best

    def _one_run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = self._clip(x + self._random_start(x)) if self.random_start else x.clone()
        g = torch.zeros_like(x)
        for step in range(self.steps):
            grad, _ = self._grad(x_adv, y, check=step == 0)
            if self.momentum is not None:
                g = self.momentum * g + grad / batch_view(flat_norm(grad, 1).clamp_min(1e-12), grad)
                grad = g
            x_adv = self._project(x, x_adv + self.alpha * self._direction(grad))
        return x_adv

    def _random_start(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            return torch.empty_like(x).uniform_(-self.eps, self.eps)
        direction = torch.randn_like(x)
        direction = direction / batch_view(flat_norm(direction, 2).clamp_min(1e-12), x)
        radius = torch.rand(len(x), device=x.device) ** (1.0 / x[0].numel())
        return direction * batch_view(radius * self.eps, x)


class FGSM(_GradientAttack):
    """Fast gradient sign method (Goodfellow et al. 2015, eq. 3): ``x + eps * sign(grad_x L)``.

    With ``norm="l2"`` the step is ``eps * grad / ||grad||_2`` (fast gradient method).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        norm: str = "linf",
        targeted: bool = False,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        alpha = eps if eps > 0 else None
        super().__init__(model, eps=eps, norm=norm, steps=1, alpha=alpha, targeted=targeted, bounds=bounds)


class BIM(_GradientAttack):
    """Basic iterative method (Kurakin et al. 2017): ``steps`` FGSM steps of size ``alpha``, clipped to the ball."""


class PGD(_GradientAttack):
    """Projected gradient descent (Madry et al. 2018, eq. 2): BIM from a uniform random start in the
    eps ball, ``restarts`` times (an example counts as broken if any restart breaks it).

    Defaults are evaluation strength and scale with the input range ``bounds = (lo, hi)``:
    ``eps`` = 8/255 of ``hi - lo`` for L-inf and 0.5 of it for L2 (RobustBench's budgets on
    [0, 1] images, Croce et al. 2021), 50 steps, 5 restarts, ``alpha = 2.5 eps / steps``
    (Madry et al.). Pass the budget of your threat model; training (:mod:`.defences`) uses fewer steps."""

    random_start = True

    def __init__(
        self,
        model: nn.Module,
        eps: float | None = None,
        norm: str = "linf",
        steps: int = 50,
        restarts: int = 5,
        alpha: float | None = None,
        targeted: bool = False,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        eps = default_eps(norm, bounds) if eps is None else eps
        super().__init__(model, eps=eps, norm=norm, steps=steps, alpha=alpha, targeted=targeted, bounds=bounds)
        require(int(restarts) >= 1, f"restarts: expected >= 1, got {restarts}")
        self.restarts = int(restarts)


class MIFGSM(_GradientAttack):
    """Momentum iterative FGSM (Dong et al. 2018, alg. 1): ``g <- mu g + grad / ||grad||_1``,
    step ``alpha * sign(g)`` (``alpha`` defaults to ``eps / steps``)."""

    def __init__(self, model: nn.Module, eps: float = 8 / 255, steps: int = 10, decay: float = 1.0, **kw) -> None:
        kw.setdefault("alpha", eps / steps if eps > 0 else None)
        super().__init__(model, eps=eps, steps=steps, **kw)
        require(decay >= 0, f"decay: expected >= 0, got {decay}")
        self.momentum = float(decay)


class _MinimumNormAttack(Attack):
    """Attacks that search the smallest L2 perturbation in at most ``steps`` iterations (no
    budget). A failed example is returned unchanged."""

    minimum_norm = True
    norm = "l2"

    def __init__(
        self, model: nn.Module, steps: int, targeted: bool = False, bounds: tuple[float, float] = (0.0, 1.0)
    ) -> None:
        super().__init__(model)
        self._threat(targeted, bounds)
        require(int(steps) >= 1, f"steps: expected >= 1, got {steps}")
        self.steps = int(steps)

    def _check(self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None) -> None:
        """The base checks and the logits probed on (up to) two examples, so a model that mixes
        or reduces the batch is caught."""
        super()._check(x, y, labels)
        with torch.no_grad():
            check_logits(self._net(x[:2]), len(x[:2]), y)

    def _adversarial(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.succeeded(logits.argmax(1), y)

    @staticmethod
    def _keep_smaller(best, best_norm, x, candidate, hit):
        """Where ``hit`` and ``candidate`` is closer to ``x`` than ``best``, take it."""
        norm = flat_norm(candidate - x, 2)
        better = hit & (norm < best_norm)
        return torch.where(batch_view(better, x), candidate, best), torch.where(better, norm, best_norm)


class CarliniWagnerL2(_MinimumNormAttack):
    """Carlini & Wagner 2017 L2 attack (eq. 7): minimise ``||x' - x||^2 + c f(x')`` over
    ``x' = lo + (hi - lo)(tanh(w) + 1)/2`` with Adam, ``f`` the logit margin with confidence
    ``kappa``; ``c`` is binary-searched per example over ``binary_steps`` rounds. With
    ``abort_early`` a round stops when the loss has not fallen by 0.01 % over a tenth of its
    steps, as in the authors' reference implementation."""

    def __init__(
        self,
        model: nn.Module,
        c: float = 1.0,
        kappa: float = 0.0,
        steps: int = 100,
        lr: float = 0.01,
        binary_steps: int = 5,
        abort_early: bool = True,
        targeted: bool = False,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, steps=steps, targeted=targeted, bounds=bounds)
        self.abort_early = abort_early
        require(c > 0 and kappa >= 0 and lr > 0, f"c, lr: expected > 0 and kappa >= 0, got c={c} lr={lr} kappa={kappa}")
        require(int(binary_steps) >= 1, f"binary_steps: expected >= 1, got {binary_steps}")
        self.c, self.kappa, self.lr, self.binary_steps = float(c), float(kappa), float(lr), int(binary_steps)

    def _to_x(self, w: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds
        return lo + (hi - lo) * (torch.tanh(w) + 1) / 2

    def _margin(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``f`` of eq. 7: how far the example still is from being adversarial (<= 0 when it is, with kappa)."""
        own = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -torch.inf).amax(1)
        gap = other - own if self.targeted else own - other
        return gap.clamp_min(-self.kappa)

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds
        w0 = torch.atanh(((x - lo) / (hi - lo) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        c = torch.full((len(x),), self.c, device=x.device)
        low, high = torch.zeros_like(c), torch.full_like(c, math.inf)
        best, best_norm = x.clone(), torch.full_like(c, math.inf)
        for _ in range(self.binary_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            found, previous = torch.zeros_like(c, dtype=torch.bool), math.inf
            for step in range(self.steps):
                x_new = self._to_x(w)
                logits = self._net(x_new)
                dist = (x_new - x).flatten(1).pow(2).sum(1)
                loss = (dist + c * self._margin(logits, y)).sum()
                (w.grad,) = torch.autograd.grad(loss, w)  # not backward(): leave the model's .grad alone
                opt.step()
                hit = self._adversarial(logits.detach(), y)
                best, best_norm = self._keep_smaller(best, best_norm, x, x_new.detach(), hit)
                found |= hit
                if self.abort_early and step % max(1, self.steps // 10) == 0:
                    if float(loss.detach()) > previous * 0.9999:
                        break
                    previous = float(loss.detach())
            high = torch.where(found, torch.minimum(high, c), high)
            low = torch.where(found, low, torch.maximum(low, c))
            c = torch.where(torch.isinf(high), c * 10, (low + high) / 2)
        return best


class DeepFool(_MinimumNormAttack):
    """DeepFool (Moosavi-Dezfooli et al. 2016, alg. 2): step to the nearest linearised class
    boundary, ``r = |f_k| / ||w_k||^2 * w_k``, until the label changes; the total step is
    scaled by ``1 + overshoot``. As in the paper, the candidate boundaries are those of the
    ``candidates`` next most likely classes of the clean input; targeted: only the target's.

    Batched: one forward pass per step for the examples not yet fooled (finished ones leave
    the batch) and one vectorised backward pass for the gradients of all candidate margins.
    """

    def __init__(
        self,
        model: nn.Module,
        steps: int = 50,
        overshoot: float = 0.02,
        candidates: int = 10,
        targeted: bool = False,
        bounds=(0.0, 1.0),
    ):
        super().__init__(model, steps=steps, targeted=targeted, bounds=bounds)
        require(overshoot >= 0, f"overshoot: expected >= 0, got {overshoot}")
        require(int(candidates) >= 1, f"candidates: expected >= 1, got {candidates}")
        self.overshoot, self.candidates = float(overshoot), int(candidates)

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            clean = self._net(x)
        source = clean.argmax(1)  # the class to leave (the clean prediction)
        k = clean.shape[1]
        cands = y[:, None] if self.targeted else clean.topk(min(self.candidates + 1, k), 1).indices[:, 1:]
        r_total, x_adv = torch.zeros_like(x), x.clone()
        hit = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        active = torch.arange(len(x), device=x.device)
        for step in range(self.steps + 1):
            with torch.set_grad_enabled(step < self.steps):
                x_in = x_adv[active].requires_grad_(step < self.steps)
                logits = self._net(x_in)
            fooled = self._adversarial(logits.detach(), y[active])
            hit[active[fooled]] = True
            if step == self.steps or bool(fooled.all()):
                break
            w, f = margin_gradients(x_in, logits, cands[active], source[active])
            w, f, active = w[~fooled], f[~fooled], active[~fooled]
            w_norm = w.flatten(2).norm(dim=2).clamp_min(1e-8)
            ratio = f.abs() / w_norm
            j = ratio.argmin(1)
            rows = torch.arange(len(active), device=x.device)
            r_total[active] += batch_view((ratio[rows, j] + 1e-4) / w_norm[rows, j], w[:, 0]) * w[rows, j]
            x_adv[active] = self._clip(x[active] + (1 + self.overshoot) * r_total[active])
        return torch.where(batch_view(hit, x), x_adv, x)


class MinNormL2(_MinimumNormAttack):
    """Decoupled Direction and Norm (DDN; Rony et al. 2019, alg. 1), a minimum-norm L2 attack.

    Each step moves ``delta`` along the normalised gradient (step ``alpha``, cosine-decayed)
    and rescales it to a norm budget that shrinks by ``(1 - gamma)`` while the example is
    adversarial and grows by ``(1 + gamma)`` otherwise; the smallest adversarial point is kept.
    """

    def __init__(
        self,
        model: nn.Module,
        steps: int = 100,
        alpha: float = 1.0,
        gamma: float = 0.05,
        init_norm: float = 1.0,
        targeted: bool = False,
        bounds=(0.0, 1.0),
    ):
        super().__init__(model, steps=steps, targeted=targeted, bounds=bounds)
        require(
            alpha > 0 and 0 < gamma < 1 and init_norm > 0, "alpha, init_norm: expected > 0; gamma: expected in (0, 1)"
        )
        self.alpha, self.gamma, self.init_norm = float(alpha), float(gamma), float(init_norm)

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        delta = torch.zeros_like(x)
        eps = torch.full((len(x),), self.init_norm * (self.bounds[1] - self.bounds[0]), device=x.device)
        best, best_norm = x.clone(), torch.full_like(eps, math.inf)
        for i in range(self.steps):
            alpha = 0.01 + (self.alpha - 0.01) * (1 + math.cos(math.pi * i / self.steps)) / 2
            x_adv = self._clip(x + delta)
            grad, logits = self._grad(x_adv, y)
            hit = self._adversarial(logits, y)
            best, best_norm = self._keep_smaller(best, best_norm, x, x_adv, hit)
            eps = torch.where(hit, eps * (1 - self.gamma), eps * (1 + self.gamma))
            delta = delta + alpha * grad / batch_view(flat_norm(grad, 2).clamp_min(1e-12), grad)
            delta = delta * batch_view(eps / flat_norm(delta, 2).clamp_min(1e-12), delta)
            delta = self._clip(x + delta) - x
        x_adv = self._clip(x + delta)
        with torch.no_grad():
            hit = self._adversarial(self._net(x_adv), y)
        best, _ = self._keep_smaller(best, best_norm, x, x_adv, hit)
        return best


ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "bim": BIM,
    "pgd": PGD,
    "mifgsm": MIFGSM,
    "cw": CarliniWagnerL2,
    "deepfool": DeepFool,
    "minnorm": MinNormL2,
    "square": Square,
    "apgd-ce": APGD,
    "apgd-t": APGDT,
    "fab": FAB,
    "fab-t": FABT,
    "autoattack": AutoAttack,
}


def attack_settings(cls: type[Attack]) -> set[str]:
    """The keyword settings ``cls(model, ...)`` takes: the parameters of its ``__init__`` and,
    where that passes ``**kwargs`` on, of its parents' (``model`` excluded)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names - {"self", "model"}


def make_attack(name: str, model: nn.Module, **settings: object) -> Attack:
    """The attack :data:`ATTACKS` registers under ``name`` on ``model``, given those of
    ``settings`` it takes (:func:`attack_settings`): one set of options serves every attack,
    e.g. ``eps`` and ``norm`` reach the norm-bounded attacks only and ``steps`` every iterative one."""
    require(name in ATTACKS, f"attack: expected one of {', '.join(ATTACKS)}, got {name!r}")
    cls = ATTACKS[name]
    accepted = attack_settings(cls)
    return cls(model, **{key: value for key, value in settings.items() if key in accepted})
