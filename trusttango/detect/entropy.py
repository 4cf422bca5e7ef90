"""The entropy detector of Amirian et al. 2018 ("Two to Trust", sec. 3): an adversarial input
leaves a noisier feature response, seen as a higher local spatial entropy.

The score is the mean local entropy (:func:`~trusttango.detect.local_entropy.local_entropy`)
of the guided-backprop response of the predicted class (or, optionally, of more layers,
windows and statistics combined by a small logistic model), thresholded on the ROC of clean
vs attacked validation data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trusttango.detect.base import Detector, batches
from trusttango.detect.local_entropy import local_entropy, plot_entropy
from trusttango.detect.responses import (
    GUIDED,
    SIGNALS,
    check_layer,
    feature_responses,
    full_resolution_layer,
    spatial_relu_layers,
)
from trusttango.errors import require
from trusttango.torchutil import model_device

Responder = Callable[[nn.Module, torch.Tensor], torch.Tensor]
AUTO = "auto"
ALL = "all"
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


class EntropyDetector(Detector):
    """Local spatial entropy of the feature response (Amirian et al. 2018, sec. 3).

    ``window`` and ``bins`` are the entropy's neighbourhood side and histogram bins
    (:func:`~trusttango.detect.local_entropy.local_entropy`); several windows, e.g. ``(3, 5)``, give
    one entropy image per window and response layer (multi-scale). ``layer`` picks the response:
    ``None`` the guided-backprop map at the input (the paper's figure), a module name the guided
    signal at that module's output, ``"auto"`` (default) the last full-resolution ReLU
    (:func:`~trusttango.detect.responses.full_resolution_layer`), ``"all"`` every ReLU call with a
    2-D feature map (:func:`~trusttango.detect.responses.spatial_relu_layers`; a shared ReLU gives
    one response per call), or a list of names; ``"auto"`` and ``"all"`` are resolved at first use.
    ``summary=False`` scores the mean entropy (the paper's statistic); ``summary=True`` adds the
    standard deviation, the quantiles :data:`QUANTILES` and the non-zero fraction of the entropy
    image. Several statistics (several layers, or a summary) are combined by a small logistic
    model. ``signal`` is what is read at each layer
    (:func:`~trusttango.detect.responses.feature_responses`): ``"guided"`` (default),
    ``"activation"`` (the forward feature map) or ``"both"``. ``responder(model, x)`` replaces the
    response altogether (``layer`` and ``signal`` are then unused).
    """

    name, key = "entropy detector", "entropy"

    def __init__(
        self,
        model: nn.Module,
        window: int | Sequence[int] = 3,
        bins: int = 256,
        summary: bool = False,
        responder: Responder | None = None,
        batch_size: int = 256,
        layer: str | list[str] | None = AUTO,
        signal: str = GUIDED,
    ) -> None:
        super().__init__(model, batch_size)
        require(signal in SIGNALS, f"signal: expected one of {SIGNALS}, got {signal!r}")
        self.bins, self.summary, self.layer, self.signal = bins, summary, layer, signal
        self.custom_responder = responder is not None
        self.responder = responder or (lambda net, x: feature_responses(net, x, self.layers(x)[:1], signal)[0])
        self.windows = (window,) if isinstance(window, int) else tuple(window)
        require(len(self.windows) > 0, "window: an empty list names no neighbourhood size")
        for side in self.windows:  # validates window and bins
            local_entropy(torch.zeros(1, 1, side, side), side, bins)
        require(layer != [], "layer: an empty list names no response layer")
        for name in layer if isinstance(layer, list) else [] if layer in (None, AUTO, ALL) else [layer]:
            check_layer(model, name)  # an unknown name fails here, not at first use

    def layers(self, x: torch.Tensor) -> list[str | None]:
        """The response layers, resolving ``"auto"`` / ``"all"`` on the model's output shapes for ``x``."""
        if self.layer == AUTO:
            self.layer = full_resolution_layer(self.model, x)
        elif self.layer == ALL:
            self.layer = [name for name, _ in spatial_relu_layers(self.model, x)] or None
        return list(self.layer) if isinstance(self.layer, list) else [self.layer]

    def entropies(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Entropy images (N, H, W) of the responses of ``x``, one per response layer, signal and
        window (layer-major: all signals and windows of the first layer, then the next layer's)."""
        layers = None if self.custom_responder else self.layers(x)
        device = model_device(self.model)
        per_batch = []  # entropy images only: a batch's responses are dropped once summarised
        for b in batches(x, self.batch_size):
            b = b.to(device)
            maps = (
                [self.responder(self.model, b)]
                if layers is None
                else feature_responses(self.model, b, layers, self.signal)
            )
            per_batch.append([local_entropy(m, side, self.bins).cpu() for m in maps for side in self.windows])
        return [torch.cat(images) for images in zip(*per_batch, strict=True)]

    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        """Entropy images (N, H, W) of the responses of ``x`` at the first response layer and window."""
        return self.entropies(x)[0]

    def statistics(self, x: torch.Tensor) -> np.ndarray:
        return np.concatenate([self._summarise(e.flatten(1)) for e in self.entropies(x)], 1)

    def _summarise(self, flat: torch.Tensor) -> np.ndarray:
        mean = flat.mean(1, keepdim=True)
        if not self.summary:
            return mean.numpy()
        quantiles = torch.quantile(flat, torch.tensor(QUANTILES), dim=1).T
        nonzero = (flat > 0).float().mean(1, keepdim=True)
        return torch.cat([mean, flat.std(1, keepdim=True), quantiles, nonzero], 1).numpy()

    def settings(self) -> dict:
        """Constructor keywords (``layer`` as resolved at fit); a custom ``responder`` cannot be saved."""
        require(not self.custom_responder, "save: a detector with a custom responder cannot be saved")
        return {"window": list(self.windows), "bins": self.bins, "summary": self.summary, "layer": self.layer,
                "signal": self.signal, "batch_size": self.batch_size}  # fmt: skip


def plot_detector_examples(
    detector: EntropyDetector, clean: torch.Tensor, adversarial: torch.Tensor, path: str | Path, label: str, k: int = 4
) -> Path:
    """The first ``k`` clean and ``k`` adversarial inputs with their responses and entropy images
    (:func:`~trusttango.detect.local_entropy.plot_entropy`)."""
    k = min(k, len(clean), len(adversarial))
    both = torch.cat([clean[:k], adversarial[:k]])
    titles = [f"clean {i}" for i in range(k)] + [f"{label} {i}" for i in range(k)]
    return plot_entropy(both, detector.responder(detector.model, both), detector.entropy(both), path, titles)
