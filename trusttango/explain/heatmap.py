"""Reduce an attribution map ``(N, C, H, W)`` to a 2D heatmap ``(N, H, W)``."""

from __future__ import annotations

import torch

from trusttango.errors import require

REDUCTIONS = ("max_abs", "sum_abs", "sum", "positive")


def to_heatmap(attr: torch.Tensor, reduce: str = "max_abs", normalize: bool = False) -> torch.Tensor:
    """Collapse the channel axis of ``attr``.

    ``max_abs``: max over channels of ``|a|`` (Simonyan et al. 2014, sec. 3.1; the default),
    ``sum_abs``: sum of ``|a|``, ``sum``: signed sum, ``positive``: sum clipped at 0.
    ``normalize=True`` scales each map to [0, 1] by its min and max.
    """
    require(
        isinstance(attr, torch.Tensor) and attr.dim() in (3, 4), "attr: expected a tensor (N, C, H, W) or (N, H, W)"
    )
    require(reduce in REDUCTIONS, f"reduce: expected one of {', '.join(REDUCTIONS)}, got {reduce!r}")
    a = attr.detach()
    if a.dim() == 3:
        a = a[:, None]
    if reduce == "max_abs":
        heat = a.abs().amax(1)
    elif reduce == "sum_abs":
        heat = a.abs().sum(1)
    elif reduce == "sum":
        heat = a.sum(1)
    else:
        heat = a.sum(1).clamp(min=0)
    if normalize:
        flat = heat.flatten(1)
        lo, hi = flat.amin(1).view(-1, 1, 1), flat.amax(1).view(-1, 1, 1)
        heat = (heat - lo) / (hi - lo).clamp(min=1e-12)
    return heat
