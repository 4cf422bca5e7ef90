"""Datasets and loaders: one :class:`LabelledDataset` abstraction for every modality."""

from __future__ import annotations

from pathlib import Path

from trusttango.data.audio import AUDIO_SUFFIXES, load_audio_folder, spoken_digits_real
from trusttango.data.base import LabelledDataset, Splits, make_loader, split, stratified_indices
from trusttango.data.builtin import BUILTINS, describe, load_builtin, register
from trusttango.data.files import load_idx, load_image_folder, load_images, load_npz, read_idx
from trusttango.data.tabular import adult_frame, adult_splits
from trusttango.data.video import VIDEO_SUFFIXES, load_video_folder, save_video
from trusttango.errors import InputError, require

__all__ = [
    "BUILTINS",
    "LabelledDataset",
    "Splits",
    "adult_frame",
    "adult_splits",
    "describe",
    "load_builtin",
    "load_data",
    "load_audio_folder",
    "load_folder",
    "load_idx",
    "load_image_folder",
    "load_images",
    "load_npz",
    "load_video_folder",
    "make_loader",
    "read_idx",
    "register",
    "save_video",
    "split",
    "spoken_digits_real",
    "stratified_indices",
]


def load_data(spec: str, seed: int = 0, skip_corrupt: bool = False) -> Splits:
    """Splits for a built-in name, a class folder (:func:`load_folder`), an ``.npz`` file or
    an IDX images file.

    User data without its own test set is split 70/10/20, stratified, from ``seed``.
    """
    if spec in BUILTINS:
        return load_builtin(spec, seed)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder, and not a built-in dataset ({', '.join(sorted(BUILTINS))})")
    if path.is_dir():
        ds = load_folder(path, skip_corrupt=skip_corrupt)
    elif path.suffix == ".npz":
        ds = load_npz(path)
    elif "idx" in path.name:
        ds = load_idx(path)
    else:
        raise InputError(f"{spec}: unsupported data file (expected a class folder, .npz or IDX file)")
    return split(ds, 0.1, 0.2, seed)


def load_folder(root: str | Path, skip_corrupt: bool = False) -> LabelledDataset:
    """A dataset from ``root/<class>/...``, its modality told by the files: audio files
    (WAV/FLAC/OGG), video files, frame folders (every class holds sub-folders) or images."""
    root = Path(root)
    require(root.is_dir(), f"{root}: expected a folder with one sub-folder per class")
    classes = [c for c in root.iterdir() if c.is_dir() and not c.name.startswith(".")]
    suffixes = {f.suffix.lower() for c in classes for f in c.rglob("*") if f.is_file()}
    if suffixes & set(AUDIO_SUFFIXES):
        return load_audio_folder(root, skip_corrupt=skip_corrupt)
    if suffixes & set(VIDEO_SUFFIXES) or (classes and all(any(f.is_dir() for f in c.iterdir()) for c in classes)):
        return load_video_folder(root, skip_corrupt=skip_corrupt)
    return load_image_folder(root, skip_corrupt=skip_corrupt)
