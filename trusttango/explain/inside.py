"""Looking inside: filter and activation grids, activation maximisation, inversion.

Activation maximisation / DeepDream (Erhan et al. 2009; Simonyan et al. 2014 eq. 1;
Mordvintsev et al. 2015): gradient ascent on the input of a unit, channel or class logit
with L2 and total-variation penalties and random jitter. Inversion (Mahendran & Vedaldi
2015, eq. 1): find ``x`` with ``phi(x)`` close to a target code, with the same regularisers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import check_inputs, forward, forward_recording
from trusttango.explain.cam import conv_layers, find_layer
from trusttango.plotting import save_figure, subplots
from trusttango.torchutil import model_device


def _tv(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


def _grid(images: torch.Tensor, path: Path, title: str) -> None:
    """Save ``(K, H, W)`` maps as a square grid PNG, each normalised to its own range."""
    k = len(images)
    cols = int(k**0.5 + 0.999)
    rows = (k + cols - 1) // cols
    fig, axes = subplots(rows, cols, figsize=(1.2 * cols, 1.2 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, images, strict=False):
        ax.imshow(img.detach().cpu().numpy(), cmap="viridis")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=100, tight=False)


def filter_grid(model: nn.Module, path: Path, layer: str | None = None) -> torch.Tensor:
    """Grid PNG of a conv layer's filters (default the first ``nn.Conv2d``), input channels averaged."""
    convs = conv_layers(model)
    require(bool(convs), "model: has no nn.Conv2d layer to show filters of")
    weights = find_layer(model, layer or convs[0]).weight.detach().mean(1)
    _grid(weights, path, f"filters of {layer or convs[0]}")
    return weights


def activation_grid(model: nn.Module, layer: str, x: torch.Tensor, path: Path) -> torch.Tensor:
    """Grid PNG of the channels of ``layer``'s ``(C, h, w)`` activation for one image ``x`` ``(1, C, H, W)``."""
    module, x = find_layer(model, layer), check_inputs(x, images=True).to(model_device(model))
    with torch.no_grad():
        _, out = forward_recording(model, module, x[:1], detach=True)
    require(out[0].dim() == 4, f"layer: {layer} does not output (N, C, h, w) maps")
    _grid(out[0][0], path, f"activations of {layer}")
    return out[0][0]


def _ascend(
    objective: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int, lr: float, l2: float, tv: float,
    jitter: int, seed: int,
) -> torch.Tensor:  # fmt: skip
    gen = torch.Generator().manual_seed(seed)
    x = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist() if jitter else (0, 0)
        with torch.enable_grad():
            loss = -objective(torch.roll(x, (dy, dx), (2, 3))) + l2 * x.pow(2).mean() + tv * _tv(x)
            opt.zero_grad()
            loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    return x.detach()


def _layer_output(model: nn.Module, layer: str | nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    if layer is None:
        return forward(model, x)
    _, out = forward_recording(model, find_layer(model, layer), x)
    return out[0]


def maximise_activation(
    model: nn.Module,
    shape: tuple[int, ...],
    unit: int,
    layer: str | None = None,
    steps: int = 200,
    lr: float = 0.05,
    l2: float = 1e-3,
    tv: float = 1e-2,
    jitter: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """An input ``(1, *shape)`` in [0, 1] maximising class logit ``unit`` (``layer=None``) or channel
    ``unit`` of ``layer`` (its mean activation), from a grey start with small noise."""
    device = model_device(model)
    start = 0.5 + 0.05 * torch.randn(1, *shape, generator=torch.Generator().manual_seed(seed))

    def objective(x: torch.Tensor) -> torch.Tensor:
        out = _layer_output(model, layer, x)
        require(0 <= unit < out.shape[1], f"unit: expected 0..{out.shape[1] - 1}, got {unit}")
        return out[:, unit].mean()

    return _ascend(objective, start.to(device), steps, lr, l2, tv, jitter, seed)


def invert(
    model: nn.Module, layer: str, x: torch.Tensor, steps: int = 300, lr: float = 0.05, tv: float = 1e-2, seed: int = 0
) -> torch.Tensor:
    """Mahendran & Vedaldi 2015: ``argmin_x ||phi(x) - phi(x0)||^2 / ||phi(x0)||^2 + tv TV(x)`` per image."""
    x0 = check_inputs(x, images=True).to(model_device(model))
    with torch.no_grad():
        code = _layer_output(model, layer, x0)
    scale = code.pow(2).sum().clamp(min=1e-12)
    start = 0.5 + 0.05 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed)).to(x0.device)
    objective = lambda z: -(_layer_output(model, layer, z) - code).pow(2).sum() / scale  # noqa: E731
    return _ascend(objective, start, steps, lr, 0.0, tv, 0, seed)
