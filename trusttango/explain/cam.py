"""Grad-CAM and guided Grad-CAM (Selvaraju et al. 2017, eqs. 1-2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import InputError, require
from trusttango.explain._base import Attribution, Target, class_score, forward, forward_recording, resolve_target
from trusttango.explain.backward_rules import rule_gradient
from trusttango.torchutil import find_module, module_names


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's ``nn.Conv2d`` layers, in registration order."""
    return module_names(model, nn.Conv2d)


def find_layer(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    """The layer named ``layer`` (or the module itself, if part of ``model``); ``None`` = the
    last ``nn.Conv2d``. An unknown name is an :class:`InputError` listing the conv layers."""
    convs = conv_layers(model)
    if layer is None:
        require(
            bool(convs), "model: has no nn.Conv2d layer for Grad-CAM; pass layer= a module with (N, C, h, w) output"
        )
        return find_module(model, convs[-1])
    try:
        return find_module(model, layer)
    except InputError:
        if isinstance(layer, nn.Module):
            raise
        raise InputError(f"layer: no module named {layer!r}; conv layers are: {', '.join(convs) or '(none)'}") from None


def layer_gradcam(model: nn.Module, x: torch.Tensor, target: Target, layer: nn.Module) -> torch.Tensor:
    """``ReLU(sum_k alpha_k A^k)`` at ``layer`` with ``alpha_k = mean_ij d y_c / d A^k_ij``: ``(N, 1, h, w)``."""
    with torch.enable_grad():
        logits, acts = forward_recording(model, layer, x)
    require(len(acts) == 1, f"layer: expected it to run once per forward pass, it ran {len(acts)} times")
    a = acts[0]
    require(isinstance(a, torch.Tensor) and a.dim() == 4, "layer: Grad-CAM needs a layer with (N, C, h, w) output")
    t = resolve_target(target, logits)
    with torch.enable_grad():  # callers may run under no_grad (e.g. evaluate())
        (grad,) = torch.autograd.grad(class_score(logits, t), a)
    alpha = grad.mean((2, 3), keepdim=True)
    return (alpha * a).sum(1, keepdim=True).clamp(min=0).detach()


def upsample(cam: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize ``(N, 1, h, w)`` maps to the input's ``size`` (``bilinear`` or ``nearest``)."""
    require(mode in ("bilinear", "nearest"), f"interpolate: expected bilinear or nearest, got {mode!r}")
    if mode == "nearest":
        return F.interpolate(cam, size, mode="nearest")
    return F.interpolate(cam, size, mode="bilinear", align_corners=False)


class GradCAM(Attribution):
    """Grad-CAM map upsampled to the input: returns ``(N, 1, H, W)`` (one channel, not ``C``).

    ``layer``: a module name (see :func:`conv_layers`) or module; default the last ``nn.Conv2d``.
    ``interpolate``: ``bilinear`` (default) or ``nearest`` (Captum's default).
    """

    images_only = True

    def __init__(self, model: nn.Module, layer: str | nn.Module | None = None, interpolate: str = "bilinear") -> None:
        super().__init__(model)
        self.layer, self.interpolate = find_layer(model, layer), interpolate

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        x = self._prepare(inputs)
        return upsample(layer_gradcam(self.model, x, target, self.layer), x.shape[2:], self.interpolate)


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM (Selvaraju et al. 2017, sec. 3.1): guided backprop x upsampled Grad-CAM, shaped like inputs."""

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        x = self._prepare(inputs)
        if target is None:
            with torch.no_grad():
                target = resolve_target(None, forward(self.net, x))
        cam = upsample(layer_gradcam(self.model, x, target, self.layer), x.shape[2:], self.interpolate)
        return rule_gradient(self.net, x, target, guided=True) * cam
