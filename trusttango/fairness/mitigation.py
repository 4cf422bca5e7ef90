"""Bias mitigations as :class:`~trusttango.train.Hook` objects on the one training loop.

* :class:`GroupReweighting` — reweighing (Kamiran & Calders 2012, Eq. 1): example weight
  ``w(g, y) = P(g) P(y) / P(g, y)`` makes group and label independent in the weighted data;
  ``mode="balanced"`` instead gives every (group, label) cell the same total weight. Applied by
  weighted sampling with replacement, so the expected loss is the weighted loss.
* :class:`RightReasons` — "Right for the Right Reasons" (Ross et al. 2017, Eq. 1): adds
  ``λ Σ_n Σ_d (A_nd ∂/∂x_nd Σ_k log p̂_k(x_n))²`` to the loss, penalising input gradients on
  annotated irrelevant regions ``A`` (e.g. a known watermark).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.fairness.subgroups import group_labels
from trusttango.train import Hook, TrainState

MODES = ("reweigh", "balanced")


def group_weights(y: np.ndarray, groups: np.ndarray, mode: str = "reweigh") -> np.ndarray:
    """Per-example weights (mean 1) from group labels and class labels (see module docstring)."""
    require(mode in MODES, f"mode: expected one of {MODES}, got {mode!r}")
    cell = pd.Series(list(zip(groups, y, strict=True)))
    n = len(y)
    p_cell = cell.map(cell.value_counts() / n).to_numpy(float)
    if mode == "balanced":
        w = 1.0 / p_cell
    else:
        p_g = pd.Series(groups).map(pd.Series(groups).value_counts() / n).to_numpy(float)
        p_y = pd.Series(y).map(pd.Series(y).value_counts() / n).to_numpy(float)
        w = p_g * p_y / p_cell
    return w / w.mean()


class GroupReweighting(Hook):
    """Replace the loop's shuffling loader by weighted sampling of the training rows.

    ``groups`` are the training set's group attributes (default: all its ``extra`` columns,
    or those named in ``columns``).
    """

    def __init__(
        self, groups: Mapping[str, np.ndarray] | None = None, columns: list[str] | None = None, mode: str = "reweigh"
    ) -> None:
        require(mode in MODES, f"mode: expected one of {MODES}, got {mode!r}")
        self.groups, self.columns, self.mode = groups, columns, mode
        self.weights: np.ndarray | None = None

    def setup(self, state: TrainState) -> None:
        data: LabelledDataset = state.loader.dataset
        groups = self.groups
        if groups is None:
            columns = self.columns or list(data.extra)
            require(all(c in data.extra for c in columns), f"groups: columns {columns} not all in {sorted(data.extra)}")
            groups = {c: data.extra[c] for c in columns}
        labels = group_labels(groups, len(data))
        self.weights = group_weights(data.y.numpy(), labels, self.mode)
        generator = torch.Generator().manual_seed(state.config.seed)
        sampler = WeightedRandomSampler(torch.as_tensor(self.weights), len(data), replacement=True, generator=generator)
        state.loader = DataLoader(
            data, batch_size=state.loader.batch_size, sampler=sampler, collate_fn=state.loader.collate_fn
        )

    def meta(self) -> dict:
        return {"mitigation": {"group_reweighting": self.mode}}


class RightReasons(Hook):
    """Ross et al. 2017 input-gradient penalty on annotated irrelevant regions.

    ``annotation`` is a fixed mask broadcastable to the inputs (e.g. ``(H, W)`` for a known tag
    position) or a callable ``(x, y) -> mask`` giving one mask per batch.
    """

    def __init__(
        self, annotation: torch.Tensor | Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lam: float = 10.0
    ):
        require(lam >= 0, f"lam: expected >= 0, got {lam}")
        self.annotation, self.lam = annotation, lam

    def loss(self, state: TrainState, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor):
        a = self.annotation(x, y) if callable(self.annotation) else self.annotation
        x = x.detach().requires_grad_(True)
        log_p = torch.log_softmax(state.model(x), dim=1).sum()
        (grad,) = torch.autograd.grad(log_p, x, create_graph=True)
        penalty = (a.to(x.device, x.dtype) * grad).pow(2).sum() / len(x)
        return loss + self.lam * penalty

    def meta(self) -> dict:
        return {"mitigation": {"right_reasons_lambda": self.lam}}
