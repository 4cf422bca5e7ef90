"""Writing figures without touching matplotlib's global state.

Figures are made with :func:`figure` (a ``matplotlib.figure.Figure``, which draws through the
Agg canvas by itself), never through ``pyplot``: importing or using trusttango does not
change a notebook's plotting backend and leaves no open pyplot figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trusttango.errors import require


def figure(figsize: tuple[float, float] = (6.4, 4.8), **kwargs: Any) -> Any:
    """A new stand-alone ``matplotlib.figure.Figure`` (no pyplot, no backend change)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, **kwargs)


def subplots(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8), **kwargs: Any) -> tuple:
    """``(fig, axes)`` like ``pyplot.subplots``, on a stand-alone :func:`figure`."""
    fig = figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig: Any, path: str | Path, dpi: int = 100, tight: bool = True) -> Path:
    """Lay out ``fig`` (unless ``tight`` is False) and write it to ``path`` as a PNG (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def plot_roc(
    curves: dict[str, tuple[Any, Any, float]],
    path: str | Path,
    title: str = "ROC",
    log: bool = False,
    floor: float = 1e-5,
) -> Path:
    """ROC curves as a PNG: ``curves`` maps a label to ``(fpr, tpr, auc)``; the chance diagonal
    is drawn, and ``log=True`` puts both axes on log scales from ``floor`` (the low-FPR view of
    membership attacks, Carlini et al. 2022, Fig. 1; below one negative in the data's count no
    rate is measured)."""
    require(len(curves) > 0, "plot_roc: no curves given")
    fig, ax = subplots(figsize=(4.8, 4.8))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    ax.plot([floor if log else 0, 1], [floor if log else 0, 1], "k:", lw=1, label="chance")
    if log:
        ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1))
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=title)
    ax.legend(loc="lower right", fontsize=7)
    return save_figure(fig, path, dpi=110)
