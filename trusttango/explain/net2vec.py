"""Net2Vec (Fong & Vedaldi 2018): concept embeddings over the filters of a layer.

Each filter's response ``A_k(x)`` is upsampled to the input size and binarised at its top
``quantile`` (0.5 %, as in Network Dissection) over the training images. A concept is then
probed by a non-negative weight vector ``w`` (the concept's *embedding*):

- segmentation (sec. 3.2): ``M(x; w) = sigmoid(sum_k w_k I(A_k(x) > T_k) + b)``, per pixel,
  scored by the set IoU of ``M > 0.5`` with the concept masks over held-out images;
- classification (sec. 3.3): ``f(x; w) = sigmoid(sum_k w_k avgpool(I(A_k(x) > T_k)) + b)``,
  scored by the average precision of concept presence on held-out images.

Both are trained with the class-balanced binary cross-entropy (weight ``alpha = 1 - mean
positive rate`` on positives, ``1 - alpha`` on negatives) and compared with the best single
filter (chosen on the training split, scored on the held-out split).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import check_inputs
from trusttango.explain.concepts import layer_activations


@dataclass
class Net2VecResult:
    """A concept's embedding and its held-out score, next to the best single filter's."""

    embedding: np.ndarray  # (K,) non-negative weight per filter
    bias: float
    score: float  # held-out set IoU (segmentation) or average precision (classification)
    best_filter: int
    best_filter_score: float
    metric: str

    def similarity(self, other: Net2VecResult) -> float:
        """Cosine similarity of two concept embeddings of the same layer (sec. 4.3)."""
        a, b = self.embedding, other.embedding
        return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _upsample(acts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(acts, size=size, mode="bilinear", align_corners=False)


def filter_thresholds(acts: torch.Tensor, size: tuple[int, int], quantile: float = 0.005) -> torch.Tensor:
    """``T_k``: the top-``quantile`` value of each filter's upsampled response over all images and pixels."""
    out = []
    for k in range(acts.shape[1]):
        values = _upsample(acts[:, k : k + 1], size).flatten()
        rank = max(1, int(round((1 - quantile) * values.numel())))
        out.append(values.kthvalue(rank).values)
    return torch.stack(out)


def binary_maps(acts: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int], chunk: int = 64) -> torch.Tensor:
    """``I(A_k(x) > T_k)`` at the input resolution, boolean ``(N, K, H, W)``."""
    t = thresholds.view(1, -1, 1, 1)
    return torch.cat([_upsample(acts[i : i + chunk], size) > t for i in range(0, len(acts), chunk)])


def _logits(features: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (features.dim() - 2)
    return (features.float() * w.view(shape)).sum(1) + b


def fit_probe(
    features: torch.Tensor,
    targets: torch.Tensor,
    epochs: int = 30,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative ``w`` and bias ``b`` of ``sigmoid(sum_k w_k features_k + b)`` (projected Adam, balanced BCE).

    ``features``: ``(N, K, ...)``; ``targets``: boolean ``(N, ...)``.
    """
    gen = torch.Generator().manual_seed(seed)
    y = targets.float()
    alpha = 1.0 - float(y.mean())
    w = torch.full((features.shape[1],), 0.01, requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    for _ in range(epochs):
        for idx in torch.randperm(len(features), generator=gen).split(batch_size):
            yb = y[idx]
            weight = torch.where(yb > 0, alpha, 1.0 - alpha)
            loss = F.binary_cross_entropy_with_logits(_logits(features[idx], w, b), yb, weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                w.clamp_(min=0.0)
    return w.detach(), b.detach()


def set_iou(pred: torch.Tensor, masks: torch.Tensor) -> float:
    """Set IoU over a dataset: ``sum |pred & mask| / sum |pred | mask|`` (Network Dissection)."""
    union = (pred | masks).sum()
    return float((pred & masks).sum() / union.clamp(min=1))


def _split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(val_fraction * n)))
    require(n - n_val >= 2, f"inputs: expected at least 3 images to split train / held-out, got {n}")
    return perm[n_val:], perm[:n_val]


def _prepare(model: nn.Module, layer, x: torch.Tensor, quantile: float, val_fraction: float, seed: int):
    x = check_inputs(x, images=True)
    require(0 < quantile < 1, f"quantile: expected a fraction in (0, 1), got {quantile}")
    require(0 < val_fraction < 1, f"val_fraction: expected a fraction in (0, 1), got {val_fraction}")
    acts = layer_activations(model, layer, x, flatten=False).float().cpu()
    require(acts.dim() == 4, f"layer: expected filter responses shaped (N, K, h, w), got {tuple(acts.shape)}")
    size = tuple(x.shape[2:])
    train, val = _split(len(x), val_fraction, seed)
    thresholds = filter_thresholds(acts[train], size, quantile)
    return binary_maps(acts, thresholds, size), train, val


def net2vec(
    model: nn.Module,
    layer: str | nn.Module,
    x: torch.Tensor,
    concept: torch.Tensor,
    quantile: float = 0.005,
    val_fraction: float = 1 / 3,
    epochs: int | None = None,
    seed: int = 0,
) -> Net2VecResult:
    """Probe ``layer`` of ``model`` for a concept over the images ``x``; the concept's shape picks
    the probe: boolean masks ``(N, H, W)`` at the input resolution -> segmentation, scored by set
    IoU (sec. 3.2); boolean presence ``(N,)`` -> classification, scored by average precision
    (sec. 3.3). ``epochs`` of the probe default to 30 (segmentation) and 100 (classification).
    ``val_fraction`` of the images are held out for the scores."""
    n, size = x.shape[0], tuple(x.shape[2:])
    require(
        concept.shape in ((n,), (n, *size)),
        f"concept: expected boolean presence ({n},) or masks (N, H, W) = {(n, *size)}, got {tuple(concept.shape)}",
    )
    concept = concept.bool().cpu()
    maps, train, val = _prepare(model, layer, x, quantile, val_fraction, seed)
    if concept.dim() == 1:
        return _classification(maps, concept, train, val, quantile, epochs or 100, seed)
    return _segmentation(maps, concept, train, val, epochs or 30, seed)


def _segmentation(maps, masks: torch.Tensor, train, val, epochs: int, seed: int) -> Net2VecResult:
    require(bool(masks[train].any()), "concept: the training split holds no concept pixel")
    w, b = fit_probe(maps[train], masks[train], epochs=epochs, seed=seed)
    score = set_iou(_logits(maps[val], w, b) > 0, masks[val])
    single = [set_iou(maps[train, k], masks[train]) for k in range(maps.shape[1])]
    best = int(np.argmax(single))
    return Net2VecResult(w.numpy(), float(b), score, best, set_iou(maps[val, best], masks[val]), "iou")


def _classification(maps, present: torch.Tensor, train, val, quantile: float, epochs: int, seed: int) -> Net2VecResult:
    from sklearn.metrics import average_precision_score

    require(
        0 < int(present[train].sum()) < len(train), "concept: the training split needs positive and negative images"
    )
    pooled = maps.float().mean((2, 3)) / quantile  # about 1 on average: keeps the probe well conditioned
    w, b = fit_probe(pooled[train], present[train], epochs=epochs, seed=seed)
    ap = lambda scores, idx: float(average_precision_score(present[idx].numpy(), scores.numpy()))  # noqa: E731
    single = [ap(pooled[train, k], train) for k in range(pooled.shape[1])]
    best = int(np.argmax(single))
    return Net2VecResult(
        w.numpy(), float(b), ap(_logits(pooled[val], w, b), val), best, ap(pooled[val, best], val), "average_precision"
    )
