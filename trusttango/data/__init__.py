"""Datasets and loaders: one :class:`LabelledDataset` abstraction for every modality."""

from __future__ import annotations

from pathlib import Path

from trusttango.data.base import LabelledDataset, Splits, make_loader, split, stratified_indices
from trusttango.data.builtin import BUILTINS, describe, load_builtin, register
from trusttango.data.files import load_idx, load_image_folder, load_images, load_npz, read_idx
from trusttango.errors import InputError

__all__ = [
    "BUILTINS",
    "LabelledDataset",
    "Splits",
    "describe",
    "load_builtin",
    "load_data",
    "load_idx",
    "load_image_folder",
    "load_images",
    "load_npz",
    "make_loader",
    "read_idx",
    "register",
    "split",
    "stratified_indices",
]


def load_data(spec: str, seed: int = 0, skip_corrupt: bool = False) -> Splits:
    """Splits for a built-in name, an image folder, an ``.npz`` file or an IDX images file.

    User data without its own test set is split 70/10/20, stratified, from ``seed``.
    """
    if spec in BUILTINS:
        return load_builtin(spec, seed)
    path = Path(spec)
    if not path.exists():
        raise InputError(f"{spec}: no such file or folder, and not a built-in dataset ({', '.join(sorted(BUILTINS))})")
    if path.is_dir():
        ds = load_image_folder(path, skip_corrupt=skip_corrupt)
    elif path.suffix == ".npz":
        ds = load_npz(path)
    elif "idx" in path.name:
        ds = load_idx(path)
    else:
        raise InputError(f"{spec}: unsupported data file (expected a class folder, .npz or IDX file)")
    return split(ds, 0.1, 0.2, seed)
