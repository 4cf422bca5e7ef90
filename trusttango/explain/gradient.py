"""Gradient attributions: saliency, input x gradient, integrated gradients, SmoothGrad."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import Attribution, Target, forward, input_gradient, resolve_target


class Saliency(Attribution):
    """Gradient saliency (Simonyan, Vedaldi, Zisserman 2014, eq. 2): ``|d y_c / d x|``.

    The map keeps the input's channels; :func:`~trusttango.explain.to_heatmap` takes the
    max over colour channels as in the paper. ``absolute=False`` keeps the sign.
    """

    def __init__(self, model: nn.Module, absolute: bool = True) -> None:
        super().__init__(model)
        self.absolute = absolute

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        grad, _ = input_gradient(self.net, self._prepare(inputs), target)
        return grad.abs() if self.absolute else grad


class InputXGradient(Attribution):
    """Input x gradient (Shrikumar et al. 2016): ``x * d y_c / d x``."""

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        x = self._prepare(inputs)
        grad, _ = input_gradient(self.net, x, target)
        return x * grad


def _quadrature(steps: int, method: str) -> tuple[list[float], list[float]]:
    """Nodes ``alpha_s`` in [0, 1] and weights ``w_s`` of the path integral's quadrature rule."""
    require(steps >= 2, f"steps: expected >= 2, got {steps}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (0.5 * (1 + nodes)).tolist(), (0.5 * weights).tolist()
    rules = {
        "riemann_left": (0.0, 1 - 1 / steps),
        "riemann_right": (1 / steps, 1.0),
        "riemann_middle": (1 / (2 * steps), 1 - 1 / (2 * steps)),
        "riemann_trapezoid": (0.0, 1.0),
    }
    require(method in rules, f"method: expected gausslegendre or one of {', '.join(rules)}, got {method!r}")
    weights = [1 / steps] * steps
    if method == "riemann_trapezoid":
        weights[0] = weights[-1] = 0.5 / steps
    return torch.linspace(*rules[method], steps).tolist(), weights


class IntegratedGradients(Attribution):
    """Integrated gradients (Sundararajan, Taly, Yan 2017, eq. 1/3).

    ``(x - x') * integral_0^1 d y_c(x' + a (x - x')) / d x da`` by a quadrature rule with
    ``steps`` nodes (Gauss-Legendre by default, as Captum). The ``steps * N`` scaled inputs are
    processed ``batch_size`` rows at a time, each chunk's weighted gradients summed at once,
    so memory is bounded by ``batch_size`` whatever ``steps`` is.
    """

    def __init__(
        self,
        model: nn.Module,
        steps: int = 50,
        method: str = "gausslegendre",
        baseline: float | torch.Tensor = 0.0,
        batch_size: int = 512,
    ) -> None:
        super().__init__(model)
        require(batch_size >= 1, f"batch_size: expected >= 1, got {batch_size}")
        self.alphas, self.weights = _quadrature(steps, method)
        self.baseline, self.batch_size = baseline, batch_size

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        x = self._prepare(inputs)
        n = x.shape[0]
        base = torch.as_tensor(self.baseline, dtype=x.dtype, device=x.device).expand_as(x)
        with torch.no_grad():
            t = resolve_target(target, forward(self.net, x))
        delta = x - base
        total = torch.zeros_like(x)
        per_chunk = max(1, self.batch_size // n)
        for start in range(0, len(self.alphas), per_chunk):
            alphas = torch.tensor(self.alphas[start : start + per_chunk], dtype=x.dtype, device=x.device)
            weights = torch.tensor(self.weights[start : start + per_chunk], dtype=x.dtype, device=x.device)
            shape = (-1,) + (1,) * x.dim()
            scaled = (base + alphas.view(shape) * delta).reshape(-1, *x.shape[1:]).requires_grad_(True)
            with torch.enable_grad():
                logits = forward(self.net, scaled).view(len(alphas), n, -1)
                score = (
                    logits.gather(2, t.view(1, n, 1).expand(len(alphas), n, 1)).squeeze(2) * weights[:, None]
                ).sum()
                (grad,) = torch.autograd.grad(score, scaled)
            total += grad.view(len(alphas), *x.shape).sum(0)
        return total * delta


class SmoothGrad(Attribution):
    """SmoothGrad (Smilkov et al. 2017, eq. 3): the mean of a gradient map over noisy copies.

    ``samples`` copies ``x + N(0, sigma^2)`` with ``sigma = noise_level * (max(x) - min(x))``
    per example (the paper's 10-20 %), or a fixed ``stdev``. ``base`` is the map averaged
    (:class:`Saliency` by default, i.e. Captum's ``NoiseTunnel(Saliency)``). ``batch_size``
    bounds the rows per forward pass.
    """

    def __init__(
        self,
        model: nn.Module,
        samples: int = 50,
        noise_level: float = 0.15,
        stdev: float | None = None,
        base: type[Attribution] = Saliency,
        batch_size: int = 512,
    ) -> None:
        super().__init__(model)
        require(samples >= 1, f"samples: expected >= 1, got {samples}")
        self.samples, self.noise_level, self.stdev, self.batch_size = samples, noise_level, stdev, batch_size
        self.base = base(model)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        x = self._prepare(inputs)
        n, s = x.shape[0], self.samples
        with torch.no_grad():
            t = resolve_target(target, forward(self.net, x))
        per_chunk = max(1, self.batch_size // s)
        maps = []
        for start in range(0, n, per_chunk):
            xc = x[start : start + per_chunk]
            if self.stdev is None:
                spread = (xc.flatten(1).amax(1) - xc.flatten(1).amin(1)) * self.noise_level
                std = spread.view(-1, *([1] * (x.dim() - 1))).expand_as(xc).repeat_interleave(s, 0)
            else:
                std = torch.tensor(self.stdev, device=x.device).repeat(xc.shape[0] * s, *x.shape[1:])
            noisy = xc.repeat_interleave(s, 0) + torch.normal(0.0, std)
            attr = self.base.attribute(noisy, t[start : start + per_chunk].repeat_interleave(s))
            maps.append(attr.view(-1, s, *x.shape[1:]).mean(1))
        return torch.cat(maps)
