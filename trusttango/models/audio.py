"""Audio preprocessing of the unified model (Figure 1 of "Two to Trust", Amirian et al.):
waveform -> log-mel spectrogram -> an image for the shared backbone.

The model takes raw waveforms ``(N, 1, L)`` at ``ModelConfig.sample_rate`` and computes the
spectrogram itself (differentiable torch ops), so attacks and explanations act on samples.
Spectrogram: 25 ms Hann windows, 10 ms hop, power STFT, ``n_mels`` triangular mel filters
(Slaney, from librosa), ``log(mel + 1e-6)``, standardised per example, resized to
``input_size`` x ``input_size`` (frequency x time) as the seed's AutoCV pipeline does.

Augmentation policy ``speech`` (training only), so that a model trained on clean synthetic
speech transfers to real, telephone-quality recordings: on the waveform, random gain, speed
perturbation (resampling by 0.9-1.1, which changes tempo and pitch together; Ko et al.,
"Audio augmentation for speech recognition", Interspeech 2015) with a random time shift,
band-limiting to the telephone band 300-3400 Hz, and additive white noise at 15-40 dB SNR;
on the spectrogram, one frequency and one time mask per example (SpecAugment; Park et al.,
Interspeech 2019).
"""

from __future__ import annotations

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
        import librosa  # imported where used: loading it costs seconds

        super().__init__()
        self.n_fft, self.win, self.hop = stft_sizes(sample_rate)
        bank = librosa.filters.mel(sr=sample_rate, n_fft=self.n_fft, n_mels=n_mels)
        self.register_buffer("bank", torch.from_numpy(bank).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.win), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, self.win, window=self.window, center=True, return_complex=True)
        power = spec.real**2 + spec.imag**2
        return torch.log(self.bank @ power + 1e-6)


TELEPHONE_BAND = (300.0, 3400.0)  # Hz


def _uniform(n: int, low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    return torch.empty(n, device=like.device, dtype=like.dtype).uniform_(low, high)


def speed_shift(wave: torch.Tensor, max_change: float = 0.1, max_shift: float = 0.1) -> torch.Tensor:
    """Resample each waveform ``(N, L)`` about its centre by a factor in ``1 +- max_change`` and
    shift it by up to ``max_shift`` of its length (linear interpolation, zeros outside)."""
    n, length = wave.shape
    rate = _uniform(n, 1 - max_change, 1 + max_change, wave)
    shift = _uniform(n, -max_shift, max_shift, wave) * 2
    pos = torch.linspace(-1, 1, length, device=wave.device, dtype=wave.dtype)
    x = pos[None] * rate[:, None] + shift[:, None]
    grid = torch.stack([x, torch.zeros_like(x)], -1)[:, None]  # (N, 1, L, 2)
    return F.grid_sample(wave[:, None, None], grid, align_corners=True, padding_mode="zeros")[:, 0, 0]


def band_limit(wave: torch.Tensor, sample_rate: int, band: tuple[float, float] = TELEPHONE_BAND) -> torch.Tensor:
    """Zero the spectrum of each waveform ``(N, L)`` outside ``band`` (Hz): a telephone channel."""
    spectrum = torch.fft.rfft(wave)
    freqs = torch.fft.rfftfreq(wave.shape[-1], 1 / sample_rate).to(wave.device)
    keep = (freqs >= band[0]) & (freqs <= band[1])
    return torch.fft.irfft(spectrum * keep, n=wave.shape[-1])


def add_noise(wave: torch.Tensor, snr_db: tuple[float, float] = (15.0, 40.0)) -> torch.Tensor:
    """White Gaussian noise at a per-example signal-to-noise ratio drawn from ``snr_db``."""
    power = wave.pow(2).mean(-1, keepdim=True).clamp_min(1e-10)
    snr = 10 ** (_uniform(len(wave), *snr_db, wave)[:, None] / 10)
    return wave + torch.randn_like(wave) * (power / snr).sqrt()


def augment_speech(wave: torch.Tensor, sample_rate: int, p: float = 0.5) -> torch.Tensor:
    """The waveform part of policy ``speech`` on ``(N, L)``: gain in [0.25, 2], speed and shift,
    then, each with probability ``p``, the telephone band and noise."""
    n = len(wave)
    wave = speed_shift(wave * _uniform(n, 0.25, 2.0, wave)[:, None])
    chosen = (torch.rand(n, 1, device=wave.device) < p).to(wave.dtype)
    wave = chosen * band_limit(wave, sample_rate) + (1 - chosen) * wave
    chosen = (torch.rand(n, 1, device=wave.device) < p).to(wave.dtype)
    return chosen * add_noise(wave) + (1 - chosen) * wave


def spec_mask(image: torch.Tensor, max_fraction: float = 0.1) -> torch.Tensor:
    """SpecAugment masks on ``(N, C, F, T)``: per example one band of up to ``max_fraction`` of
    the frequencies and one of the time frames set to 0 (the mean of a standardised spectrogram)."""
    n, _, freq, time = image.shape
    out = image
    for axis, size in ((2, freq), (3, time)):
        width = (torch.rand(n, device=image.device) * max_fraction * size).long()
        start = (torch.rand(n, device=image.device) * (size - width + 1)).long()
        index = torch.arange(size, device=image.device)[None]
        masked = (index >= start[:, None]) & (index < (start + width)[:, None])  # (N, size)
        shape = (n, 1, size, 1) if axis == 2 else (n, 1, 1, size)
        out = out.masked_fill(masked.view(shape), 0.0)
    return out


class AudioPreprocess(nn.Module):
    """Mono waveform ``(N, 1, L)`` -> normalised log-mel image ``(N, 1 or 3, S, S)``.

    ``cfg.mean`` / ``cfg.std`` (waveform statistics) are not used: each spectrogram is
    standardised on its own. Augmentation in training: ``speech`` (see the module docstring);
    any other policy but ``none`` shifts the spectrogram in time and frequency; flips are
    never applied to sound.
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
        self.sample_rate = cfg.sample_rate
        self.out_channels = 3 if rgb else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        speech = self.training and self.augment == "speech"
        wave = augment_speech(x[:, 0], self.sample_rate) if speech else x[:, 0]
        spec = self.logmel(wave).unsqueeze(1)
        mean = spec.mean((1, 2, 3), keepdim=True)
        std = spec.std((1, 2, 3), keepdim=True)
        image = (spec - mean) / (std + 1e-5)
        image = F.interpolate(image, size=(self.size, self.size), mode="bilinear", align_corners=False)
        if speech:
            image = spec_mask(image)
        elif self.training and self.augment != "none":
            image = _augment(image, "shift")
        return image.expand(-1, self.out_channels, -1, -1)


PREPROCESSORS["audio"] = AudioPreprocess
MODALITY_DEFAULTS["audio"] = {"fusion": "conv1d", "input_size": 64}
