"""Method registry by short name and the one-call comparison table of methods x metrics."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import Attribution, check_inputs, forward, model_device, resolve_target
from trusttango.explain.backward_rules import Deconvolution, GuidedBackprop
from trusttango.explain.cam import GradCAM, GuidedGradCAM
from trusttango.explain.gradient import InputXGradient, IntegratedGradients, Saliency, SmoothGrad
from trusttango.explain.heatmap import to_heatmap
from trusttango.explain.meaningful import MeaningfulPerturbation
from trusttango.explain.metrics import deletion_game, deletion_insertion, pointing_game, randomisation_check
from trusttango.explain.occlusion import Occlusion

METHODS: dict[str, Callable[[nn.Module], Attribution]] = {
    "saliency": Saliency,
    "input_x_gradient": InputXGradient,
    "integrated_gradients": IntegratedGradients,
    "smoothgrad": SmoothGrad,
    "deconvnet": Deconvolution,
    "guided": GuidedBackprop,
    "gradcam": GradCAM,
    "guided_gradcam": GuidedGradCAM,
    "occlusion": Occlusion,
    "meaningful": MeaningfulPerturbation,
}


def method(name: str) -> Callable[[nn.Module], Attribution]:
    """The attribution class registered under ``name`` (see :data:`METHODS`)."""
    require(name in METHODS, f"method: unknown {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def compare_methods(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    methods: dict[str, Callable[[nn.Module], Attribution]] | None = None,
    masks: torch.Tensor | None = None,
    sanity: bool = True,
) -> list[dict]:
    """One row per method: maps/s, deletion-game area, deletion / insertion AUC, pointing, sanity.

    ``masks`` (boolean ``(N, H, W)`` object masks) adds the pointing-game accuracy; ``sanity``
    adds the mean Spearman correlation with a randomised model's maps (lower is better).
    """
    x = check_inputs(x, images=True).to(model_device(model))
    with torch.no_grad():
        t = resolve_target(target, forward(model, x))
    rows = []
    for name, factory in (methods or METHODS).items():
        start = time.perf_counter()
        attr = factory(model).attribute(x, t)
        seconds = time.perf_counter() - start
        heat = to_heatmap(attr)
        row = {
            "method": name,
            "maps_per_s": len(x) / seconds,
            "deletion_game_area": float(deletion_game(model, x, heat, t).mean()),
            "deletion_auc": float(deletion_insertion(model, x, heat, t, mode="deletion")[1].mean()),
            "insertion_auc": float(deletion_insertion(model, x, heat, t, mode="insertion")[1].mean()),
        }
        if masks is not None:
            row["pointing"] = float(pointing_game(heat, masks.to(heat.device)).mean())
        if sanity:
            row["sanity_spearman"] = float(randomisation_check(factory, model, x, t).mean())
        rows.append(row)
    return rows
