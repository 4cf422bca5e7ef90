"""Figures of the robustness pillar (PNG, stand-alone figures): accuracy-vs-eps curves, ARA
curves, attack examples and the adversarial-explanation gallery."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from trusttango.plotting import save_figure, subplots
from trusttango.robust.evaluation import ARAResult, RobustnessCurve


def _image(t: torch.Tensor) -> np.ndarray:
    """(C, H, W) tensor -> an array imshow accepts (grey 2-D or RGB H x W x 3)."""
    a = t.detach().cpu().float().numpy()
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def plot_curves(curves: Sequence[RobustnessCurve], path: str | Path, title: str = "accuracy under attack") -> Path:
    """One panel per norm: accuracy vs eps for each curve (PNG)."""
    norms = sorted({c.norm for c in curves})
    fig, axes = subplots(1, len(norms), figsize=(5 * len(norms), 4), squeeze=False)
    for ax, norm in zip(axes[0], norms, strict=True):
        for c in (c for c in curves if c.norm == norm):
            ax.plot(c.eps, c.accuracy, marker="o", label=c.attack)
        ax.set(xlabel=f"eps ({norm})", ylabel="accuracy", ylim=(0, 1), title=f"{title} ({norm})")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path, dpi=110)


def plot_ara(results: dict[str, ARAResult], path: str | Path) -> Path:
    """``Acc(eps)`` against the RMS perturbation for each named model, with its ARA (PNG)."""
    fig, ax = subplots(figsize=(5.5, 4))
    for name, r in results.items():
        grid = np.linspace(0, max(1e-6, float(np.quantile(r.deltas, 0.99))) * 1.2, 200)
        ax.plot(grid, r.accuracy_at(grid), label=f"{name} (ARA {r.ara:.4f})")
        ax.axhline(1 / r.num_classes, color="grey", ls=":", lw=0.8)
    ax.set(xlabel="RMS perturbation eps", ylabel="Acc(eps)", ylim=(0, 1), title="minimum-norm robustness (ARA)")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path, dpi=110)


def plot_examples(
    x: torch.Tensor,
    x_adv: torch.Tensor,
    labels: torch.Tensor,
    predictions: torch.Tensor,
    class_names: Sequence[str],
    path: str | Path,
    n: int = 8,
) -> Path:
    """Rows: clean input, adversarial input (with the new prediction), amplified difference."""
    n = min(n, len(x))
    fig, axes = subplots(3, n, figsize=(1.6 * n, 5), squeeze=False)
    for i in range(n):
        diff = (x_adv[i] - x[i]).abs().sum(0)
        panels = [(_image(x[i]), class_names[int(labels[i])]), (_image(x_adv[i]), class_names[int(predictions[i])])]
        panels.append((diff.cpu().numpy(), f"|diff| max {float(diff.max()):.2f}"))
        for row, (img, title) in enumerate(panels):
            axes[row, i].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=None if row == 2 else 1)
            axes[row, i].set_title(title, fontsize=7)
            axes[row, i].axis("off")
    return save_figure(fig, path, dpi=110)


def plot_gallery(x: torch.Tensor, per_class: torch.Tensor, class_names: Sequence[str], path: str | Path) -> Path:
    """Adversarial-explanation gallery: per input, a row of per-class images and a row of differences.

    ``per_class`` is :func:`~trusttango.robust.explanations.explain_classes`'s (N, K, C, H, W).
    """
    n, k = per_class.shape[:2]
    fig, axes = subplots(2 * n, k + 1, figsize=(1.3 * (k + 1), 2.7 * n), squeeze=False)
    for i in range(n):
        axes[2 * i, 0].imshow(_image(x[i]), cmap="gray", vmin=0, vmax=1)
        axes[2 * i, 0].set_title("input", fontsize=7)
        for c in range(k):
            diff = (per_class[i, c] - x[i].to(per_class.device)).sum(0).cpu().numpy()
            scale = max(1e-6, float(np.abs(diff).max()))
            axes[2 * i, c + 1].imshow(_image(per_class[i, c]), cmap="gray", vmin=0, vmax=1)
            axes[2 * i, c + 1].set_title(str(class_names[c])[:10], fontsize=7)
            axes[2 * i + 1, c + 1].imshow(diff, cmap="seismic", vmin=-scale, vmax=scale)
        for ax in axes[2 * i : 2 * i + 2].ravel():
            ax.axis("off")
    return save_figure(fig, path, dpi=110)
