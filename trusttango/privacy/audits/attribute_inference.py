"""Attribute inference (Fredrikson et al. 2014, "Privacy in Pharmacogenetics", Section 4;
Yeom et al. 2018, Section 4): the adversary knows a person's other attributes and true
label and queries the model; for each candidate value ``s`` of the sensitive attribute it
fills in ``s`` and picks ``argmax_s  p_model(y | x_s) * prior(s)``. The baseline has no model
access and predicts ``argmax_s prior(s)``; the attack's advantage is the accuracy gain.

The sensitive attribute is one-hot encoded in feature columns ``columns`` of a tabular
:class:`~trusttango.data.LabelledDataset` (e.g. ``sex`` in Adult with sensitive features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.torchutil import batched_forward


@dataclass
class AttributeInference:
    """Accuracy of inferring the sensitive value with and without model access."""

    accuracy: float
    baseline_accuracy: float
    predicted: np.ndarray

    @property
    def advantage(self) -> float:
        return self.accuracy - self.baseline_accuracy

    def interpretation(self) -> str:
        return (
            f"attribute inference: {self.accuracy:.3f} accuracy with model access vs {self.baseline_accuracy:.3f} "
            f"without (advantage {self.advantage:+.3f}; > 0 means the model leaks the attribute)"
        )


def attribute_inference(
    model: nn.Module, data: LabelledDataset, columns: list[int], prior: np.ndarray | None = None
) -> AttributeInference:
    """Infer the one-hot attribute in ``columns`` of ``data.x`` from the other features, the
    true label and the model's outputs; ``prior`` (default: the empirical frequencies, an
    adversary's population knowledge) weights the candidates."""
    require(data.x.ndim == 2, f"{data.name}: attribute inference needs tabular (N, F) features")
    require(len(columns) >= 2, "columns: give the >= 2 one-hot columns of the sensitive attribute")
    require(all(0 <= c < data.x.shape[1] for c in columns), f"columns must lie in [0, {data.x.shape[1]})")
    onehot = data.x[:, columns]
    require(bool(((onehot == 0) | (onehot == 1)).all()), "columns: the sensitive columns must be one-hot (0/1)")
    truth = onehot.argmax(1).numpy()
    prior = np.bincount(truth, minlength=len(columns)) / len(truth) if prior is None else np.asarray(prior, float)
    require(len(prior) == len(columns), f"prior must have {len(columns)} entries, got {len(prior)}")
    scores = []
    for c in range(len(columns)):
        x = data.x.clone()
        x[:, columns] = 0
        x[:, columns[c]] = 1
        logp = batched_forward(model, x).log_softmax(1).gather(1, data.y.view(-1, 1)).squeeze(1)
        scores.append(logp.numpy() + np.log(max(prior[c], 1e-12)))
    predicted = np.stack(scores, 1).argmax(1)
    baseline = np.full(len(truth), int(prior.argmax()))
    return AttributeInference(float((predicted == truth).mean()), float((baseline == truth).mean()), predicted)
