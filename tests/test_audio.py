"""Audio in the unified model: WAV folders, the espeak-ng spoken digits, log-mel preprocessing,
the 1D temporal / attention fusions, training and model files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from trusttango.data import Splits, load_builtin, load_data, load_folder, spoken_digits_real, stratified_indices
from trusttango.data.audio import SAMPLE_RATE, load_audio_folder, read_audio
from trusttango.errors import InputError
from trusttango.models import build_model, config_for, load_model, save_model
from trusttango.models.audio import LogMel, add_noise, band_limit, spec_mask, speed_shift
from trusttango.models.io import SavedModel
from trusttango.train import TrainConfig, accuracy, fit
from trusttango.workflow import train_model


@pytest.fixture(scope="module")
def digits_audio():
    return load_builtin("spoken-digits", seed=0)


def _tone(freq: float, rate: int, seconds: float, stereo: bool = False) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave, wave], axis=1) if stereo else wave


@pytest.fixture
def wav_folder(tmp_path):
    """Two classes of tones (low / high) at mixed sample rates, lengths and channel counts."""
    for name, freq in (("low", 300.0), ("high", 2500.0)):
        (tmp_path / name).mkdir()
        for i, (rate, seconds) in enumerate(((8000, 0.5), (22050, 0.7), (44100, 0.6))):
            sf.write(tmp_path / name / f"{i}.wav", _tone(freq * (1 + 0.05 * i), rate, seconds, stereo=i == 2), rate)
    return tmp_path


def test_wav_folder_resamples_to_one_rate_and_median_length(wav_folder):
    ds = load_folder(wav_folder)
    assert ds.modality == "audio" and ds.class_names == ["high", "low"]
    assert ds.input_shape == (1, int(0.6 * SAMPLE_RATE))  # median duration, at 16 kHz
    # the 8 kHz 300 Hz tone keeps its pitch after resampling: spectral peak at 300 Hz
    wave = read_audio(wav_folder / "low" / "0.wav")
    assert len(wave) == SAMPLE_RATE // 2
    peak = np.argmax(np.abs(np.fft.rfft(wave))) * SAMPLE_RATE / len(wave)
    assert abs(peak - 300) < 5
    splits = load_data(str(wav_folder))
    assert splits.train.modality == "audio"


def test_zero_length_and_corrupt_wav_are_named_or_skipped(wav_folder):
    empty = wav_folder / "low" / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(InputError, match="empty.wav: audio file has zero length"):
        load_audio_folder(wav_folder)
    (wav_folder / "high" / "junk.wav").write_bytes(b"not a wav file at all")
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = load_audio_folder(wav_folder, skip_corrupt=True)
    assert len(ds) == 6


def test_cli_reports_zero_length_wav_with_exit_2(wav_folder):
    sf.write(wav_folder / "low" / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    cli = str(Path(sys.executable).with_name("trusttango"))
    cmd = [cli, "train", "--data", str(wav_folder), "--out", str(wav_folder.parent / "m"), "--epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "empty.wav" in proc.stderr + proc.stdout


def test_log_mel_matches_librosa():
    """Our torch log-mel equals librosa's melspectrogram (same windows, power 2)."""
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, 8000).astype(np.float32)
    ours = LogMel(16000, 40)(torch.from_numpy(wave)[None])[0].numpy()
    mel = librosa.feature.melspectrogram(
        y=wave,
        sr=16000,
        n_fft=512,
        win_length=400,
        hop_length=160,
        n_mels=40,
        window="hann",
        center=True,
        pad_mode="reflect",
    )
    np.testing.assert_allclose(ours, np.log(mel + 1e-6), atol=2e-3)


def test_spoken_digits_builtin_is_deterministic_and_balanced(digits_audio):
    s = digits_audio
    assert s.train.input_shape == (1, SAMPLE_RATE) and s.class_names[7] == "seven"
    assert len(s.train) + len(s.val) + len(s.test) == 640
    assert (s.train.class_counts() == 45).all()
    assert len(set(s.train.extra["voice"])) > 50  # many voices / speeds / pitches
    again = load_builtin("spoken-digits", seed=0)
    assert torch.equal(again.train.x, s.train.x)
    assert s.train.x.abs().amax(-1).min() > 0.05  # every clip holds speech
    real = spoken_digits_real()
    assert real.input_shape == (1, SAMPLE_RATE) and real.y.tolist() == list(range(10))


