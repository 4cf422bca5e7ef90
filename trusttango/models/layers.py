"""Small building blocks shared by the backbones: activations and normalisation by name."""

from __future__ import annotations

import torch
from torch import nn

from trusttango.errors import InputError


class HalfHuberReLU(nn.Module):
    """ReLU with a quadratic piece near zero, so its gradient is continuous.

    f(x) = 0 for x <= 0, x^2 / (2 delta) for 0 < x < delta, x - delta / 2 otherwise.
    Woods et al. 2019 ("Adversarial explanations ...") use it with their Lipschitz-inspired
    regulariser: double backprop through a ReLU has a zero second derivative.
    """

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(x, min=0.0)
        return torch.where(x < self.delta, x * x / (2 * self.delta), x - self.delta / 2)


ACTIVATIONS = {"relu": nn.ReLU, "half_huber": HalfHuberReLU, "gelu": nn.GELU, "silu": nn.SiLU}
NORMS = ("batch", "group", "none")


def activation(name: str) -> nn.Module:
    """A fresh (never in-place, never shared) activation module by name."""
    if name not in ACTIVATIONS:
        raise InputError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def norm2d(name: str, channels: int) -> nn.Module:
    """BatchNorm, GroupNorm (DP-compatible: no cross-example statistics) or identity."""
    if name == "batch":
        return nn.BatchNorm2d(channels)
    if name == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if name == "none":
        return nn.Identity()
    raise InputError(f"unknown norm {name!r}; choose one of {', '.join(NORMS)}")
