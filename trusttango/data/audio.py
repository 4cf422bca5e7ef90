"""Audio data: WAV folders and the built-in spoken digits.

An audio dataset holds mono waveforms ``(N, 1, L)`` in [-1, 1] at one sample rate
(:data:`SAMPLE_RATE` unless told otherwise; the model's ``ModelConfig.sample_rate`` must
match). Every file is resampled and cut or zero-padded around its centre to ``L`` samples.

Built-in ``spoken-digits``: the words "zero" ... "nine" synthesised with Debian
``espeak-ng`` over accents, voice variants, speeds and pitches, generated once into the
cache (``$TRUSTTANGO_CACHE``, default ``~/.cache/trusttango``) and deterministic. The 10
real recordings of Debian ``asterisk-core-sounds-en-wav`` (8 kHz telephone prompts) are a
separate out-of-distribution test set: :func:`spoken_digits_real`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from trusttango.data.base import LabelledDataset, Splits, split
from trusttango.data.builtin import register
from trusttango.data.files import list_class_folders, read_class_files
from trusttango.errors import InputError, require

SAMPLE_RATE = 16000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)  # fmt: skip
ESPEAK_VARIANTS = ("m1", "m3", "f2", "f4")
ESPEAK_SPEEDS = (130, 190)
ESPEAK_PITCHES = (35, 50, 65)
ASTERISK_DIGITS = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")
CACHE_VERSION = "spoken-digits-v1"


def cache_dir() -> Path:
    """Where generated built-in data lives: ``$TRUSTTANGO_CACHE`` or ``~/.cache/trusttango``."""
    return Path(os.environ.get("TRUSTTANGO_CACHE") or Path.home() / ".cache" / "trusttango")


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, trim_db: float | None = None) -> np.ndarray:
    """One audio file -> mono float32 samples at ``sample_rate``.

    Channels are averaged; ``trim_db`` cuts leading and trailing audio quieter than that
    many dB below the peak. Unreadable or zero-length files raise :class:`InputError`.
    """
    path = Path(path)
    require(path.is_file(), f"{path}: audio file not found")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise InputError(f"{path}: unreadable audio file ({err})") from None
    require(len(data) > 0, f"{path}: audio file has zero length (no samples)")
    wave = data.mean(axis=1)
    import librosa  # imported where used: loading it costs seconds

    if rate != sample_rate:
        wave = librosa.resample(wave, orig_sr=rate, target_sr=sample_rate)
    if trim_db is not None:
        wave = librosa.effects.trim(wave, top_db=trim_db)[0]
    return wave.astype(np.float32)


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Cut ``wave`` to its central ``length`` samples, or zero-pad it evenly on both sides."""
    if len(wave) >= length:
        start = (len(wave) - length) // 2
        return wave[start : start + length]
    before = (length - len(wave)) // 2
    return np.pad(wave, (before, length - len(wave) - before))


def waves_to_tensor(waves: list[np.ndarray], length: int) -> torch.Tensor:
    """Waveforms of any lengths -> ``(N, 1, length)`` float32."""
    return torch.from_numpy(np.stack([fit_length(w, length) for w in waves]))[:, None].float()


def load_audio_folder(
    root: str | Path,
    sample_rate: int = SAMPLE_RATE,
    seconds: float | None = None,
    trim_db: float | None = None,
    skip_corrupt: bool = False,
) -> LabelledDataset:
    """An audio dataset from ``root/<class>/<file>.wav`` (also FLAC, OGG).

    Files of any sample rate are resampled to ``sample_rate`` and made mono, then cut or
    padded to ``seconds`` (default: the median duration). A zero-length or unreadable file
    raises an error naming it, or with ``skip_corrupt`` is skipped and counted in a warning.
    """
    root = Path(root)
    files = list_class_folders(root, AUDIO_SUFFIXES, "audio")
    read = partial(read_audio, sample_rate=sample_rate, trim_db=trim_db)
    waves, labels = read_class_files(root, files, read, skip_corrupt, "audio file", "empty or unreadable")
    names = list(files)
    length = int(round(seconds * sample_rate)) if seconds else int(np.median([len(w) for w in waves]))
    require(length > 0, f"seconds must be > 0, got {seconds}")
    return LabelledDataset(waves_to_tensor(waves, length), torch.tensor(labels), names, "audio", root.name)


