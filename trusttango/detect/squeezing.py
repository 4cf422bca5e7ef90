"""Feature squeezing (Xu, Evans & Qi, NDSS 2018): an input whose prediction moves when it is
squeezed is suspicious.

Score (eq. 1): ``max_s ||p(x) - p(s(x))||_1`` over the squeezers bit-depth reduction
(sec. 4.1) and median smoothing (sec. 4.2), ``p`` the model's softmax output.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trusttango.detect.base import Detector, batches
from trusttango.errors import require
from trusttango.modes import eval_mode
from trusttango.torchutil import model_device


def bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Reduce [0, 1] inputs to ``bits`` bits per value (Xu et al. 2018, sec. 4.1)."""
    levels = 2**bits - 1
    return torch.round(x.clamp(0, 1) * levels) / levels


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Per-channel ``size x size`` median filter with reflect padding (Xu et al. 2018, sec. 4.2)."""
    n, c, h, w = x.shape
    pad = size // 2
    padded = F.pad(x, (pad, size - 1 - pad, pad, size - 1 - pad), mode="reflect")
    patches = F.unfold(padded.reshape(n * c, 1, *padded.shape[-2:]), size)
    return patches.median(1).values.view(n, c, h, w)


class FeatureSqueezingDetector(Detector):
    """Feature squeezing (Xu, Evans & Qi 2018), eq. 1: ``max_s ||p(x) - p(s(x))||_1`` over the
    squeezers bit-depth reduction to ``bits`` bits and a ``median`` x ``median`` median filter."""

    name, key = "feature squeezing", "squeezing"

    def __init__(self, model: nn.Module, bits: int = 4, median: int = 3, batch_size: int = 256) -> None:
        super().__init__(model, batch_size)
        require(1 <= bits <= 8, f"bits must lie in [1, 8], got {bits}")
        require(median >= 2, f"median must be >= 2, got {median}")
        self.bits, self.median = bits, median

    def settings(self) -> dict:
        return {"bits": self.bits, "median": self.median, "batch_size": self.batch_size}

    @torch.no_grad()
    def statistics(self, x: torch.Tensor) -> np.ndarray:
        out = []
        with eval_mode(self.model):
            for b in batches(x, self.batch_size):
                b = b.to(model_device(self.model))
                p = torch.softmax(self.model(b), 1)
                squeezed = [
                    torch.softmax(self.model(s), 1) for s in (bit_depth(b, self.bits), median_filter(b, self.median))
                ]
                out.append(torch.stack([(p - q).abs().sum(1) for q in squeezed]).amax(0).cpu())
        return torch.cat(out).numpy()[:, None]
