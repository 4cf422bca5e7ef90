"""Region ablation curves: remove image regions in attribution order vs in random order.

The image is cut into ``region x region`` cells; each cell is scored by its mean heatmap
value and cells are replaced by a baseline (a constant, or the blurred image) most-relevant
first, ``steps`` times, recording the accuracy and the mean target logit (Samek et al. 2017,
"Evaluating the visualization of what a DNN has learned", MoRF region perturbation; the
random order is their baseline). A faithful map drops accuracy faster than the random order:
``auc(attribution) < auc(random)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import check_inputs, forward
from trusttango.explain.meaningful import gaussian_blur
from trusttango.plotting import save_figure, subplots
from trusttango.torchutil import model_device


@dataclass
class RegionAblation:
    """Curves over the fraction of regions removed, in attribution order and in random order."""

    fractions: np.ndarray  # (steps + 1,)
    accuracy: dict[str, np.ndarray]  # "attribution" / "random" -> (steps + 1,)
    logit: dict[str, np.ndarray]

    def auc(self, curve: str = "accuracy", order: str = "attribution") -> float:
        """Area under a curve (trapezoid over the removed fraction); lower = faster drop."""
        return float(np.trapezoid(getattr(self, curve)[order], self.fractions))


def _cell_order(scores: torch.Tensor) -> torch.Tensor:
    """Rank of each cell (0 = removed first) from ``(N, R)`` cell scores."""
    return scores.argsort(1, descending=True).argsort(1)


def _curves(model, x, base, labels, rank, cells_hw, region, steps, batch_size):
    n = len(x)
    r = rank.shape[1]
    acc, logit = [], []
    for count in torch.linspace(0, r, steps + 1).round().long():
        removed = (rank < count).float().view(n, 1, *cells_hw)
        mask = F.interpolate(removed, scale_factor=region, mode="nearest")[..., : x.shape[2], : x.shape[3]]
        frames = torch.where(mask.bool(), base, x)
        with torch.no_grad():
            out = torch.cat([forward(model, frames[i : i + batch_size]) for i in range(0, n, batch_size)])
        acc.append(float((out.argmax(1) == labels).float().mean()))
        logit.append(float(out.gather(1, labels[:, None]).mean()))
    return np.array(acc), np.array(logit)


def region_ablation(
    model: nn.Module,
    x: torch.Tensor,
    heat: torch.Tensor,
    labels: torch.Tensor | None = None,
    region: int = 4,
    steps: int = 10,
    baseline: float | str = 0.0,
    seed: int = 0,
    batch_size: int = 512,
) -> RegionAblation:
    """Accuracy and target-logit curves as ``region``-pixel cells are removed, by ``heat`` ``(N, H, W)`` vs at random.

    ``labels``: true classes (default: the model's predictions, so accuracy starts at 1);
    ``baseline``: the value removed cells take, or ``"blur"`` for the blurred image.
    """
    x = check_inputs(x, images=True).to(model_device(model))
    n, _, h, w = x.shape
    require(heat.shape == (n, h, w), f"heatmaps: expected shape (N, H, W) = {(n, h, w)}, got {tuple(heat.shape)}")
    require(1 <= region <= min(h, w), f"region: expected a cell size in 1..{min(h, w)} pixels, got {region}")
    require(steps >= 1, f"steps: expected >= 1, got {steps}")
    require(
        isinstance(baseline, float | int) or baseline == "blur",
        f"baseline: expected a number or 'blur', got {baseline!r}",
    )
    with torch.no_grad():
        labels = forward(model, x).argmax(1) if labels is None else labels.to(x.device).long()
    base = gaussian_blur(x, 10.0 * h / 224) if baseline == "blur" else torch.full_like(x, float(baseline))
    cells = F.avg_pool2d(heat.to(x.device).float()[:, None], region, ceil_mode=True)  # (N, 1, h', w')
    cells_hw = tuple(cells.shape[2:])
    scores = cells.flatten(1)
    gen = torch.Generator().manual_seed(seed)
    random = torch.stack([torch.randperm(scores.shape[1], generator=gen) for _ in range(n)]).to(x.device)
    orders = {"attribution": _cell_order(scores), "random": random}
    results = {k: _curves(model, x, base, labels, o, cells_hw, region, steps, batch_size) for k, o in orders.items()}
    return RegionAblation(
        np.linspace(0, 1, steps + 1),
        {k: v[0] for k, v in results.items()},
        {k: v[1] for k, v in results.items()},
    )


def save_ablation_curves(result: RegionAblation, path: Path, title: str = "region ablation") -> None:
    """Two panels (accuracy, mean target logit) against the fraction of regions removed."""
    fig, axes = subplots(1, 2, figsize=(8, 3.2))
    for ax, curve in zip(axes, ("accuracy", "logit"), strict=False):
        for order, style in (("attribution", "-o"), ("random", "--s")):
            label = f"{order} (AUC {result.auc(curve, order):.3f})"
            ax.plot(result.fractions, getattr(result, curve)[order], style, markersize=3, label=label)
        ax.set_xlabel("fraction of regions removed")
        ax.set_ylabel(curve if curve == "accuracy" else "mean target logit")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=100)
