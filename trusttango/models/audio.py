"""Audio preprocessing of the unified model (Figure 1 of "Two to Trust", Amirian et al.):
waveform -> log-mel spectrogram -> an image for the shared backbone.

The model takes raw waveforms ``(N, 1, L)`` at ``ModelConfig.sample_rate`` and computes the
spectrogram itself (differentiable torch ops), so attacks and explanations act on samples.
Spectrogram: 25 ms Hann windows, 10 ms hop, power STFT, ``n_mels`` triangular mel filters
(Slaney, from librosa), ``log(mel + 1e-6)``, standardised per example, resized to
``input_size`` x ``input_size`` (frequency x time) as the seed's AutoCV pipeline does.
"""

from __future__ import annotations

import librosa
import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import require
from trusttango.models.unified import MODALITY_DEFAULTS, PREPROCESSORS, ModelConfig, _augment


def stft_sizes(sample_rate: int) -> tuple[int, int, int]:
    """``(n_fft, win_length, hop_length)`` for 25 ms windows and a 10 ms hop."""
    win = max(16, int(round(0.025 * sample_rate)))
    return 1 << (win - 1).bit_length(), win, max(1, sample_rate // 100)


class LogMel(nn.Module):
    """Waveforms ``(N, L)`` -> log-mel spectrograms ``(N, n_mels, frames)``."""

    def __init__(self, sample_rate: int, n_mels: int) -> None:
        super().__init__()
        self.n_fft, self.win, self.hop = stft_sizes(sample_rate)
        bank = librosa.filters.mel(sr=sample_rate, n_fft=self.n_fft, n_mels=n_mels)
        self.register_buffer("bank", torch.from_numpy(bank).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, self.win, window=self.window, center=True, return_complex=True)
        power = spec.real**2 + spec.imag**2
        return torch.log(self.bank @ power + 1e-6)


class AudioPreprocess(nn.Module):
    """Mono waveform ``(N, 1, L)`` -> normalised log-mel image ``(N, 1 or 3, S, S)``.

    ``cfg.mean`` / ``cfg.std`` (waveform statistics) are not used: each spectrogram is
    standardised on its own. Augmentation (any policy but ``none``) shifts the spectrogram
    in time and frequency; flips are never applied to sound.
    """

    def __init__(self, cfg: ModelConfig, rgb: bool) -> None:
        super().__init__()
        require(
            len(cfg.input_shape) == 2 and cfg.input_shape[0] == 1,
            f"audio models take mono waveforms shaped (1, samples), got input_shape {tuple(cfg.input_shape)}",
        )
        require(cfg.sample_rate >= 1000, f"sample_rate must be >= 1000 Hz, got {cfg.sample_rate}")
        require(cfg.n_mels >= 8, f"n_mels must be >= 8, got {cfg.n_mels}")
        self.logmel = LogMel(cfg.sample_rate, cfg.n_mels)
        self.size = cfg.input_size
        self.augment = cfg.augment
        self.out_channels = 3 if rgb else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.logmel(x[:, 0]).unsqueeze(1)
        mean = spec.mean((1, 2, 3), keepdim=True)
        std = spec.std((1, 2, 3), keepdim=True)
        image = (spec - mean) / (std + 1e-5)
        image = F.interpolate(image, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.training and self.augment != "none":
            image = _augment(image, "shift")
        return image.expand(-1, self.out_channels, -1, -1)


PREPROCESSORS["audio"] = AudioPreprocess
MODALITY_DEFAULTS["audio"] = {"fusion": "conv1d", "input_size": 64}
