"""Spurious-correlation ("Clever Hans") check and its built-in demonstration.

A model keyed on an artefact (a watermark or source tag, Lapuschkin et al. 2019, "Unmasking
Clever Hans predictors") is exposed in two ways: (i) the share of its attribution mass that
falls on the artefact region is far above the region's share of the image, and (ii) its
predictions change when the region is removed (in-painted from its surroundings).

The demonstration injects a small corner tag into every training image of one class: a model
trained on it learns the tag, so on *tag-swapped* test images (tag moved to the other classes)
its accuracy collapses, while a model trained on clean data is unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trusttango.data.base import LabelledDataset, Splits
from trusttango.errors import require
from trusttango.evaluate import predict_proba
from trusttango.records import Record
from trusttango.torchutil import model_device

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, end exclusive)


def parse_region(text: str) -> Region:
    """``"x0,y0,x1,y1"`` -> a :data:`Region` (checked to be four integers)."""
    parts = text.split(",")
    require(
        len(parts) == 4 and all(p.strip().lstrip("-").isdigit() for p in parts),
        f"--region: expected x0,y0,x1,y1 integers, got {text!r}",
    )
    x0, y0, x1, y1 = (int(p) for p in parts)
    return x0, y0, x1, y1


def region_mask(image_shape: tuple[int, ...], region: Region) -> torch.Tensor:
    """Boolean ``(H, W)`` mask of ``region`` in images of shape ``(C, H, W)``; refuses regions outside."""
    require(len(image_shape) == 3, f"region: needs image data (C, H, W), got examples shaped {image_shape}")
    h, w = image_shape[-2:]
    x0, y0, x1, y1 = region
    require(
        0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h,
        f"region: {region} is not a non-empty box inside the {w}x{h} image (need 0 <= x0 < x1 <= {w}, "
        f"0 <= y0 < y1 <= {h})",
    )
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def inpaint(x: torch.Tensor, mask: torch.Tensor, iterations: int = 50) -> torch.Tensor:
    """Harmonic in-painting: fill masked pixels by repeated 4-neighbour averaging (Laplace's
    equation with the surrounding pixels as boundary values). ``mask`` is ``(H, W)`` or ``(N, H, W)``."""
    m = mask.to(x.device).expand(x.shape[0], *mask.shape[-2:])[:, None].float()
    kernel = torch.tensor([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]], device=x.device).view(1, 1, 3, 3)
    kernel = kernel.repeat(x.shape[1], 1, 1, 1)
    out = x * (1 - m) + (x * (1 - m)).sum((2, 3), keepdim=True) / (1 - m).sum((2, 3), keepdim=True).clamp_min(1) * m
    for _ in range(iterations):
        smooth = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1])
        out = x * (1 - m) + smooth * m
    return out


def attribution_share(
    model: nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor,
    target: torch.Tensor | int | None = None,
    method: type | None = None,
) -> torch.Tensor:
    """Per-example share of absolute attribution (summed over channels) inside ``mask``.

    ``method`` is an attribution class of :mod:`trusttango.explain` (``Method(model).attribute(x, target)``);
    default: vanilla gradients (Simonyan et al. 2014).
    """
    if method is None:
        from trusttango.explain.gradient import Saliency as method
    attr = method(model).attribute(x, target=target).detach().abs().sum(1)
    m = mask.to(attr.device).expand_as(attr).float()
    return ((attr * m).sum((1, 2)) / attr.sum((1, 2)).clamp_min(1e-12)).cpu()


@dataclass
class CleverHansReport(Record):
    """Result of :func:`clever_hans_check`.

    ``concentration`` = attribution share / area share (1: no preference for the region);
    ``flagged`` when it exceeds ``max_concentration`` or removing the region changes more than
    ``max_flip_rate`` of the predictions.
    """

    n: int
    area_share: float
    attribution_share: float
    concentration: float
    accuracy: float
    accuracy_removed: float
    flip_rate: float
    flagged: bool


def clever_hans_check(
    model: nn.Module,
    data: LabelledDataset,
    region: Region | None = None,
    masks: torch.Tensor | None = None,
    method: type | None = None,
    max_concentration: float = 3.0,
    max_flip_rate: float = 0.1,
    max_examples: int = 1000,
    batch_size: int = 256,
) -> CleverHansReport:
    """Attribution mass on a suspected artefact (``region`` box or per-example ``masks`` ``(N, H, W)``)
    and the prediction change when it is in-painted away."""
    require((region is None) != (masks is None), "clever_hans_check: give exactly one of region or masks")
    n = min(len(data), max_examples)
    data = data.subset(np.arange(n))
    if region is not None:
        masks = region_mask(data.input_shape, region).expand(n, *data.input_shape[-2:])
    hw = tuple(data.input_shape[-2:])
    require(
        masks.dim() == 3 and tuple(masks.shape[1:]) == hw and len(masks) >= n,
        f"masks: expected (N, H, W) with (H, W) = {hw} and N >= {n}, got {tuple(masks.shape)}",
    )
    masks = masks[:n].bool()
    require(bool(masks.any((1, 2)).all()), "masks: every example needs a non-empty mask")
    device = model_device(model)
    shares, removed = [], []
    for start in range(0, n, batch_size):
        x = data.x[start : start + batch_size].to(device)
        m = masks[start : start + batch_size]
        shares.append(attribution_share(model, x, m, None, method))
        removed.append(inpaint(x, m.to(device)).cpu())
    pred = predict_proba(model, data.x).argmax(1)
    pred_removed = predict_proba(model, torch.cat(removed)).argmax(1)
    share = float(torch.cat(shares).mean())
    area = float(masks.float().mean())
    concentration = share / max(area, 1e-12)
    flips = float((pred != pred_removed).float().mean())
    return CleverHansReport(
        n, area, share, concentration,
        float((pred == data.y).float().mean()), float((pred_removed == data.y).float().mean()), flips,
        concentration > max_concentration or flips > max_flip_rate,
    )  # fmt: skip


def add_tag(x: torch.Tensor, region: Region, value: float = 1.0) -> torch.Tensor:
    """Copy of images ``x`` with the ``region`` box set to ``value`` (a "source tag" / watermark)."""
    x = x.clone()
    x0, y0, x1, y1 = region
    x[..., y0:y1, x0:x1] = value
    return x


def _tag_rows(ds: LabelledDataset, rows: torch.Tensor, region: Region, name: str) -> LabelledDataset:
    x = ds.x.clone()
    x[rows] = add_tag(ds.x[rows], region)
    return LabelledDataset(x, ds.y.clone(), list(ds.class_names), ds.modality, name, dict(ds.extra))


@dataclass
class TaggedData:
    """The demonstration's data: tagged training splits and three test sets."""

    splits: Splits  # train/val: every image of ``tagged_class`` carries the tag; test: clean
    tagged_test: LabelledDataset  # tag on the ``tagged_class`` test images (same bias as training)
    swapped_test: LabelledDataset  # tag on every *other* class's test images, none on ``tagged_class``
    tagged_class: int
    region: Region


