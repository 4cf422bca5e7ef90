"""The attack interface: :class:`Attack` (takes only the model; input checks, the eval-mode
context, BatchNorm folding, the success rule) and :class:`AttackResult`, plus the tensor
helpers every attack family shares. The families: :mod:`~trusttango.robust.attacks`
(gradient and minimum-norm attacks, and the :data:`~trusttango.robust.attacks.ATTACKS`
registry) and :mod:`~trusttango.robust.square` (score-based)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import require
from trusttango.models.folding import FoldedBatchNorm
from trusttango.modes import eval_mode
from trusttango.torchutil import model_device

NORMS = ("linf", "l2")


@dataclass
class AttackResult:
    """What an attack did, per example.

    ``success``: untargeted -> the prediction differs from ``y``; targeted -> it equals the
    target. ``linf`` / ``l2``: norms of ``x_adv - x``; ``rms``: ``l2 / sqrt(C*H*W)``, the
    perturbation size of Woods et al. 2019. ``predictions``: the model's labels on ``x_adv``.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    rms: torch.Tensor
    predictions: torch.Tensor

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if len(self.success) else 0.0


def flat_norm(t: torch.Tensor, p: float) -> torch.Tensor:
    return t.flatten(1).norm(p=p, dim=1)


def check_logits(logits: object, n: int, y: torch.Tensor) -> None:
    """The model's output on ``n`` inputs must be logits (n, K), and the labels ``y`` class indices below K."""
    require(
        isinstance(logits, torch.Tensor) and logits.dim() == 2 and logits.shape[0] == n,
        f"model: expected logits shaped (N, K), got {getattr(logits, 'shape', type(logits).__name__)}",
    )
    k = logits.shape[1]
    require(bool(((y >= 0) & (y < k)).all()), f"y: expected class indices in [0, {k}), got out-of-range values")


def batch_view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-example scalars shaped to broadcast against a batch ``like``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


class OutOfTime(Exception):
    """An attack passed its ``deadline`` before finishing: its points are not a finished attack's
    and must not be reported as one."""