def _espeak_settings() -> list[tuple[str, int, int]]:
    """Every (voice, speed, pitch) of the synthetic set; pitches cycle deterministically."""
    voices = [f"{a}+{v}" for a, v in itertools.product(ESPEAK_ACCENTS, ESPEAK_VARIANTS)]
    combos = list(itertools.product(voices, ESPEAK_SPEEDS))
    return [(voice, speed, ESPEAK_PITCHES[i % len(ESPEAK_PITCHES)]) for i, (voice, speed) in enumerate(combos)]


def _speak(word: str, voice: str, speed: int, pitch: int, out: Path) -> None:
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), word]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


def synthesise_digits(directory: Path, sample_rate: int = SAMPLE_RATE, seconds: float = 1.0) -> Path:
    """Generate the spoken-digits archive (``x`` int16 ``(N, L)``, ``y``, ``voice``) in
    ``directory`` with espeak-ng, unless it is already there; returns its path."""
    target = directory / f"{CACHE_VERSION}-{sample_rate}.npz"
    if target.exists():
        return target
    require(shutil.which("espeak-ng") is not None, "espeak-ng not found; run `make setup` (apt-get install espeak-ng)")
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [(digit, *setting) for setting in _espeak_settings() for digit in range(len(DIGIT_WORDS))]
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        paths = [Path(tmp) / f"{i}.wav" for i in range(len(jobs))]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda job, out: _speak(DIGIT_WORDS[job[0]], *job[1:], out), jobs, paths))
        waves = [read_audio(p, sample_rate, trim_db=40) for p in paths]
        x = waves_to_tensor(waves, int(seconds * sample_rate))[:, 0].numpy()
        pcm = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
        archive = Path(tmp) / "digits.npz"
        voices = np.array([f"{voice}/{speed}/{pitch}" for _, voice, speed, pitch in jobs])
        np.savez_compressed(archive, x=pcm, y=np.array([job[0] for job in jobs]), voice=voices)
        os.replace(archive, target)
    return target


@register(
    "spoken-digits",
    "spoken digits 0-9 synthesised by espeak-ng (8 accents x 4 voices x 2 speeds), 1 s at 16 kHz, 640 clips "
    "(70/10/20 split); real recordings: spoken_digits_real()",
    "audio",
    "Debian espeak-ng (generated once into the cache)",
)
def spoken_digits(seed: int = 0) -> Splits:
    """The synthetic spoken digits (cached), split 70/10/20 stratified from ``seed``."""
    with np.load(synthesise_digits(cache_dir()), allow_pickle=False) as archive:
        x, y, voice = archive["x"], archive["y"], archive["voice"]
    waves = torch.from_numpy(x.astype(np.float32) / 32767)[:, None]
    labels = torch.from_numpy(y.astype(np.int64))
    ds = LabelledDataset(waves, labels, list(DIGIT_WORDS), "audio", "spoken-digits", extra={"voice": voice})
    return split(ds, 0.1, 0.2, seed)


def spoken_digits_real(root: Path = ASTERISK_DIGITS, sample_rate: int = SAMPLE_RATE) -> LabelledDataset:
    """The 10 real recorded digits 0-9 of Debian ``asterisk-core-sounds-en-wav`` (8 kHz),
    trimmed and resampled like the synthetic set: an out-of-distribution test set."""
    paths = [root / f"{d}.wav" for d in range(10)]
    if not all(p.exists() for p in paths):
        raise InputError(f"{root}: asterisk digit recordings not found; apt-get install asterisk-core-sounds-en-wav")
    waves = [read_audio(p, sample_rate, trim_db=40) for p in paths]
    x = waves_to_tensor(waves, sample_rate)
    return LabelledDataset(x, torch.arange(10), list(DIGIT_WORDS), "audio", "spoken-digits/real")
