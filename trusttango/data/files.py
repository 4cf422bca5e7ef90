"""Readers for user data: image folders, IDX files and ``.npz`` archives.

Each reader returns a :class:`~trusttango.data.base.LabelledDataset` or raises
:class:`~trusttango.errors.InputError` with a one-line message naming the file.
"""

from __future__ import annotations

import gzip
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from trusttango.data.base import LabelledDataset
from trusttango.errors import InputError, require

T = TypeVar("T")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000  # per image, read from its header before decoding (a decompression bomb is refused)
MAX_CLASSES = 10_000  # a label at or above this is refused before anything is sized by it
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # 16-bit (and 32-bit integer) greys: scaled by 65535
GREY_MODES = ("L", "1", "F", *WIDE_MODES)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _exists(path: Path, what: str) -> Path:
    require(path.exists(), f"{path}: {what} not found")
    return path


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the MNIST format; plain or ``.gz``) into an array."""
    path = _exists(Path(path), "IDX file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        require(zero == 0 and dtype_code in _IDX_DTYPES, f"{path}: not an IDX file (bad magic number)")
        shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=_IDX_DTYPES[dtype_code], offset=4 + 4 * ndim)
        require(data.size == int(np.prod(shape)), f"{path}: IDX header says {shape} but file is truncated")
        return data.reshape(shape)
    except (OSError, EOFError, struct.error) as err:
        raise InputError(f"{path}: cannot read IDX file ({err})") from None


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W)`` or ``(N, H, W, C)`` integer or float images -> float ``(N, C, H, W)`` in [0, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4 and arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3):
        arr = arr.transpose(0, 3, 1, 2)
    require(arr.ndim == 4, f"images must be (N, H, W) or (N, C, H, W), got shape {arr.shape}")
    x = torch.from_numpy(np.array(arr, copy=True)).float()
    if np.issubdtype(arr.dtype, np.integer) or (arr.size and float(arr.max()) > 1.0):
        x = x / 255.0
    return x


def load_idx(images: str | Path, labels: str | Path | None = None, name: str | None = None) -> LabelledDataset:
    """An image dataset from an IDX images file and its labels file.

    Without ``labels``, the labels file is found by the MNIST naming convention
    (``*-images-idx3-ubyte*`` -> ``*-labels-idx1-ubyte*``).
    """
    images = Path(images)
    if labels is None:
        labels = images.with_name(images.name.replace("images-idx3", "labels-idx1"))
        require(labels != images, f"{images}: cannot infer the labels file; pass it explicitly")
    x = images_to_tensor(read_idx(images))
    y = torch.from_numpy(read_idx(labels).astype(np.int64))
    require(len(x) == len(y), f"{images}: {len(x)} images but {labels} has {len(y)} labels")
    num_classes = label_count(y.numpy(), str(labels))
    return LabelledDataset(x, y, [str(i) for i in range(num_classes)], "image", name or images.stem)


def label_count(y: np.ndarray, source: str, limit: int = MAX_CLASSES) -> int:
    """The number of classes labels ``y`` imply (largest + 1), checked before anything is sized
    by it: labels must lie in ``[0, limit)``."""
    if not len(y):
        return 0
    low, high = int(y.min()), int(y.max())
    require(low >= 0, f"{source}: label {low} is negative (labels are class numbers 0, 1, ...)")
    require(high < limit, f"{source}: label {high} is at or above the limit of {limit} classes (MAX_CLASSES)")
    return high + 1


def load_npz(path: str | Path, class_names: list[str] | None = None) -> LabelledDataset:
    """A dataset from an ``.npz`` with arrays ``x`` and ``y`` (and optional ``class_names``).

    ``x`` with 3 or 4 dimensions is taken as images; 2 dimensions as a table.
    """
    path = _exists(Path(path), ".npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a readable .npz archive ({type(err).__name__}: {err})") from None
    for key in ("x", "y"):
        require(key in arrays, f"{path}: missing array {key!r} (found {sorted(arrays)})")
    x, y = arrays["x"], arrays["y"]
    require(
        x.ndim in (2, 3, 4) and (np.issubdtype(x.dtype, np.number) or x.dtype == bool),
        f"{path}: x must be a numeric array of 2 (table), 3 or 4 (images) dimensions, got {x.dtype} of {x.ndim}",
    )
    require(y.ndim == 1, f"{path}: y must be one label per row (1 dimension), got {y.ndim} dimensions")
    require(len(x) == len(y), f"{path}: x has {len(x)} rows but y has {len(y)}")
    require(np.issubdtype(y.dtype, np.integer), f"{path}: y must hold integer class labels, got {y.dtype}")
    if class_names is None and "class_names" in arrays:
        require(arrays["class_names"].ndim == 1, f"{path}: class_names must be a list of names")
        class_names = [str(c) for c in arrays["class_names"]]
    names = class_names or [str(i) for i in range(label_count(y, str(path)))]
    require(not len(y) or int(y.max()) < len(names), f"{path}: label {int(y.max())} but only {len(names)} class names")
    if x.ndim == 2:
        tensor, modality = torch.from_numpy(x.astype(np.float32)), "tabular"
    else:
        tensor, modality = images_to_tensor(x), "image"
    return LabelledDataset(tensor, torch.from_numpy(y.astype(np.int64)), names, modality, path.stem)


def pixels(img: Image.Image, size: tuple[int, int], mode: str) -> np.ndarray:
    """``img`` resized to ``size`` (height, width) as float32 in [0, 1], ``(H, W)`` for mode
    ``L`` or ``(H, W, 3)`` for ``RGB``. 16-bit greys are scaled by 65535, never clipped at 255."""
    if img.mode not in WIDE_MODES:
        return np.asarray(img.convert(mode).resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32) / 255.0
    grey = np.asarray(img.convert("F").resize((size[1], size[0]), Image.BILINEAR), dtype=np.float32)
    grey = np.clip(grey / 65535.0, 0.0, 1.0)
    return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)


def open_image(path: Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The decoded image at ``path``; its pixel count is checked from the header first."""
    try:
        img = Image.open(path)
        require(
            img.width * img.height <= max_pixels,
            f"{path}: {img.width} x {img.height} pixels is over the limit of {max_pixels:,} (MAX_PIXELS)",
        )
        img.load()
        return img
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise InputError(f"{path}: corrupt or unreadable image ({type(err).__name__})") from None


