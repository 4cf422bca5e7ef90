"""Video preprocessing of the unified model (Figure 1 of "Two to Trust", Amirian et al.):
frame selection, then every selected frame through the shared image preprocessing.

A clip is ``(C, T, H, W)`` in [0, 1]. The model selects ``frames`` frames ``stride`` apart
(:func:`frame_plan`, the seed's AutoCV rule: 8 frames, 4 for short clips, stride 4 for long
clips), centred at evaluation and at a random offset in training, and hands the backbone
``N * frames`` images; a time fusion (:mod:`trusttango.models.temporal`) folds them back.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from trusttango.errors import require
from trusttango.models.temporal import TIME_FUSIONS
from trusttango.models.unified import MODALITY_DEFAULTS, PREPROCESSORS, ImagePreprocess, ModelConfig, _augment


def frame_plan(length: int, frames: int = 0) -> tuple[int, int]:
    """``(frames, stride)`` for clips of ``length`` frames.

    ``frames=0`` chooses 8, or 4 when the clip is shorter than 8 frames (never more than
    ``length``); the stride spreads them over the clip, at most 4 apart.
    """
    require(length >= 1, f"clips need at least one frame, got length {length}")
    require(frames >= 0, f"frames must be >= 0 (0 = automatic), got {frames}")
    n = frames or (8 if length >= 8 else 4)
    n = min(n, length)
    return n, max(1, min(4, length // n))


def select_frames(x: torch.Tensor, frames: int, stride: int, random_offset: bool) -> torch.Tensor:
    """``(N, C, T, H, W)`` -> ``(N, C, frames, H, W)``: every ``stride``-th frame of a window
    centred in the clip, or at a random offset (one per batch) when ``random_offset``."""
    span = (frames - 1) * stride + 1
    slack = x.shape[2] - span
    start = int(torch.randint(0, slack + 1, ()).item()) if random_offset else slack // 2
    return x[:, :, start : start + span : stride]


class VideoPreprocess(nn.Module):
    """Clips ``(N, C, T, H, W)`` -> normalised frames ``(N * frames, C', S, S)``.

    Augmentation acts on whole clips (the same shift for every frame, a flip per clip), so
    motion is preserved.
    """

    def __init__(self, cfg: ModelConfig, rgb: bool) -> None:
        super().__init__()
        require(
            len(cfg.input_shape) == 4,
            f"video models take clips shaped (channels, frames, height, width), got {tuple(cfg.input_shape)}",
        )
        require(
            cfg.fusion in TIME_FUSIONS,
            f"video models need a time fusion to fold frames back into clips: fusion one of {TIME_FUSIONS}, "
            f"got {cfg.fusion!r}",
        )
        self.frames, self.stride = frame_plan(int(cfg.input_shape[1]), cfg.frames)
        self.augment = cfg.augment
        self.image = ImagePreprocess(replace(cfg, augment="none"), rgb)
        self.out_channels = self.image.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clips = select_frames(x, self.frames, self.stride, self.training)
        n, c, t, h, w = clips.shape
        if self.training and self.augment != "none":
            clips = _augment(clips.reshape(n, c * t, h, w), self.augment).view(n, c, t, h, w)
        return self.image(clips.transpose(1, 2).reshape(n * t, c, h, w))


PREPROCESSORS["video"] = VideoPreprocess
MODALITY_DEFAULTS["video"] = {"fusion": "conv3d"}
