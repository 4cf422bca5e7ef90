"""Local spatial entropy of feature responses (Amirian et al. 2018, "Two to Trust" section 3).

For every pixel, the Shannon entropy (bits) of the histogram of the response values in its
``k x k`` neighbourhood, after scaling ``|R|`` to 8-bit grey levels and binning them:

    H(i, j) = - sum_b p_b(i, j) log2 p_b(i, j),   p_b(i, j) = #{(u, v) in N_k(i, j): q(u, v) = b} / k^2

Counting is vectorised with ``unfold``: the ``k^2`` levels of every window are sorted, so
equal levels form runs; the run lengths, scattered into ``k^2`` slots, are the non-empty
histogram bins (at most ``k^2`` of them), whatever the number of bins.
An all-zero response falls in one bin everywhere and has entropy 0, never NaN.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from trusttango.errors import require
from trusttango.plotting import save_figure, subplots

CHUNK_PIXELS = 200_000


def to_levels(response: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Quantise ``|response|`` (N, C, H, W) to ``bins`` levels (N, 1, H, W).

    Channels are merged by the maximum of ``|R|``; each map is divided by its own maximum and
    scaled to 8-bit grey levels 0..255, which are then grouped into ``bins`` equal bins.
    """
    require(response.ndim == 4, f"response: expected (N, C, H, W), got shape {tuple(response.shape)}")
    require(2 <= bins <= 256, f"bins must lie in [2, 256], got {bins}")
    magnitude = response.detach().abs().amax(dim=1, keepdim=True).float()
    peak = magnitude.flatten(1).amax(1).clamp_min(torch.finfo(magnitude.dtype).tiny).view(-1, 1, 1, 1)
    grey = torch.floor(magnitude / peak * 255.0).clamp(0, 255)
    return torch.floor(grey * bins / 256.0)


def local_entropy(response: torch.Tensor, window: int = 3, bins: int = 256) -> torch.Tensor:
    """Local spatial entropy image (N, H, W) in bits of a batch of responses (N, C, H, W).

    ``window`` is the odd side ``k`` of the neighbourhood (replicate padding at the border);
    ``bins`` the number of histogram bins over the 8-bit levels. Works in chunks of about
    :data:`CHUNK_PIXELS` pixels to bound memory.
    """
    require(window >= 1 and window % 2 == 1, f"window must be an odd positive integer, got {window}")
    levels = to_levels(response, bins)
    chunk = max(1, CHUNK_PIXELS // (levels.shape[-1] * levels.shape[-2]))
    return (
        torch.cat([_entropy_of_levels(part, window) for part in levels.split(chunk)]) if len(levels) else levels[:, 0]
    )


def _entropy_of_levels(levels: torch.Tensor, window: int) -> torch.Tensor:
    n, _, h, w = levels.shape
    pad = window // 2
    padded = F.pad(levels, (pad, pad, pad, pad), mode="replicate") if pad else levels
    values = F.unfold(padded, window).sort(1).values  # (N, k*k, H*W), equal levels now adjacent
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    runs = starts.cumsum(1) - 1  # histogram slot of each value
    p = torch.zeros_like(values).scatter_add_(1, runs, torch.ones_like(values)) / (window * window)
    entropy = -(p * torch.log2(p.clamp_min(1e-12))).sum(1)
    return (entropy.clamp_min(0.0) + 0.0).view(n, h, w)


def max_entropy(window: int = 3, bins: int = 256) -> float:
    """Upper bound of the local entropy: ``log2(min(k^2, bins))`` bits."""
    return math.log2(min(window * window, bins))


def plot_entropy(
    images: torch.Tensor,
    responses: torch.Tensor,
    entropies: torch.Tensor,
    path: str | Path,
    titles: list[str] | None = None,
) -> Path:
    """PNG with one column per example: the input, its response ``|R|`` and its entropy image
    (Amirian et al. 2018, Fig. 2: an attack invisible in image space shows in entropy space)."""
    n = len(images)
    require(
        n == len(responses) == len(entropies) and n > 0, "plot_entropy: need equally many images, responses, entropies"
    )
    fig, axes = subplots(3, n, figsize=(2.2 * n, 6.6), squeeze=False)
    rows = (
        ("input", lambda i: images[i].detach().cpu().permute(1, 2, 0).squeeze(-1).clamp(0, 1), "gray"),
        ("|response|", lambda i: responses[i].detach().cpu().abs().amax(0), "magma"),
        ("local entropy (bits)", lambda i: entropies[i].detach().cpu(), "viridis"),
    )
    for r, (label, get, cmap) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            im = ax.imshow(get(i).numpy(), cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(label)
            if r == 0 and titles:
                ax.set_title(titles[i], fontsize=9)
            if r == 2:
                ax.set_xlabel(f"mean {float(entropies[i].mean()):.3f}", fontsize=8)
                fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path, dpi=100)
