"""Evaluation of a classifier on a dataset: probabilities, accuracy, per-class metrics,
confusion matrix (and its PNG)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trusttango.data.base import LabelledDataset, make_loader
from trusttango.modes import eval_mode
from trusttango.plotting import save_figure, subplots
from trusttango.records import Record
from trusttango.torchutil import model_device


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor | LabelledDataset, batch_size: int = 512) -> torch.Tensor:
    """Softmax probabilities ``(N, K)`` on CPU for a tensor batch or a dataset (eval mode)."""
    device = model_device(model)
    batches = make_loader(x, batch_size) if isinstance(x, LabelledDataset) else [(b, None) for b in x.split(batch_size)]
    with eval_mode(model):
        out = [torch.softmax(model(b.to(device)), dim=1).cpu() for b, _ in batches]
    return torch.cat(out) if out else torch.empty(0)


@dataclass
class Evaluation(Record):
    """Accuracy, per-class precision / recall / support and the confusion matrix."""

    accuracy: float
    class_names: list[str]
    precision: list[float]
    recall: list[float]
    support: list[int]
    confusion: list[list[int]]  # rows: true class, columns: predicted class


def evaluate(model: nn.Module, data: LabelledDataset, batch_size: int = 512) -> Evaluation:
    """Evaluate ``model`` on ``data``."""
    pred = predict_proba(model, data, batch_size).argmax(1).numpy()
    true = data.y.numpy()
    k = data.num_classes
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (true, pred), 1)
    tp = np.diag(confusion).astype(float)
    precision = np.divide(tp, confusion.sum(0), out=np.zeros(k), where=confusion.sum(0) > 0)
    recall = np.divide(tp, confusion.sum(1), out=np.zeros(k), where=confusion.sum(1) > 0)
    return Evaluation(
        float(tp.sum() / max(1, len(true))),
        list(data.class_names),
        precision.round(6).tolist(),
        recall.round(6).tolist(),
        confusion.sum(1).tolist(),
        confusion.tolist(),
    )


def plot_confusion(evaluation: Evaluation, path: str | Path) -> Path:
    """Save the row-normalised confusion matrix as a PNG."""
    cm = np.asarray(evaluation.confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(evaluation.class_names)
    fig, ax = subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.6 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(evaluation.class_names, rotation=45, ha="right")
    ax.set_yticklabels(evaluation.class_names)
    for i in range(k):
        for j in range(k):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(f"accuracy {evaluation.accuracy:.3f}")
    return save_figure(fig, path, dpi=110)
