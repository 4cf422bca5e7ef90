"""Kernel density and Bayesian uncertainty (Feinman, Curtin, Shintre & Gardner 2017).

Density (eq. 1): ``log (1/|X_t|) sum_{x_i in X_t} exp(-||f(x) - f(x_i)||^2 / sigma^2)`` over the
clean reference examples ``X_t`` of the predicted class ``t``, ``f`` the penultimate features.
Uncertainty (eq. 2): the variance of Monte-Carlo dropout predictions (Gal & Ghahramani 2016).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trusttango.detect.base import Detector, batches
from trusttango.errors import require
from trusttango.modes import eval_mode
from trusttango.torchutil import batched_forward, check_batch, model_device, penultimate_features

NO_REFERENCE = -1e6  # log density when no reference example shares the predicted class: far below
# any real one (-d^2 / sigma^2 with sigma the median distance), yet small enough that its square
# stays finite in float32 (a floor of -1e30 overflowed the standardisation to NaN)


class KernelDensityDetector(Detector):
    """Kernel density and Bayesian uncertainty (Feinman et al. 2017), combined by logistic regression.

    ``sigma`` (``bandwidth``) defaults to the median pairwise feature distance of the first 1000
    ``reference`` examples; the uncertainty is the variance of ``mc_samples`` dropout predictions
    (zero for models without dropout). Penultimate features as
    :func:`~trusttango.torchutil.penultimate_features`.
    """

    name, key = "kernel density", "density"

    def __init__(
        self,
        model: nn.Module,
        reference: torch.Tensor,
        reference_labels: torch.Tensor,
        bandwidth: float | None = None,
        mc_samples: int = 20,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, batch_size)
        require(len(reference) == len(reference_labels) > 1, "reference: need >= 2 examples with one label each")
        require(mc_samples >= 2, f"mc_samples must be >= 2, got {mc_samples}")
        self.mc_samples = mc_samples
        self.reference = check_batch(reference).detach().cpu()
        self.ref_features, _ = self._features(self.reference)
        self.ref_labels = torch.as_tensor(reference_labels).long().cpu()
        self.bandwidth = bandwidth or float(torch.pdist(self.ref_features[:1000]).median())

    def settings(self) -> dict:
        return {"bandwidth": self.bandwidth, "mc_samples": self.mc_samples, "batch_size": self.batch_size}

    def arrays(self) -> dict[str, torch.Tensor]:
        return {"reference": self.reference, "reference_labels": self.ref_labels}

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features and predicted classes of ``x`` (eval mode, flags restored)."""
        check_batch(x)
        feats = penultimate_features(self.model, x, self.batch_size)
        preds = batched_forward(self.model, x, self.batch_size).argmax(1)
        return feats, preds

    def _log_density(self, feats: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        kernel = -torch.cdist(feats, self.ref_features).square() / self.bandwidth**2
        same = pred[:, None] == self.ref_labels[None, :]
        counts = same.sum(1).clamp_min(1)
        return torch.logsumexp(kernel.masked_fill(~same, -torch.inf), 1).clamp_min(NO_REFERENCE) - counts.log()

    @torch.no_grad()
    def _uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        dropouts = [m for m in self.model.modules() if isinstance(m, nn.Dropout)]
        out = []
        with eval_mode(self.model):  # MC dropout: dropout on, everything else (BatchNorm) in eval mode
            for m in dropouts:
                m.train()
            for b in batches(x, self.batch_size):
                b = b.to(model_device(self.model))
                probs = torch.stack([torch.softmax(self.model(b), 1) for _ in range(self.mc_samples)])
                out.append((probs.square().sum(2).mean(0) - probs.mean(0).square().sum(1)).cpu())
        return torch.cat(out)

    def statistics(self, x: torch.Tensor) -> np.ndarray:
        feats, pred = self._features(x)
        return torch.stack([-self._log_density(feats, pred), self._uncertainty(x)], 1).numpy()