def tagged_data(splits: Splits, tagged_class: int = 0, region: Region = (0, 0, 4, 4)) -> TaggedData:
    """Inject a corner tag into every train/val image of ``tagged_class`` (the spurious cue)."""
    require(0 <= tagged_class < splits.train.num_classes, f"tagged_class: expected 0..{splits.train.num_classes - 1}")
    region_mask(splits.train.input_shape, region)
    train = _tag_rows(splits.train, splits.train.y == tagged_class, region, f"{splits.train.name}+tag")
    val = _tag_rows(splits.val, splits.val.y == tagged_class, region, f"{splits.val.name}+tag")
    test = splits.test
    return TaggedData(
        Splits(train, val, test),
        _tag_rows(test, test.y == tagged_class, region, f"{test.name}+tag"),
        _tag_rows(test, test.y != tagged_class, region, f"{test.name}+swapped"),
        tagged_class,
        region,
    )


def accuracies(model: nn.Module, data: TaggedData) -> dict[str, float]:
    """Accuracy on the clean, tagged and tag-swapped test sets."""
    out = {}
    for key, ds in (("clean", data.splits.test), ("tagged", data.tagged_test), ("swapped", data.swapped_test)):
        out[key] = float((predict_proba(model, ds).argmax(1) == ds.y).float().mean())
    return out
