"""Feature-response zoom-in classifier (Amirian et al. 2018, "Two to Trust", Fig. 3; Guan et al. 2018, AG-CNN).

A global model classifies the full image at low resolution (its preprocessing downsamples);
its attention map (Grad-CAM, or guided backprop smoothed over ``smooth`` pixels) is min-max
normalised and thresholded at ``tau`` (0.7 in AG-CNN, sec. 3.2); the bounding box of the
largest connected region is cropped from the *high-resolution* input, resized to
``crop_size`` and classified by a local model; a fusion head (a linear layer on both models'
logits, AG-CNN's fusion branch) or the average of both softmax outputs gives the answer.

Trained in stages with the one training loop (:func:`trusttango.train.fit`): global model,
then the local model on the global model's crops, then the fusion head (:func:`train_zoom`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file
from scipy import ndimage
from torch import nn

from trusttango.data.base import LabelledDataset, Splits
from trusttango.errors import require
from trusttango.models.io import (
    CONFIG,
    ModelDocument,
    SavedModel,
    cpu_tensors,
    load_model,
    load_state,
    read_config,
    save_model,
    versions,
)
from trusttango.models.unified import build_model, config_for
from trusttango.schema import read
from trusttango.torchutil import model_device
from trusttango.train import TrainConfig, fit

ATTENTIONS = ("gradcam", "guided")
FUSION_MODES = ("head", "average")


def largest_region_boxes(maps: torch.Tensor, tau: float = 0.7, min_side: int = 1) -> torch.Tensor:
    """Boxes ``(N, 4)`` as ``x0, y0, x1, y1`` (pixel edges) around the largest 4-connected region
    of ``map >= tau`` after per-map min-max normalisation, grown to at least ``min_side``
    around its centre and kept inside the map; a flat map gives the whole image."""
    require(maps.ndim == 3, f"maps: expected (N, H, W), got shape {tuple(maps.shape)}")
    require(0 < tau < 1, f"tau must lie in (0, 1), got {tau}")
    n, h, w = maps.shape
    flat = maps.detach().float().flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    norm = ((flat - lo) / (hi - lo).clamp_min(1e-12)).view(n, h, w).cpu().numpy()
    boxes = []
    for m in norm:
        labels, count = ndimage.label(m >= tau)
        if count == 0:
            boxes.append((0.0, 0.0, float(w), float(h)))
            continue
        biggest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(m), labels, range(1, count + 1))))
        ys, xs = ndimage.find_objects(labels)[biggest - 1]
        boxes.append(_grow((xs.start, ys.start, xs.stop, ys.stop), min_side, w, h))
    return torch.tensor(boxes, dtype=torch.float32)


def _grow(box: tuple[int, int, int, int], min_side: int, w: int, h: int) -> tuple[float, float, float, float]:
    """Enlarge ``box`` symmetrically to ``min_side`` per axis, then shift it inside ``w x h``."""
    out = []
    for lo, hi, limit in ((box[0], box[2], w), (box[1], box[3], h)):
        side = min(max(hi - lo, min_side), limit)
        start = min(max((lo + hi - side) // 2, 0), limit - side)
        out.append((float(start), float(start + side)))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def crop(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``boxes`` (N, 4: x0, y0, x1, y1) from ``x`` (N, C, H, W) and resize to ``size x size``
    (RoIAlign, adaptive sampling: a box of exactly ``size`` pixels is copied unchanged)."""
    rois = torch.cat([torch.arange(len(x), dtype=x.dtype, device=x.device)[:, None], boxes.to(x)], 1)
    from torchvision.ops import roi_align  # imported on use: torchvision costs a CLI command seconds

    return roi_align(x, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


class ZoomClassifier(nn.Module):
    """``global_model`` on the full input, ``local_model`` on the attended crop, fused.

    ``attention``: ``gradcam`` (last conv layer of the global model) or ``guided`` (guided
    backprop, max ``|R|`` over channels, box-smoothed over ``smooth`` pixels). ``fusion``:
    ``head`` (``nn.Linear(2K, K)`` on both logits, initialised to their mean) or ``average``.
    """

    def __init__(
        self,
        global_model: nn.Module,
        local_model: nn.Module,
        num_classes: int,
        crop_size: int,
        tau: float = 0.7,
        attention: str = "gradcam",
        fusion: str = "head",
        smooth: int = 5,
    ) -> None:
        super().__init__()
        require(attention in ATTENTIONS, f"attention must be one of {ATTENTIONS}, got {attention!r}")
        require(fusion in FUSION_MODES, f"fusion must be one of {FUSION_MODES}, got {fusion!r}")
        require(0 < tau < 1, f"tau must lie in (0, 1), got {tau}")
        self.global_model, self.local_model = global_model, local_model
        self.crop_size, self.tau, self.attention, self.fusion, self.smooth = crop_size, tau, attention, fusion, smooth
        self.head = nn.Linear(2 * num_classes, num_classes)
        with torch.no_grad():
            self.head.weight.copy_(torch.cat([torch.eye(num_classes), torch.eye(num_classes)], 1) / 2)
            self.head.bias.zero_()

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The global model's attention ``(N, H, W)`` on the input grid."""
        from trusttango.explain import GradCAM, GuidedBackprop

        if self.attention == "gradcam":
            return GradCAM(self.global_model).attribute(x)[:, 0]
        response = GuidedBackprop(self.global_model).attribute(x).abs().amax(1, keepdim=True)
        return F.avg_pool2d(response, self.smooth, stride=1, padding=self.smooth // 2, count_include_pad=False)[:, 0]

    def boxes(self, x: torch.Tensor) -> torch.Tensor:
        """Crop boxes ``(N, 4)`` (x0, y0, x1, y1) from the thresholded attention map."""
        return largest_region_boxes(self.attention_map(x), self.tau, self.crop_size)

    def crops(self, x: torch.Tensor) -> torch.Tensor:
        """The attended crops ``(N, C, crop_size, crop_size)`` of ``x``."""
        return crop(x, self.boxes(x), self.crop_size).detach()

    def branch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Both branches' logits side by side ``(N, 2K)``: global, then local."""
        with torch.no_grad():
            g = self.global_model(x)
        c = self.crops(x)
        with torch.no_grad():
            return torch.cat([g, self.local_model(c)], 1)

    def fuse(self, logits: torch.Tensor) -> torch.Tensor:
        """Fused logits from :meth:`branch_logits` (``average``: log of the mean softmax)."""
        if self.fusion == "head":
            return self.head(logits)
        k = logits.shape[1] // 2
        return ((logits[:, :k].softmax(1) + logits[:, k:].softmax(1)) / 2).log()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.branch_logits(x))


FORMAT = "trusttango-zoom/1"
HEAD_FILE = "head.safetensors"


class ZoomSettings(BaseModel):
    """The ``zoom`` field of a zoom-in classifier's ``config.json``."""

    model_config = ConfigDict(strict=True, extra="forbid")

    crop_size: int
    tau: float
    attention: str
    fusion: str
    smooth: int


class ZoomDocument(ModelDocument):
    """The schema of a zoom-in classifier's ``config.json``: a model document (the global
    model's configuration and class names) with its :class:`ZoomSettings`."""

    zoom: ZoomSettings


def save_zoom(zoom: ZoomClassifier, directory: str | Path, class_names: list[str], meta: dict | None = None) -> Path:
    """Write a model directory :func:`trusttango.models.load_model` reads: ``global/`` and
    ``local/`` model directories, the fusion head, and ``config.json`` with ``format``
    :data:`FORMAT`, the global model's configuration (the input the classifier takes), the
    class names and the zoom settings."""
    directory = Path(directory)
    for name in ("global", "local"):
        model = getattr(zoom, f"{name}_model")
        save_model(SavedModel(model, model.config, class_names, meta or {}), directory / name)
    save_file(cpu_tensors(zoom.head.state_dict()), directory / HEAD_FILE)
    settings = {"crop_size": zoom.crop_size, "tau": zoom.tau, "attention": zoom.attention, "fusion": zoom.fusion}
    document = {
        "format": FORMAT,
        "model": zoom.global_model.config.to_dict(),
        "class_names": list(class_names),
        "zoom": {**settings, "smooth": zoom.smooth},
        "versions": versions(),
        **(meta or {}),
    }
    (directory / CONFIG).write_text(json.dumps(document, indent=2, default=str))
    return directory


def load_zoom(directory: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """Read a classifier written by :func:`save_zoom` as a :class:`~trusttango.models.SavedModel`
    (the :class:`ZoomClassifier` in eval mode; ``config`` the global model's). Declared as the
    loader of :data:`FORMAT` in ``pyproject.toml`` (entry-point group
    ``trusttango.model_formats``), so :func:`trusttango.models.load_model` calls it."""
    directory = Path(directory)
    read_config(directory, (FORMAT,))
    doc = read(ZoomDocument, directory / CONFIG)
    g, loc = load_model(directory / "global", device), load_model(directory / "local", device)
    zoom = ZoomClassifier(g.model, loc.model, g.config.num_classes, **doc.zoom.model_dump())
    load_state(zoom.head, load_file(directory / HEAD_FILE), directory / HEAD_FILE, "the zoom head")
    meta = {"zoom": doc.zoom.model_dump(), **(doc.model_extra or {})}
    return SavedModel(zoom.to(device).eval(), g.config, doc.class_names, meta)


def _map(data: LabelledDataset, fn, batch_size: int = 256, modality: str | None = None) -> LabelledDataset:
    """``data`` with ``x`` replaced by ``fn`` applied batch-wise."""
    x = torch.cat([fn(b).cpu() for b in data.x.split(batch_size)])
    return replace(data, x=x, modality=modality or data.modality)


def train_zoom(
    splits: Splits,
    config: TrainConfig | None = None,
    low_size: int = 28,
    crop_size: int = 28,
    tau: float = 0.7,
    attention: str = "gradcam",
    fusion: str = "head",
    **model_options: object,
) -> ZoomClassifier:
    """Train a :class:`ZoomClassifier` in three stages, each with :func:`~trusttango.train.fit`:
    the global model at ``low_size``, the local model on the global model's ``crop_size`` crops,
    then (``fusion="head"``) the fusion head on both models' logits. Returns it in eval mode."""
    cfg = config or TrainConfig()
    train = splits.train
    require(train.modality == "image" and train.x.ndim == 4, "train_zoom: needs image data (N, C, H, W)")
    require(low_size <= train.x.shape[-1], f"low_size {low_size} must not exceed the image side {train.x.shape[-1]}")
    k = train.num_classes
    global_model = build_model(config_for(train.input_shape, k, input_size=low_size, **model_options), seed=cfg.seed)
    fit(global_model, train, splits.val, cfg)
    global_model.eval()
    shape = (train.input_shape[0], crop_size, crop_size)
    local_model = build_model(config_for(shape, k, **model_options), seed=cfg.seed + 1)
    device = model_device(global_model)
    zoom = ZoomClassifier(global_model, local_model, k, crop_size, tau, attention, fusion).to(device)
    crops = {name: _map(getattr(splits, name), lambda b: zoom.crops(b.to(device))) for name in ("train", "val")}
    fit(local_model, crops["train"], crops["val"], cfg)
    local_model.eval()
    if fusion == "head":
        logits = {
            name: _map(getattr(splits, name), lambda b: zoom.branch_logits(b.to(device)), modality="tabular")
            for name in ("train", "val")
        }
        fit(zoom.head, logits["train"], logits["val"], replace(cfg, epochs=max(1, cfg.epochs // 2)))
    return zoom.eval()


def place_on_canvas(data: LabelledDataset, side: int, noise: float = 0.3, seed: int = 0) -> LabelledDataset:
    """Each image pasted at a uniformly random position on a ``side x side`` canvas of uniform
    noise in ``[0, noise]`` (pixel-wise maximum): small objects in clutter, where detail matters.
    The positions go to ``extra['top']`` / ``extra['left']``."""
    n, c, h, w = data.x.shape
    require(side >= max(h, w), f"side must be >= the image side {max(h, w)}, got {side}")
    require(0 <= noise <= 1, f"noise must lie in [0, 1], got {noise}")
    gen = torch.Generator().manual_seed(seed)
    canvas = torch.rand(n, c, side, side, generator=gen) * noise
    top = torch.randint(0, side - h + 1, (n,), generator=gen)
    left = torch.randint(0, side - w + 1, (n,), generator=gen)
    rows = top[:, None] + torch.arange(h)[None, :]  # (n, h)
    cols = left[:, None] + torch.arange(w)[None, :]  # (n, w)
    idx = torch.arange(n)[:, None, None]
    for ch in range(c):
        patch = canvas[:, ch][idx, rows[:, :, None], cols[:, None, :]]
        canvas[:, ch][idx, rows[:, :, None], cols[:, None, :]] = torch.maximum(patch, data.x[:, ch])
    extra = {**data.extra, "top": top.numpy(), "left": left.numpy()}
    return replace(data, x=canvas, extra=extra, name=f"{data.name}/canvas{side}")


def train_and_save_zoom(
    splits: Splits, config: TrainConfig, directory: str | Path, canvas: int = 0, **model_options: object
) -> dict[str, float]:
    """``trusttango train --zoom``: optionally paste the images on a ``canvas``-side noisy canvas
    (the demo task), train with :func:`train_zoom` (``input_size`` = the low resolution, default a
    third of the canvas or half the image side; crops of the same side), save, and return the
    test accuracies of the zoom-in classifier and of its global model alone."""
    from trusttango.evaluate import evaluate
    from trusttango.workflow import channel_stats

    if canvas:
        splits = Splits(
            *(place_on_canvas(ds, canvas, seed=i) for i, ds in enumerate((splits.train, splits.val, splits.test)))
        )
    side = splits.train.x.shape[-1]
    low = int(model_options.pop("input_size", side // 3 if canvas else max(1, side // 2)))
    mean, std = channel_stats(splits.train)
    zoom = train_zoom(splits, config, low_size=low, crop_size=low, mean=mean, std=std, **model_options)
    metrics = {
        "test_accuracy": evaluate(zoom, splits.test).accuracy,
        "global_test_accuracy": evaluate(zoom.global_model, splits.test).accuracy,
    }
    save_zoom(zoom.cpu(), directory, splits.class_names, {"metrics": metrics, "canvas": canvas})
    return metrics
