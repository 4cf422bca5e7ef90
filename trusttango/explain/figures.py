"""PNG figures: one row per method, panels ``input | heatmap | overlay``; CKA matrices; TCAV bars.

Drawn on stand-alone figures (:func:`trusttango.plotting.subplots`): no pyplot, no backend change.
"""

from __future__ import annotations

from pathlib import Path

import torch

from trusttango.plotting import save_figure, subplots


def _image(x: torch.Tensor):
    img = x.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
    return img[..., 0] if img.shape[2] == 1 else img


def save_overlays(x: torch.Tensor, heatmaps: dict[str, torch.Tensor], path: Path, title: str = "") -> None:
    """Write ``input | heatmap | overlay`` for one image ``(C, H, W)`` and each method's ``(H, W)`` map,
    each map with its colour bar."""
    rows = len(heatmaps)
    fig, axes = subplots(rows, 3, figsize=(7.5, 2.5 * rows), squeeze=False)
    img = _image(x)
    cmap = "gray" if img.ndim == 2 else None
    for ax_row, (name, heat) in zip(axes, heatmaps.items(), strict=False):
        h = heat.detach().cpu().numpy()
        ax_row[0].imshow(img, cmap=cmap, vmin=0, vmax=1)
        ax_row[0].set_ylabel(name)
        shown = ax_row[1].imshow(h, cmap="inferno")
        fig.colorbar(shown, ax=ax_row[1], fraction=0.046, pad=0.04)
        ax_row[2].imshow(img, cmap=cmap, vmin=0, vmax=1)
        overlay = ax_row[2].imshow(h, cmap="jet", alpha=0.45)
        fig.colorbar(overlay, ax=ax_row[2], fraction=0.046, pad=0.04, label="attribution")
        for ax, label in zip(ax_row, ("input", "heatmap", "overlay"), strict=False):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=100)


def save_matrix(matrix: torch.Tensor, rows: list[str], cols: list[str], path: Path, title: str = "linear CKA") -> None:
    """A labelled heatmap of a ``(len(rows), len(cols))`` matrix in [0, 1] (e.g. :func:`cka_matrix`)."""
    fig, ax = subplots(figsize=(1.2 + 0.6 * len(cols), 1.0 + 0.5 * len(rows)))
    im = ax.imshow(matrix.numpy(), vmin=0, vmax=1, cmap="magma")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    save_figure(fig, path, dpi=100)


def save_tcav_bars(results: dict, path: Path, title: str = "TCAV") -> None:
    """Bars of TCAV scores per concept (mean +- std over random sets) beside the random-CAV null; ``*`` = significant.

    ``results``: ``{concept name: TCAVResult}``.
    """
    names = list(results)
    pos = range(len(names))
    fig, ax = subplots(figsize=(1.5 + 1.2 * len(names), 3.2))
    stats = lambda v: (float(torch.tensor(v).mean()), float(torch.tensor(v).std()) if len(v) > 1 else 0.0)  # noqa: E731
    concept = [stats(results[n].scores) for n in names]
    null = [stats(results[n].null_scores) for n in names]
    ax.bar([p - 0.2 for p in pos], [m for m, _ in concept], 0.4, yerr=[s for _, s in concept], label="concept")
    ax.bar([p + 0.2 for p in pos], [m for m, _ in null], 0.4, yerr=[s for _, s in null], color="grey", label="random")
    for p, n in zip(pos, names, strict=False):
        mark = "*" if results[n].significant else "n.s."
        ax.text(p - 0.2, min(1.02, concept[p][0] + concept[p][1] + 0.02), mark, ha="center", fontsize=9)
    ax.set_xticks(list(pos), names, rotation=30, ha="right")
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("TCAV score")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    save_figure(fig, path, dpi=100)
