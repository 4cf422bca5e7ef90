"""Explanation quality metrics: deletion game, deletion/insertion AUC, pointing game, sanity check.

All take a model, images ``(N, C, H, W)``, targets and heatmaps ``(N, H, W)`` (see
:func:`~trusttango.explain.to_heatmap`), and score against the model's softmax probability.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import Attribution, check_inputs, forward, resolve_target
from trusttango.explain.heatmap import to_heatmap
from trusttango.explain.meaningful import gaussian_blur
from trusttango.torchutil import model_device


def _probs(model: nn.Module, x: torch.Tensor, t: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    with torch.no_grad():
        out = [forward(model, x[i : i + batch_size]).softmax(1) for i in range(0, len(x), batch_size)]
    return torch.cat(out).gather(1, t[:, None]).squeeze(1)


def _check(model: nn.Module, x: torch.Tensor, heat: torch.Tensor, target) -> tuple[torch.Tensor, ...]:
    x = check_inputs(x, images=True).to(model_device(model))
    require(
        heat.shape == (x.shape[0], *x.shape[2:]), f"heatmaps: expected shape (N, H, W) = {(x.shape[0], *x.shape[2:])}"
    )
    with torch.no_grad():
        t = resolve_target(target, forward(model, x))
    return x, heat.to(x.device).float(), t


def deletion_game(
    model: nn.Module, x: torch.Tensor, heat: torch.Tensor, target=None, levels: int = 20, threshold: float = 0.01
) -> torch.Tensor:
    """Fong & Vedaldi 2017 sec. 5 deletion game: per example the smallest box area (fraction of the image).

    For thresholds ``alpha`` of the [0, 1]-normalised heatmap, the bounding box of pixels
    ``>= alpha`` is blurred; the score is the smallest such box with normalised class
    probability ``(p_pert - p_blur) / (p_orig - p_blur) <= threshold`` (the whole image when
    none is). Smaller is better.
    """
    x, heat, t = _check(model, x, heat, target)
    n, _, h, w = x.shape
    blurred = gaussian_blur(x, 10.0 * h / 224)
    p_orig, p_blur = _probs(model, x, t), _probs(model, blurred, t)
    norm = to_heatmap(heat[:, None], "sum", normalize=True)
    alphas = torch.linspace(0, 1, levels + 1, device=x.device)[1:]
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    above = norm[:, None] >= alphas.view(1, -1, 1, 1)  # (N, L, H, W)
    rows, cols = above.any(3), above.any(2)
    big = max(h, w)
    top = torch.where(rows, ys, big).amin(2)
    bottom = torch.where(rows, ys, -1).amax(2)
    left = torch.where(cols, xs, big).amin(2)
    right = torch.where(cols, xs, -1).amax(2)
    box = (
        (ys.view(1, 1, h, 1) >= top[..., None, None]) & (ys.view(1, 1, h, 1) <= bottom[..., None, None])
        & (xs.view(1, 1, 1, w) >= left[..., None, None]) & (xs.view(1, 1, 1, w) <= right[..., None, None])
    )  # fmt: skip
    pert = torch.where(box[:, :, None], blurred[:, None], x[:, None]).flatten(0, 1)
    p = _probs(model, pert, t.repeat_interleave(levels)).view(n, levels)
    score = (p - p_blur[:, None]) / (p_orig - p_blur).clamp(min=1e-8)[:, None]
    area = box.flatten(2).float().mean(2)
    area = torch.where(score <= threshold, area, torch.ones_like(area))
    return area.amin(1)


def deletion_insertion(
    model: nn.Module, x: torch.Tensor, heat: torch.Tensor, target=None, steps: int = 20, mode: str = "deletion"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Petsiuk et al. 2018 (RISE) deletion / insertion curves and their AUC per example.

    Deletion: pixels are replaced by the blurred image in decreasing heatmap order (lower AUC
    is better). Insertion: starting from the blurred image, pixels are restored in that order
    (higher AUC is better). Returns ``(curves (N, steps + 1), auc (N,))``; AUC by trapezoid.
    """
    require(mode in ("deletion", "insertion"), f"mode: expected deletion or insertion, got {mode!r}")
    x, heat, t = _check(model, x, heat, target)
    n, _, h, w = x.shape
    blurred = gaussian_blur(x, 10.0 * h / 224)
    rank = heat.flatten(1).argsort(1, descending=True).argsort(1).view(n, 1, h, w)
    counts = torch.linspace(0, h * w, steps + 1, device=x.device).round()
    changed = rank[:, None] < counts.view(1, -1, 1, 1, 1)  # (N, S+1, 1, H, W)
    start, end = (x, blurred) if mode == "deletion" else (blurred, x)
    frames = torch.where(changed, end[:, None], start[:, None]).flatten(0, 1)
    curves = _probs(model, frames, t.repeat_interleave(steps + 1)).view(n, steps + 1)
    return curves, torch.trapezoid(curves, dx=1.0 / steps, dim=1)


def pointing_game(heat: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Zhang et al. 2016 pointing game: 1 where the heatmap's maximum falls on the object, else 0.

    ``masks``: boolean ``(N, H, W)`` object masks (a box is a filled mask); ``tolerance``
    pixels of slack around the object (the paper uses 15 px at 224).
    """
    require(
        heat.shape == masks.shape, f"masks: expected the heatmaps' shape {tuple(heat.shape)}, got {tuple(masks.shape)}"
    )
    n, h, w = heat.shape
    obj = masks.bool().float()[:, None]
    if tolerance > 0:
        obj = torch.nn.functional.max_pool2d(obj, 2 * tolerance + 1, stride=1, padding=tolerance)
    idx = heat.flatten(1).argmax(1)
    return obj.flatten(1).gather(1, idx[:, None]).squeeze(1)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every parameter re-drawn (Adebayo et al. 2018, full randomisation)."""
    clone = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in clone.parameters():
            p.copy_(torch.randn(p.shape, generator=gen).to(p) * (p.std() if p.numel() > 1 else 1.0))
    return clone


def randomisation_check(method: Callable[[nn.Module], Attribution], model: nn.Module, x: torch.Tensor, target=None):
    """Adebayo et al. 2018 model-parameter randomisation test: per-example Spearman rank correlation.

    Between the heatmaps of ``model`` and of a randomised copy (same target). A method that
    passes the sanity check gives low correlation; near 1 means the map ignores the weights. A
    constant map has no ranks (see :func:`_rank_correlation`): the model's own counts as 1, never as
    a pass.
    """

    with torch.no_grad():
        t = resolve_target(target, forward(model, check_inputs(x).to(model_device(model))))
    a = to_heatmap(method(model).attribute(x, t), "sum_abs").flatten(1).cpu()
    b = to_heatmap(method(randomise(model)).attribute(x, t), "sum_abs").flatten(1).cpu()
    return torch.tensor([_rank_correlation(u, v) for u, v in zip(a, b, strict=True)])


def _rank_correlation(u: torch.Tensor, v: torch.Tensor) -> float:
    """Spearman's rho of the model's map ``u`` and the randomised model's ``v``. A constant map has
    no ranks: a constant ``u`` counts as 1 (the map shows nothing, so nothing shows it depends on
    the weights), a constant ``v`` alone as 0 (randomising the weights erased the map's order)."""
    from scipy.stats import spearmanr

    if bool(u.min() == u.max()):
        return 1.0
    if bool(v.min() == v.max()):
        return 0.0
    return float(spearmanr(u.numpy(), v.numpy()).statistic)
