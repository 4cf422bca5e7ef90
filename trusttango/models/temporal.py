"""Information fusion over time, the stage between backbone and pooling in Figure 1 of
"Two to Trust" (Amirian et al.): 1D convolution over the time axis of a spectrogram's
feature map (audio), 3D convolution over the per-frame feature maps of a clip (video), and
attention over time steps (either).

Each fusion takes the backbone output ``(N', C, h, w)`` and returns a map ``(N, C, a, b)``
that the global average pool of :class:`~trusttango.models.unified.UnifiedModel` reduces
to ``(N, C)``. The channel count is kept, so the bottleneck is unchanged. Time steps are
the selected frames for video (the backbone saw ``N * frames`` images) and the columns of
the feature map otherwise (a spectrogram's time axis is its width).
"""

from __future__ import annotations

import torch
from torch import nn

from trusttango.models.layers import activation
from trusttango.models.unified import FUSIONS, ModelConfig


def clip_frames(cfg: ModelConfig) -> int:
    """Frames per clip the video preprocessing selects (1 for other modalities)."""
    if cfg.modality != "video":
        return 1
    from trusttango.models.video import frame_plan

    return frame_plan(int(cfg.input_shape[1]), cfg.frames)[0]


def time_steps(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Backbone maps ``(N', C, h, w)`` -> sequences ``(N, T, C, h', w')``.

    With ``frames > 1`` consecutive rows are the frames of one clip; otherwise the map's
    width is time (``(N, w, C, h, 1)``).
    """
    if frames > 1:
        return x.view(-1, frames, *x.shape[1:])
    return x.permute(0, 3, 1, 2).unsqueeze(-1)


class TemporalConv1d(nn.Module):
    """Spatial mean per time step, then a residual 1D convolution (kernel 3) over time.

    The audio fusion of Figure 1; output ``(N, C, T, 1)``.
    """

    def __init__(self, cfg: ModelConfig, channels: int) -> None:
        super().__init__()
        self.frames = clip_frames(cfg)
        self.conv = nn.Conv1d(channels, channels, 3, padding=1)
        self.act = activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = time_steps(x, self.frames).mean((3, 4)).transpose(1, 2)  # (N, C, T)
        return (seq + self.act(self.conv(seq))).unsqueeze(-1)


class TemporalConv3d(nn.Module):
    """Residual 3D convolution over (time, height, width) of the per-step feature maps.

    The seed's AutoCV video head uses Conv3D with 8 filters of 7x3x3 on per-frame features;
    here the filters keep the channel count (so pooling and bottleneck are shared with the
    other fusions) and the temporal extent is cut to the number of frames for short clips
    (7, or the largest odd number <= frames). Output ``(N, C, T * h, w)``.
    """

    def __init__(self, cfg: ModelConfig, channels: int) -> None:
        super().__init__()
        self.frames = clip_frames(cfg)
        steps = self.frames if self.frames > 1 else 7
        kt = min(7, steps - (1 - steps % 2))
        self.conv = nn.Conv3d(channels, channels, (kt, 3, 3), padding="same")
        self.act = activation(cfg.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        vol = time_steps(x, self.frames).transpose(1, 2)  # (N, C, T, h, w)
        return (vol + self.act(self.conv(vol))).flatten(2, 3)


class TemporalAttention(nn.Module):
    """Attention pooling over time steps: ``a = softmax_t(v^T tanh(W s_t))``, ``sum_t a_t s_t``.

    ``s_t`` is the spatially averaged feature vector of step ``t`` (additive attention,
    Bahdanau et al. 2015, used as a pooling operator). The last weights ``(N, T)`` are kept
    in :attr:`weights` for inspection. Output ``(N, C, 1, 1)``.
    """

    def __init__(self, cfg: ModelConfig, channels: int) -> None:
        super().__init__()
        self.frames = clip_frames(cfg)
        self.score = nn.Sequential(nn.Linear(channels, channels), nn.Tanh(), nn.Linear(channels, 1))
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = time_steps(x, self.frames).mean((3, 4))  # (N, T, C)
        weights = torch.softmax(self.score(seq).squeeze(-1), dim=1)
        self.weights = weights.detach()
        return (weights.unsqueeze(-1) * seq).sum(1)[:, :, None, None]


FUSIONS.update({"conv1d": TemporalConv1d, "conv3d": TemporalConv3d, "attention": TemporalAttention})
TIME_FUSIONS: tuple[str, ...] = ("conv1d", "conv3d", "attention")