class Attack:
    """Base class, taking only the model: input checks, the eval-mode context, the success rule
    and the result bookkeeping. ``targeted`` and the input ``bounds`` are settings of each attack.

    Each attack's own settings (budget, steps, ...) belong to its ``__init__``. Subclasses
    implement :meth:`_perturb` ``(x, y) -> x_adv`` on validated inputs.
    """

    minimum_norm = False  # True for attacks that search the smallest perturbation (no eps)
    fold_batchnorm = True  # forward passes through the BN-folded eval view of the model
    deadline: float | None = None  # a time.perf_counter() value; iterative attacks raise OutOfTime past it

    def __init__(self, model: nn.Module) -> None:
        require(isinstance(model, nn.Module), f"model: expected a torch.nn.Module, got {type(model).__name__}")
        self.model, self.targeted, self.bounds = model, False, (0.0, 1.0)
        self._folded = FoldedBatchNorm(model)
        self._net = model  # what the forward passes call: ``model`` or its folded view (set per call)

    def _threat(self, targeted: bool, bounds: tuple[float, float]) -> None:
        """Set the settings every attack takes: targeted or not, and the input range."""
        require(
            len(bounds) == 2 and bounds[0] < bounds[1], f"bounds: expected (low, high) with low < high, got {bounds}"
        )
        self.targeted, self.bounds = bool(targeted), (float(bounds[0]), float(bounds[1]))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The adversarial examples only: no extra forward pass for the result bookkeeping."""
        return self._attack(x, y, None)[2]

    def succeeded(self, predictions: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The success rule: untargeted, the prediction differs from ``y``; targeted, it equals the target ``y``."""
        return predictions == y if self.targeted else predictions != y

    def run(self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None = None) -> AttackResult:
        """Attack ``x`` (labels or targets ``y``); ``labels`` are the true classes for a targeted attack."""
        x, y, x_adv = self._attack(x, y, labels)
        with eval_mode(self.model), torch.no_grad():
            pred = self.model(x_adv).argmax(1)
        delta = (x_adv - x).flatten(1)
        l2 = delta.norm(dim=1)
        return AttackResult(
            x_adv, self.succeeded(pred, y), delta.abs().amax(1), l2, l2 / math.sqrt(delta.shape[1]), pred
        )

    def _attack(
        self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, y, x_adv)`` on the model's device, after validating the inputs."""
        device = model_device(self.model)
        x, y = x.detach().to(device, torch.float32), torch.as_tensor(y).to(device).long()
        with eval_mode(self.model):
            self._net = self._folded() if self.fold_batchnorm else self.model
            self._check(x, y, labels)
            return x, y, self._perturb(x, y).detach()

    def _check(self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None) -> None:
        """Validate the inputs (shape, finite, inside ``bounds``) and, for a targeted attack, that
        no target is the true label. The model's output is checked by the subclasses: gradient
        attacks on their first forward pass (no extra pass), minimum-norm attacks on a probe.
        Only a targeted attack without ``labels`` needs the clean predictions of the whole batch.
        """
        lo, hi = self.bounds
        require(x.dim() >= 2 and len(x) > 0, f"x: expected a non-empty batch (N, ...), got shape {tuple(x.shape)}")
        require(y.shape == (len(x),), f"y: expected shape ({len(x)},), got {tuple(y.shape)}")
        require(bool(torch.isfinite(x).all()), "x: contains NaN or infinite values")
        require(
            float(x.min()) >= lo - 1e-6 and float(x.max()) <= hi + 1e-6,
            f"x: values must lie in bounds [{lo}, {hi}], got [{float(x.min()):.4g}, {float(x.max()):.4g}]",
        )
        if self.targeted:
            if labels is None:
                with torch.no_grad():
                    logits = self._net(x)
                check_logits(logits, len(x), y)
                true = logits.argmax(1)
            else:
                true = torch.as_tensor(labels).to(y.device).long()
            require(not bool((true == y).any()), "y: a target equals the true label of its input (targeted attack)")

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example loss to ascend: CE for untargeted, -CE towards the target for targeted."""
        ce = F.cross_entropy(logits, y, reduction="none")
        return -ce if self.targeted else ce

    def _grad(self, x: torch.Tensor, y: torch.Tensor, check: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the summed attack loss w.r.t. ``x``, and the logits (``check``: validate them first)."""
        x = x.detach().requires_grad_(True)
        logits = self._net(x)
        if check:
            check_logits(logits, len(x), y)
        (grad,) = torch.autograd.grad(self._loss(logits, y).sum(), x)
        return grad, logits.detach()

    def _on_time(self) -> None:
        """Raise :class:`OutOfTime` once ``deadline`` has passed (checked between iterations)."""
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise OutOfTime(f"{type(self).__name__} passed its deadline")

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(*self.bounds)

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def at_least_one(value: int, name: str) -> int:
    """``value`` as an int, refused (one line naming ``name``) below 1."""
    require(int(value) >= 1, f"{name}: expected >= 1, got {value}")
    return int(value)


def default_eps(norm: str, bounds: tuple[float, float]) -> float:
    """8/255 of the input range for L-inf and 0.5 of it for L2: RobustBench's budgets on [0, 1]
    images (Croce et al. 2021), scaled to ``bounds``."""
    return (8 / 255 if norm == "linf" else 0.5) * (float(bounds[1]) - float(bounds[0]))


