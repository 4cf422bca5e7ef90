"""Model inversion, MI-FACE (Fredrikson, Jha & Ristenpart 2015, "Model Inversion Attacks
that Exploit Confidence Information", Algorithm 1): reconstruct a representative input of a
class by gradient descent on ``c(x) = 1 - p_label(x)`` from ``x = 0``, projected onto the
valid pixel box ``[0, 1]`` (steps normalised by the gradient's largest entry, since the
gradient of a saturated softmax is tiny far from the class); stop after ``max_steps``, after ``patience`` steps without
improvement (beta = 100 in the paper) or once ``c(x) <= 1 - target`` (gamma).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from trusttango.errors import require
from trusttango.modes import eval_mode
from trusttango.plotting import save_figure, subplots
from trusttango.torchutil import model_device


@dataclass
class Inversion:
    """Reconstructions ``(K, C, H, W)`` in [0, 1], one per requested label, and their confidences."""

    images: torch.Tensor
    labels: list[int]
    confidence: list[float]
    steps: list[int]


def mi_face(
    model: nn.Module,
    input_shape: tuple[int, ...],
    label: int,
    lr: float = 0.1,
    max_steps: int = 5000,
    patience: int = 100,
    target: float = 0.99,
) -> tuple[torch.Tensor, float, int]:
    """One MI-FACE reconstruction of class ``label``: (image, p_label, steps taken)."""
    device = model_device(model)
    x = torch.zeros(1, *input_shape, device=device, requires_grad=True)
    best, best_cost, stale, step = x.detach().clone(), float("inf"), 0, 0
    with eval_mode(model):
        for step in range(1, max_steps + 1):  # noqa: B007 (the count is returned)
            cost = 1 - model(x).softmax(1)[0, label]
            (grad,) = torch.autograd.grad(cost, x)
            with torch.no_grad():
                if cost.item() < best_cost:
                    best, best_cost, stale = x.detach().clone(), cost.item(), 0
                else:
                    stale += 1
                if best_cost <= 1 - target or stale >= patience:
                    break
                x -= lr * grad / grad.abs().max().clamp_min(1e-12)  # scale-free step: p_label ~ 0 has tiny gradients
                x.clamp_(0, 1)
    return best[0].cpu(), 1 - best_cost, step


def invert_classes(model: nn.Module, input_shape: tuple[int, ...], labels: list[int], **options: float) -> Inversion:
    """MI-FACE reconstructions of each class in ``labels`` (options as in :func:`mi_face`)."""
    require(len(labels) > 0, "inversion: give at least one label")
    require(len(input_shape) == 3, f"inversion: input_shape must be (C, H, W), got {tuple(input_shape)}")
    outs = [mi_face(model, input_shape, int(label), **options) for label in labels]
    return Inversion(torch.stack([o[0] for o in outs]), list(labels), [o[1] for o in outs], [o[2] for o in outs])


def plot_inversion(result: Inversion, class_names: list[str], path: str | Path) -> Path:
    """The reconstructions side by side, titled with class and confidence, as a PNG."""
    n = len(result.labels)
    fig, axes = subplots(1, n, figsize=(1.6 * n, 2.0), squeeze=False)
    for ax, img, label, conf in zip(axes[0], result.images, result.labels, result.confidence, strict=True):
        pixels = img.permute(1, 2, 0).numpy()
        ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{class_names[label]}\np={conf:.2f}", fontsize=7)
        ax.axis("off")
    fig.suptitle("MI-FACE reconstructions", fontsize=8)
    return save_figure(fig, path, dpi=120)