def read_class_files(
    root: Path, files: dict[str, list[Path]], read: Callable[[Path], T], skip_corrupt: bool, what: str, flaw: str
) -> tuple[list[T], list[int]]:
    """``read`` every file of :func:`list_class_folders`' ``files``; returns the items and their labels.

    A file ``read`` refuses (:class:`InputError`) stops the load, or with ``skip_corrupt`` is skipped
    and counted in one warning ("skipped 2 {flaw} {what}(s)"). Every class must keep a file.
    """
    items, labels, skipped = [], [], 0
    for label, name in enumerate(files):
        for path in files[name]:
            try:
                items.append(read(path))
                labels.append(label)
            except InputError:
                if not skip_corrupt:
                    raise
                skipped += 1
    require(len(items) > 0, f"{root}: no readable {what}s")
    if skipped:
        warnings.warn(f"{root}: skipped {skipped} {flaw} {what}(s)", stacklevel=3)
    kept = set(labels)
    missing = [name for label, name in enumerate(files) if label not in kept]
    require(not missing, f"{root}: class folder(s) {', '.join(missing)} have no readable {what}s")
    return items, labels


def list_class_folders(root: Path, suffixes: tuple[str, ...], what: str) -> dict[str, list[Path]]:
    """``{class name: sorted files}`` for a folder with one sub-folder per class."""
    _exists(root, f"{what} folder")
    require(root.is_dir(), f"{root}: expected a folder with one sub-folder per class")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    require(len(classes) > 0, f"{root}: folder is empty (expected one sub-folder per class)")
    files = {c.name: sorted(f for f in c.rglob("*") if f.suffix.lower() in suffixes) for c in classes}
    empty = [name for name, found in files.items() if not found]
    require(not empty, f"{root}: class folder(s) {', '.join(empty)} contain no {what} files ({'/'.join(suffixes)})")
    return files


def load_image_folder(
    root: str | Path,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    skip_corrupt: bool = False,
) -> LabelledDataset:
    """An image dataset from ``root/<class>/<image>`` files (PNG, JPEG, ...).

    Images of mixed sizes are resized to ``size`` (default: the median height and width);
    grey and colour are mixed by converting to ``channels`` (default: 3 if any image is
    colour, else 1). A corrupt image raises an error naming it, or with ``skip_corrupt``
    is skipped and counted in a warning.
    """
    root = Path(root)
    files = list_class_folders(root, IMAGE_SUFFIXES, "image")
    opened, labels = read_class_files(root, files, open_image, skip_corrupt, "image", "corrupt")
    if size is None:
        size = (int(np.median([im.height for im in opened])), int(np.median([im.width for im in opened])))
    if channels is None:
        channels = 3 if any(im.mode not in GREY_MODES for im in opened) else 1
    mode = "L" if channels == 1 else "RGB"
    batch = np.stack([pixels(im, size, mode) for im in opened])
    for im in opened:
        im.close()
    y = torch.tensor(labels, dtype=torch.long)
    return LabelledDataset(images_to_tensor(batch), y, list(files), "image", root.name)


def image_files(paths: list[Path]) -> list[Path]:
    """The files among ``paths`` and, for each folder, the image files under it (sorted);
    :class:`InputError` for a missing path or when no image is found."""
    files: list[Path] = []
    for path in map(Path, paths):
        require(path.exists(), f"{path}: no such file or folder")
        files += sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    require(len(files) > 0, f"no image files found in {', '.join(map(str, paths))}")
    return files


def load_images(paths: list[Path], shape: tuple[int, int, int]) -> torch.Tensor:
    """Image files -> a batch shaped ``(N, *shape)`` in [0, 1] (for prediction)."""
    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for path in paths:
        with open_image(_exists(path, "image")) as img:
            arrays.append(pixels(img, (height, width), mode))
    return images_to_tensor(np.stack(arrays)) if arrays else torch.empty(0, *shape)
