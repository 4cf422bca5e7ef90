"""Writing figures: every PNG the library makes goes through :func:`save_figure`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_figure(fig: Any, path: str | Path, dpi: int = 100, tight: bool = True) -> Path:
    """Lay out the matplotlib ``fig`` (unless ``tight`` is False), write it to ``path`` (parents
    created) and close it. Callers import pyplot themselves, after selecting the Agg backend."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
