"""The standard AutoAttack ensemble (Croce & Hein 2020, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", sec. 4): APGD-CE, APGD-T, FAB-T
and Square at one ``eps``, each run only on the examples no earlier attack broke, so per
example the first attack that succeeds is kept. Robust accuracy under it is the field's
standard figure (RobustBench, Croce et al. 2021).

Checks in the spirit of the reference implementation's flags run alongside: a randomised model
(two forward passes disagree), probabilities instead of logits, zero input gradients, and
Square breaking examples the gradient attacks did not (a sign of gradient masking). Each flag
is a sentence in :attr:`EnsembleReport.flags`; none changes the figure.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import require
from trusttango.robust.apgd import APGD, APGDT
from trusttango.robust.base import Attack, BallAttack, at_least_one, check_logits, default_eps
from trusttango.robust.fab import FABT
from trusttango.robust.square import Square

# name -> (class, settings): the original AutoAttack "standard" version; a cheaper preset for
# small budgets (a weaker attack: its robust accuracy bounds the standard one's from above); and
# Square alone, for a model whose gradients are unavailable.
PRESETS: dict[str, tuple[tuple[str, type[Attack], dict], ...]] = {
    "standard": (
        ("apgd-ce", APGD, {"steps": 100}),
        ("apgd-t", APGDT, {"steps": 100, "targets": 9}),
        ("fab-t", FABT, {"steps": 100, "targets": 9}),
        ("square", Square, {"queries": 5000}),
    ),
    "fast": (
        ("apgd-ce", APGD, {"steps": 25}),
        ("apgd-t", APGDT, {"steps": 25, "targets": 3}),
        ("fab-t", FABT, {"steps": 25, "targets": 3}),
        ("square", Square, {"queries": 1000}),
    ),
    "square": (("square", Square, {"queries": 5000}),),  # a model without gradients: an upper bound only
}
GRADIENT_ATTACKS = ("apgd-ce", "apgd-t", "fab-t")


@dataclass
class EnsembleRow:
    """One attack of the ensemble: the examples it was run on, those it broke, the robust
    accuracy over all examples after it, and its seconds."""

    attack: str
    settings: dict
    attacked: int
    broken: int
    robust_accuracy: float
    seconds: float


@dataclass
class EnsembleReport:
    """The ensemble on ``n`` examples: clean accuracy, one :class:`EnsembleRow` per attack (in
    order; the last row's robust accuracy is the figure), the flags, and per example whether
    it is robust (correct and unbroken) and which attack broke it (``""``: none, or already wrong)."""

    preset: str
    eps: float
    norm: str
    n: int
    clean_accuracy: float
    rows: list[EnsembleRow]
    flags: list[str]
    robust: torch.Tensor
    broken_by: list[str] = field(default_factory=list)

    @property
    def robust_accuracy(self) -> float:
        return float(self.robust.float().mean()) if self.n else 0.0

    def to_dict(self) -> dict:
        return {
            "attack": "autoattack", "preset": self.preset, "eps": self.eps, "norm": self.norm, "n": self.n,
            "clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy, "flags": self.flags,
            "rows": [vars(row) for row in self.rows],
        }  # fmt: skip

    @classmethod
    def merge(cls, parts: list[EnsembleReport]) -> EnsembleReport:
        """One report of the ensemble run on consecutive parts of a set (same settings)."""
        require(len(parts) > 0, "parts: expected at least one report")
        n = sum(p.n for p in parts)
        robust = torch.cat([p.robust for p in parts])
        rows, left = [], sum(p.clean_accuracy * p.n for p in parts)
        for i, first in enumerate(parts[0].rows):
            broken = sum(p.rows[i].broken for p in parts)
            left -= broken
            rows.append(EnsembleRow(first.attack, first.settings, sum(p.rows[i].attacked for p in parts), broken,
                                    left / max(n, 1), sum(p.rows[i].seconds for p in parts)))  # fmt: skip
        flags = list(dict.fromkeys(flag for p in parts for flag in p.flags))
        clean = sum(p.clean_accuracy * p.n for p in parts) / max(n, 1)
        first = parts[0]
        broken_by = [name for p in parts for name in p.broken_by]
        return cls(first.preset, first.eps, first.norm, n, clean, rows, flags, robust, broken_by)


class AutoAttack(BallAttack):
    """The AutoAttack ensemble as one attack: ``x_adv`` holds, per example, the point of the
    first attack that broke it (else the input). :meth:`evaluate` returns the
    :class:`EnsembleReport`. ``preset``: ``"standard"`` (AutoAttack's: 100 steps for APGD and
    FAB, 9 target classes, 5,000 Square queries) or ``"fast"`` (:data:`PRESETS`); ``steps`` and
    ``queries``, when given, override the preset's iterations of APGD / FAB and of Square
    (torchattacks' ``AutoAttack`` runs 10 steps). ``eps`` as :func:`default_eps`. With a
    ``deadline`` set, every attack of the ensemble raises
    :class:`~trusttango.robust.base.OutOfTime` once it passes (no partial figure is reported).
    ``preset="square"`` runs Square alone, for a model without gradients (an upper bound only)."""

    def __init__(
        self,
        model: nn.Module,
        eps: float | None = None,
        norm: str = "linf",
        preset: str = "standard",
        steps: int | None = None,
        queries: int | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model)
        self._threat(False, bounds)
        self._ball(default_eps(norm, bounds) if eps is None else eps, norm)
        require(preset in PRESETS, f"preset: expected one of {', '.join(PRESETS)}, got {preset!r}")
        self.preset = preset
        self.steps = None if steps is None else at_least_one(steps, "steps")
        self.queries = None if queries is None else at_least_one(queries, "queries")
        self.report_: EnsembleReport | None = None

    def components(self) -> list[tuple[str, Attack]]:
        """The ensemble's attacks, in order, with the preset's settings and the overrides."""
        built = []
        for name, cls, settings in PRESETS[self.preset]:
            settings = dict(settings)
            if "steps" in settings and self.steps is not None:
                settings["steps"] = self.steps
            if "queries" in settings and self.queries is not None:
                settings["queries"] = self.queries
            attack = cls(self.model, eps=self.eps, norm=self.norm, bounds=self.bounds, **settings)
            attack.deadline = self.deadline
            built.append((name, attack))
        return built

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> EnsembleReport:
        """Run the ensemble on ``(x, y)`` and return its :class:`EnsembleReport`."""
        self(x, y)
        return self.report_

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self._net(x)
        check_logits(logits, len(x), y)
        flags, classes = self._flags(x, y, logits)
        robust = logits.argmax(1) == y
        clean, x_adv, rows = float(robust.float().mean()), x.clone(), []
        broken_by = [""] * len(x)
        for name, attack in self.components():
            if name == "apgd-t" and classes < 4:
                flags.append(
                    f"APGD-T not run: its targeted DLR loss needs at least 4 classes (the model has {classes})"
                )
                continue
            todo, start = robust.nonzero().flatten(), time.perf_counter()
            hit = torch.zeros(0, dtype=torch.bool, device=x.device)
            if len(todo):
                result = attack.run(x[todo], y[todo])
                size = result.linf if self.norm == "linf" else result.l2
                hit = result.success & (size <= self.eps + 1e-5)
                x_adv[todo[hit]], robust[todo[hit]] = result.x_adv[hit], False
                for i in todo[hit].tolist():
                    broken_by[i] = name
            settings = {k: v for k, v in vars(attack).items() if k in ("steps", "targets", "queries", "restarts")}
            rows.append(EnsembleRow(name, settings, len(todo), int(hit.sum()), float(robust.float().mean()),
                                    time.perf_counter() - start))  # fmt: skip
        masked = sum(row.broken for row in rows if row.attack == "square")
        if masked:
            flags.append(f"Square broke {masked} example(s) the gradient attacks did not: a sign of gradient masking; "
                         "gradient attacks alone would overstate this model's robustness")  # fmt: skip
        self.report_ = EnsembleReport(self.preset, self.eps, self.norm, len(x), clean, rows, flags, robust.cpu(),
                                      broken_by)  # fmt: skip
        return x_adv

    def _flags(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> tuple[list[str], int]:
        """AutoAttack-style checks on up to 64 examples, and the number of classes: the clean
        pass's ``logits`` against a second pass (a randomised model), probabilities instead of
        logits, and (for a preset with gradient attacks) input gradients from that second pass."""
        probe, labels, first, flags = x[:64], y[:64], logits[:64], []
        gradients = any(name in GRADIENT_ATTACKS for name, _, _ in PRESETS[self.preset])
        inputs = probe.detach().requires_grad_(gradients)
        with torch.set_grad_enabled(gradients):
            second = self._net(inputs)
        if not torch.allclose(first, second.detach(), rtol=1e-4, atol=1e-5):
            flags.append("randomised model: two forward passes in eval mode disagree; these figures assume a "
                         "deterministic model (evaluate with expectation over transformation)")  # fmt: skip
        if bool((first >= 0).all()) and torch.allclose(
            first.sum(1), torch.ones(len(first), device=x.device), atol=1e-4
        ):
            flags.append("the model outputs probabilities, not logits: gradients through softmax can vanish and mask "
                         "attacks; evaluate the logits")  # fmt: skip
        if not gradients:
            return flags, first.shape[1]
        (grad,) = torch.autograd.grad(F.cross_entropy(second, labels, reduction="sum"), inputs)
        zero = int((grad.flatten(1).abs().amax(1) == 0).sum())
        if zero:
            flags.append(f"zero input gradients on {zero} of {len(probe)} examples: gradient attacks cannot move them "
                         "(possible gradient masking); Square's result matters for these")  # fmt: skip
        return flags, first.shape[1]
