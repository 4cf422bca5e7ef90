"""Method registry by short name, per-input maps and scores of several methods for one batch,
and the one-call comparison table of methods x metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import Attribution, check_inputs, forward, resolve_target
from trusttango.explain.backward_rules import Deconvolution, GuidedBackprop
from trusttango.explain.cam import GradCAM, GuidedGradCAM
from trusttango.explain.gradient import InputXGradient, IntegratedGradients, Saliency, SmoothGrad
from trusttango.explain.heatmap import to_heatmap
from trusttango.explain.meaningful import MeaningfulPerturbation
from trusttango.explain.metrics import deletion_game, deletion_insertion, pointing_game, randomisation_check
from trusttango.explain.occlusion import Occlusion
from trusttango.torchutil import model_device

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


ALIASES: dict[str, str] = {  # other names people use -> the one name of METHODS
    "integrated": "integrated_gradients", "ig": "integrated_gradients", "guided_backprop": "guided",
    "deconvolution": "deconvnet", "grad_cam": "gradcam", "vanilla_gradient": "saliency",
}  # fmt: skip


def canonical(name: str) -> str:
    """The :data:`METHODS` name for ``name`` or one of its :data:`ALIASES` (case and ``-`` ignored)."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    require(key in METHODS, f"method: unknown {name!r}; choose from {', '.join(METHODS)}")
    return key


def method(name: str) -> Callable[[nn.Module], Attribution]:
    """The attribution class registered under ``name`` or an alias of it (see :data:`METHODS`)."""
    return METHODS[canonical(name)]


def methods(names: Sequence[str], layer: str | None = None) -> dict[str, Callable[[nn.Module], Attribution]]:
    """The classes registered under ``names``, in order; ``layer`` (a module name) is bound to
    the CAM methods (:class:`GradCAM` and its subclasses), whose default is the last conv layer.
    A ``layer`` with no CAM method among ``names`` is an :class:`InputError`."""
    require(len(names) > 0, "method: expected at least one method name")
    found = {canonical(name): method(name) for name in names}
    if layer is None:
        return found
    cams = [name for name, cls in found.items() if isinstance(cls, type) and issubclass(cls, GradCAM)]
    cam_names = ", ".join(n for n, c in METHODS.items() if isinstance(c, type) and issubclass(c, GradCAM))
    require(bool(cams), f"layer: applies to the CAM methods ({cam_names}), none of which is selected")
    return {name: partial(cls, layer=layer) if name in cams else cls for name, cls in found.items()}


@dataclass
class Explanations:
    """Maps and scores of several methods for one batch of ``N`` images.

    ``heatmaps[m]``: ``(N, H, W)`` in [0, 1] (:func:`to_heatmap`, normalised); ``scores[m]``:
    per-input ``deletion_game_area`` (Fong & Vedaldi 2017) and ``deletion_auc`` (Petsiuk et al.
    2018), both for the explained class ``target``; lower is better for both.
    """

    predicted: torch.Tensor  # (N,) argmax class
    target: torch.Tensor  # (N,) the class each map explains
    probabilities: torch.Tensor  # (N, K) softmax
    heatmaps: dict[str, torch.Tensor]
    scores: dict[str, dict[str, torch.Tensor]]

    def maps(self, i: int) -> dict[str, torch.Tensor]:
        """Input ``i``'s ``(H, W)`` map of every method."""
        return {name: heat[i] for name, heat in self.heatmaps.items()}

    def record(self, i: int, name: str, class_names: Sequence[str]) -> dict:
        """Input ``i`` as a JSON-ready dict: predicted class and probability, target, scores."""
        pred, target = int(self.predicted[i]), int(self.target[i])
        return {
            "input": name,
            "class": class_names[pred],
            "probability": float(self.probabilities[i, pred]),
            "target": class_names[target],
            "target_index": target,
            "methods": {m: {k: float(v[i]) for k, v in s.items()} for m, s in self.scores.items()},
        }

    def title(self, i: int, name: str, class_names: Sequence[str]) -> str:
        """``"name: predicted class (probability p)"``, plus the explained class when it is not the predicted one."""
        pred, target = int(self.predicted[i]), int(self.target[i])
        text = f"{name}: predicted {class_names[pred]} (probability {float(self.probabilities[i, pred]):.2f})"
        return f"{text}; explaining it" if target == pred else f"{text}; explaining {class_names[target]}"


def explain_inputs(
    model: nn.Module, x: torch.Tensor, factories: dict[str, Callable[[nn.Module], Attribution]], target=None
) -> Explanations:
    """Every method's map of ``x`` ``(N, C, H, W)`` for ``target`` (``None``: the predicted
    class), with its per-input deletion-game area and deletion AUC. Each method is built on
    ``model`` before any runs, so a bad option fails before the work starts."""
    x = check_inputs(x, images=True).to(model_device(model))
    attributions = {name: factory(model) for name, factory in factories.items()}
    with torch.no_grad():
        logits = forward(model, x)
    t = resolve_target(target, logits)
    heat = {name: to_heatmap(a.attribute(x, t), normalize=True) for name, a in attributions.items()}
    scores = {
        name: {
            "deletion_game_area": deletion_game(model, x, h, t),
            "deletion_auc": deletion_insertion(model, x, h, t)[1],
        }
        for name, h in heat.items()
    }
    return Explanations(logits.argmax(1), t, logits.softmax(1), heat, scores)


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
