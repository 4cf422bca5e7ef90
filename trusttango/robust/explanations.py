"""Adversarial explanations (Woods et al. 2019, section 4): on a robust network, a targeted
L2 attack toward class ``c`` under a fixed RMS budget (0.1, 35 steps in the paper) changes
the input into what the network needs to see for ``c``; the difference image is the
explanation. On a standard network the same procedure yields noise, which
:func:`edge_alignment` quantifies: the correlation between the perturbation's magnitude and
the input's edges (Sobel), high when the change follows the object, near zero for noise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import require
from trusttango.robust.attacks import PGD
from trusttango.torchutil import model_device


def explain_classes(
    model: nn.Module,
    x: torch.Tensor,
    rms: float = 0.1,
    steps: int = 35,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """For each input (N, C, H, W), its targeted adversarial version toward every class: (N, K, C, H, W).

    The budget is ``rms`` per pixel (L2 radius ``rms * sqrt(C*H*W)``); the entry of the
    class the model already predicts is the input itself.
    """
    require(x.dim() == 4 and len(x) > 0, f"x: expected images (N, C, H, W), got shape {tuple(x.shape)}")
    require(0 < rms <= bounds[1] - bounds[0], f"rms: expected in (0, {bounds[1] - bounds[0]}], got {rms}")
    x = x.to(model_device(model))
    with torch.no_grad():
        pred = model(x).argmax(1)
        k = model(x[:1]).shape[1]
    eps = rms * math.sqrt(x[0].numel())
    attack = PGD(model, eps=eps, norm="l2", steps=steps, restarts=1, targeted=True, bounds=bounds)
    out = x[:, None].repeat(1, k, 1, 1, 1)
    for c in range(k):
        todo = pred != c
        if bool(todo.any()):
            target = torch.full((int(todo.sum()),), c, device=x.device)
            out[todo, c] = attack.run(x[todo], target, labels=pred[todo]).x_adv
    return out


def _edges(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of the grey image: (N, H, W)."""
    grey = x.mean(1, keepdim=True)
    kx = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]], device=x.device)
    kernels = torch.stack([kx, kx.T])[:, None]
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    return g.pow(2).sum(1).sqrt()


def edge_alignment(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Per example, the Pearson correlation between ``|x_adv - x|`` (summed over channels) and the
    Sobel edge magnitude of ``x``: how much the perturbation follows the object's structure."""
    a = (x_adv - x).abs().sum(1).flatten(1)
    b = _edges(x).flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