class BallAttack(Attack):
    """Attacks bounded by the ``eps`` ball of ``norm`` (``"linf"`` or ``"l2"``): the settings'
    checks, ``eps`` against the input range, and the projection onto ball and bounds."""

    def _ball(self, eps: float, norm: str) -> None:
        require(norm in NORMS, f"norm: expected one of {NORMS}, got {norm!r}")
        require(math.isfinite(eps) and eps >= 0, f"eps: expected a finite value >= 0, got {eps}")
        self.eps, self.norm = float(eps), norm

    def _check(self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None) -> None:
        """The base checks and ``eps`` against the input range (the logits: on the first forward pass)."""
        super()._check(x, y, labels)
        lo, hi = self.bounds
        limit = (hi - lo) * (1.0 if self.norm == "linf" else math.sqrt(x[0].numel()))
        require(
            self.eps <= limit, f"eps: {self.eps} is absurd for {self.norm} on inputs in [{lo}, {hi}] (max {limit:.4g})"
        )

    def _direction(self, grad: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent unit step of the norm: ``sign`` for L-inf, ``grad / ||grad||_2`` for L2."""
        if self.norm == "linf":
            return grad.sign()
        return grad / batch_view(flat_norm(grad, 2).clamp_min(1e-12), grad)

    def _size(self, delta: torch.Tensor) -> torch.Tensor:
        """Per example, the size of ``delta`` in the attack's norm."""
        return flat_norm(delta, float("inf") if self.norm == "linf" else 2)

    def _sphere_point(self, x: torch.Tensor, radius: float) -> torch.Tensor:
        """A random point at distance ``radius`` from ``x`` in the attack's norm (uniform noise
        for L-inf, Gaussian for L2, rescaled), then into ``bounds``."""
        noise = torch.empty_like(x).uniform_(-1, 1) if self.norm == "linf" else torch.randn_like(x)
        return self._clip(x + radius * noise / batch_view(self._size(noise).clamp_min(1e-12), x))

    def _project(self, x: torch.Tensor, x_adv: torch.Tensor, eps: float | None = None) -> torch.Tensor:
        """``x_adv`` projected onto the ``eps`` ball around ``x`` (default ``self.eps``), then into ``bounds``."""
        eps = self.eps if eps is None else eps
        delta = x_adv - x
        if self.norm == "linf":
            delta = delta.clamp(-eps, eps)
        else:
            delta = delta * batch_view((eps / flat_norm(delta, 2).clamp_min(1e-12)).clamp(max=1.0), delta)
        return self._clip(x + delta).detach()


def margin_gradients(
    x_in: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor, source: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``q`` candidate ``classes`` (n, q): ``w`` (n, q, *x), the gradients of
    ``logit_c - logit_source`` w.r.t. ``x_in`` in one batched backward pass, and ``f`` (n, q),
    the margins themselves (``logits`` must be the graph's output on ``x_in``)."""
    k = logits.shape[1]
    select = F.one_hot(classes, k).float() - F.one_hot(source, k).float()[:, None]  # (n, q, K)
    (w,) = torch.autograd.grad(logits, x_in, select.transpose(0, 1), is_grads_batched=True)
    f = logits.detach().gather(1, classes) - logits.detach().gather(1, source[:, None])
    return w.transpose(0, 1), f


def ranked_classes(logits: torch.Tensor, count: int) -> list[torch.Tensor]:
    """The classes the logits rank 2nd, 3rd, ... (up to ``count`` of them): the targets of
    AutoAttack's targeted attacks (Croce & Hein 2020)."""
    ranked = logits.argsort(dim=1, descending=True)
    return [ranked[:, k] for k in range(1, min(count, logits.shape[1] - 1) + 1)]


class RestartingAttack(BallAttack):
    """Ball attacks run as AutoAttack runs them: examples the model already gets wrong are left
    as they are; the others get one series of runs per target (none for the untargeted ones),
    ``restarts`` runs each, every run on the examples no earlier run broke. Subclasses implement
    :meth:`_run`; targeted ones override :meth:`_targets`.

    Within a run, examples leave the batch once broken (``drop_broken``); set it to ``False``
    to keep iterating on every example of the run, as torchattacks does (the same computation,
    for comparisons; the result differs only in which adversarial point is returned)."""

    drop_broken = True

    def __init__(
        self,
        model: nn.Module,
        eps: float | None,
        norm: str,
        restarts: int,
        targeted: bool = False,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        """The threat (``eps`` default :func:`default_eps`) and the restarts every subclass takes."""
        super().__init__(model)
        self._threat(targeted, bounds)
        self._ball(default_eps(norm, bounds) if eps is None else eps, norm)
        self.restarts = at_least_one(restarts, "restarts")

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self._net(x)
        check_logits(logits, len(x), y)
        best, broken = x.clone(), self.succeeded(logits.argmax(1), y)
        for target in self._targets(logits):
            for restart in range(self.restarts):
                todo = (~broken).nonzero().flatten()
                if len(todo) == 0:
                    return best
                self._on_time()
                aim = None if target is None else target[todo]
                points, hit = self._run(x[todo], y[todo], aim, restart)
                best[todo] = points
                broken[todo[hit]] = True
        return best

    def _targets(self, logits: torch.Tensor) -> list[torch.Tensor | None]:
        """The classes to aim at, one series of runs each: ``[None]`` for an untargeted attack."""
        return [None]

    def _run(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, restart: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One run: per example a point in the ball, and whether it breaks the example."""
        raise NotImplementedError