@pytest.mark.parametrize("fusion", ["conv1d", "attention"])
def test_audio_model_learns_spoken_digits_and_round_trips(digits_audio, fusion, tmp_path):
    s = digits_audio
    idx, _ = stratified_indices(s.train.y.numpy(), (0.5, 0.5), 0)
    train = s.train.subset(idx)
    cfg = config_for(train.input_shape, 10, modality="audio", fusion=fusion, input_size=32, depth=2, width=0.25)
    assert cfg.fusion == fusion and cfg.sample_rate == SAMPLE_RATE
    model = build_model(cfg, seed=0)
    assert model.preprocess(train.x[:2]).shape == (2, 1, 32, 32)
    history = fit(model, train, None, TrainConfig(epochs=6, batch_size=25, lr=5e-3, progress=False))
    assert history.records[-1].train_loss < history.records[0].train_loss
    acc = accuracy(model, s.test)
    assert acc > 0.4, acc  # chance is 0.1
    model.eval()
    saved = save_model(SavedModel(model, cfg, s.class_names), tmp_path / "m")
    loaded = load_model(saved)
    assert loaded.config.modality == "audio" and loaded.config.fusion == fusion
    torch.testing.assert_close(loaded.model(s.test.x[:8]), model(s.test.x[:8]))


def test_train_model_picks_audio_defaults(digits_audio):
    small = digits_audio.test.subset(range(0, 130, 5))
    saved = train_model(Splits(small, small, small), TrainConfig(epochs=1, progress=False), depth=2, input_size=32)
    assert (saved.config.modality, saved.config.fusion, saved.config.sample_rate) == ("audio", "conv1d", SAMPLE_RATE)
    assert 0 <= saved.meta["metrics"]["test_accuracy"] <= 1


def test_audio_model_defaults_and_bad_shapes():
    cfg = config_for((1, 8000), 3, modality="audio")
    assert (cfg.fusion, cfg.input_size) == ("conv1d", 64)
    model = build_model(cfg, seed=0)
    x = torch.randn(2, 1, 8000, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()  # differentiable down to the samples
    with pytest.raises(InputError, match="mono waveforms"):
        build_model(config_for((2, 8000), 3, modality="audio"))


# ---------------------------------------------------------------- policy "speech" (training-time augmentation)


def _peak_hz(wave: torch.Tensor) -> torch.Tensor:
    return torch.fft.rfft(wave).abs().argmax(-1).float() * SAMPLE_RATE / wave.shape[-1]


def test_band_limit_keeps_only_the_telephone_band():
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    low, mid, high = (torch.sin(2 * torch.pi * f * t) for f in (100.0, 1000.0, 6000.0))
    out = band_limit((low + mid + high)[None], SAMPLE_RATE)[0]
    spectrum = torch.fft.rfft(out).abs()  # 1 Hz bins
    assert spectrum[100] < 1e-3 * spectrum[1000] and spectrum[6000] < 1e-3 * spectrum[1000]
    torch.testing.assert_close(out, mid, atol=2e-3, rtol=0)


def test_noise_has_the_drawn_snr_and_speed_moves_the_pitch():
    torch.manual_seed(0)
    t = torch.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = 0.3 * torch.sin(2 * torch.pi * 1000.0 * t).repeat(64, 1)
    noisy = add_noise(tone, snr_db=(20.0, 20.0))
    snr = 10 * torch.log10(tone.pow(2).mean(-1) / (noisy - tone).pow(2).mean(-1))
    assert (snr - 20).abs().max() < 0.5
    torch.testing.assert_close(speed_shift(tone, 0.0, 0.0), tone, atol=1e-3, rtol=0)  # no change: identity
    peaks = _peak_hz(speed_shift(tone, 0.15, 0.0))
    assert peaks.min() >= 850 - 2 and peaks.max() <= 1150 + 2 and peaks.std() > 30  # tempo and pitch change together


def test_spec_mask_blanks_at_most_a_band_per_axis():
    torch.manual_seed(0)
    image = torch.randn(32, 1, 64, 64) + 5
    masked = spec_mask(image, 0.15)
    zero_rows = (masked == 0).all(-1).sum((1, 2))  # whole frequency rows blanked, per example
    zero_cols = (masked == 0).all(-2).sum((1, 2))
    assert zero_rows.max() <= int(0.15 * 64) and zero_cols.max() <= int(0.15 * 64)
    assert (zero_rows > 0).float().mean() > 0.5 and (zero_cols > 0).float().mean() > 0.5
    assert torch.equal(masked[masked != 0], image[masked != 0])


def test_speech_policy_only_in_training(digits_audio):
    cfg = config_for(digits_audio.train.input_shape, 10, modality="audio", augment="speech", input_size=32)
    plain = build_model(config_for(digits_audio.train.input_shape, 10, modality="audio", input_size=32), seed=0)
    model = build_model(cfg, seed=0)
    x = digits_audio.test.x[:4]
    model.eval(), plain.eval()
    torch.testing.assert_close(model.preprocess(x), plain.preprocess(x))  # evaluation: no augmentation
    model.train()
    assert not torch.allclose(model.preprocess(x), plain.preprocess(x))
