"""Video data: folders of video files or of frame images, and the built-in moving-fashion clips.

A video dataset holds clips ``(N, C, T, H, W)`` in [0, 1] (channels first, then time, as
torchvision's video models). Files are decoded with PyAV; clips of different lengths are
cut to their first ``T`` frames or padded by repeating the last frame, and frames are
resized to one ``H x W``.

Built-in ``moving-fashion``: Fashion-MNIST garments (Xiao et al. 2017) moving across a
canvas; the label is the motion direction (a task a single frame cannot solve).
``moving-fashion-garment`` labels the same kind of clips by garment class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trusttango.data.base import LabelledDataset, Splits, split
from trusttango.data.builtin import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, register
from trusttango.data.files import IMAGE_SUFFIXES, list_class_folders, open_image, pixels, read_class_files, read_idx
from trusttango.errors import InputError, require

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".ogv")
DIRECTIONS = ("right", "left", "down", "up")
_STEPS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def read_video(path: str | Path) -> np.ndarray:
    """Decode every frame of a video file into ``(T, H, W, 3)`` uint8 RGB."""
    import av  # PyAV, imported only where a video is read or written

    path = Path(path)
    require(path.is_file(), f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.FFmpegError, IndexError, ValueError, OSError) as err:
        raise InputError(f"{path}: cannot decode video ({type(err).__name__})") from None
    require(len(frames) > 0, f"{path}: video has no decodable frames")
    return np.stack(frames)


def read_clip(source: Path) -> np.ndarray:
    """A clip from a video file (:func:`read_video`) or a folder of frames (:func:`read_frame_folder`)."""
    return read_frame_folder(source) if source.is_dir() else read_video(source)


def read_frame_folder(folder: Path) -> np.ndarray:
    """The images in ``folder`` (sorted by name, resized to the first) as ``(T, H, W, 3)`` uint8 RGB."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    require(len(paths) > 0, f"{folder}: no frame images ({'/'.join(IMAGE_SUFFIXES)})")
    size, frames = None, []
    for path in paths:
        with open_image(path) as img:
            size = size or (img.height, img.width)
            frames.append((pixels(img, size, "RGB") * 255).round().astype(np.uint8))
    return np.stack(frames)


def save_video(clip: np.ndarray | torch.Tensor, path: str | Path, fps: int = 8) -> Path:
    """Write a clip ``(C, T, H, W)`` in [0, 1] (``C`` 1 or 3) as an H.264 MP4 with PyAV."""
    import av

    frames = (torch.as_tensor(clip).clamp(0, 1) * 255).round().byte()
    frames = frames.expand(3, -1, -1, -1).permute(1, 2, 3, 0).numpy()  # (T, H, W, 3)
    _, h, w, _ = frames.shape
    require(h % 2 == 0 and w % 2 == 0, f"{path}: H.264 needs even frame sides, got {h}x{w}")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "10"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return Path(path)


def clips_to_tensor(clips: list[np.ndarray], length: int, size: tuple[int, int], channels: int) -> torch.Tensor:
    """RGB uint8 clips ``(T_i, H_i, W_i, 3)`` -> ``(N, channels, length, H, W)`` in [0, 1]."""
    out = []
    for clip in clips:
        idx = np.minimum(np.arange(length), len(clip) - 1)  # first `length` frames, last one repeated
        x = torch.from_numpy(clip[idx]).permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if channels == 1:
            x = x.mean(1, keepdim=True)
        out.append(x.transpose(0, 1))
    return torch.stack(out)


def _is_grey(clip: np.ndarray) -> bool:
    """Colour channels agree up to codec noise."""
    c = clip.astype(np.int16)
    return int(np.abs(c[..., 0] - c[..., 1]).max()) <= 8 and int(np.abs(c[..., 1] - c[..., 2]).max()) <= 8


def _clip_sources(root: Path) -> dict[str, list[Path]]:
    """``{class: [video file or frame folder]}``: frame folders where a class holds sub-folders."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes and all(any(q.is_dir() for q in c.iterdir()) for c in classes):
        return {c.name: sorted(q for q in c.iterdir() if q.is_dir() and not q.name.startswith(".")) for c in classes}
    return list_class_folders(root, VIDEO_SUFFIXES, "video")


def load_video_folder(
    root: str | Path,
    length: int | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    skip_corrupt: bool = False,
) -> LabelledDataset:
    """A video dataset from ``root/<class>/<clip>.mp4`` (any format PyAV decodes) or from
    frame folders ``root/<class>/<clip>/<frame>.png``.

    ``length`` frames per clip (default: the median), frames resized to ``size`` (default:
    the median height and width), ``channels`` 1 or 3 (default: 1 if every clip is grey).
    A clip that does not decode raises an error naming it, or with ``skip_corrupt`` is
    skipped and counted in a warning.
    """
    root = Path(root)
    require(root.is_dir(), f"{root}: expected a folder with one sub-folder per class")
    sources = _clip_sources(root)
    clips, labels = read_class_files(root, sources, read_clip, skip_corrupt, "clip", "undecodable")
    names = list(sources)
    length = length or int(np.median([len(c) for c in clips]))
    size = size or (int(np.median([c.shape[1] for c in clips])), int(np.median([c.shape[2] for c in clips])))
    channels = channels or (1 if all(_is_grey(c) for c in clips) else 3)
    require(channels in (1, 3), f"channels must be 1 or 3, got {channels}")
    x = clips_to_tensor(clips, length, size, channels)
    return LabelledDataset(x, torch.tensor(labels), names, "video", root.name)


def moving_clips(
    garments: np.ndarray, directions: np.ndarray, rng: np.random.Generator, length: int = 16, canvas: int = 32
) -> torch.Tensor:
    """Clips ``(N, 1, length, canvas, canvas)`` of each garment (half size) moving one pixel
    per frame in its direction (an index into :data:`DIRECTIONS`) from a random start."""
    side = garments.shape[-1] // 2
    small = F.avg_pool2d(torch.from_numpy(garments).float()[:, None] / 255.0, 2)[:, 0]
    free = canvas - side
    require(free >= length - 1, f"canvas {canvas} too small for {length} frames of motion")
    clips = torch.zeros(len(garments), 1, length, canvas, canvas)
    for i, (img, d) in enumerate(zip(small, directions, strict=True)):
        dy, dx = _STEPS[DIRECTIONS[d]]
        y0, x0 = (_start(rng, step, free, length) for step in (dy, dx))
        for t in range(length):
            y, x = y0 + dy * t, x0 + dx * t
            clips[i, 0, t, y : y + side, x : x + side] = img
    return clips


def _start(rng: np.random.Generator, step: int, free: int, length: int) -> int:
    """A start coordinate that keeps ``length`` steps of motion ``step`` inside ``[0, free]``."""
    if step == 0:
        return int(rng.integers(0, free + 1))
    lo, hi = (0, free - (length - 1)) if step > 0 else (length - 1, free)
    return int(rng.integers(lo, hi + 1))


def moving_fashion(
    seed: int = 0, label: str = "direction", n_clips: int = 1200, root: Path = FASHION_MNIST_DIR
) -> Splits:
    """``n_clips`` moving Fashion-MNIST garments (test-set images), deterministic from
    ``seed``, labelled by motion ``direction`` or by ``garment``; split 70/10/20."""
    require(label in ("direction", "garment"), f"label must be 'direction' or 'garment', got {label!r}")
    images_path = root / "t10k-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise InputError(f"{root}: Fashion-MNIST not found; run `make setup` (apt-get install dataset-fashion-mnist)")
    images, classes = read_idx(images_path), read_idx(root / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), n_clips, replace=False)
    directions = np.arange(n_clips) % len(DIRECTIONS)
    x = moving_clips(images[pick], directions, rng)
    if label == "direction":
        y, names = directions, list(DIRECTIONS)
    else:
        y, names = classes[pick], list(FASHION_MNIST_CLASSES)
    extra = {"garment": classes[pick], "direction": directions}
    ds = LabelledDataset(x, torch.from_numpy(y), names, "video", f"moving-fashion-{label}", extra)
    return split(ds, 0.1, 0.2, seed)


@register(
    "moving-fashion",
    "Fashion-MNIST garments moving right/left/down/up on a 32x32 canvas, 16 grey frames; label = direction; "
    "1,200 clips (70/10/20 split)",
    "video",
    "generated from Debian dataset-fashion-mnist",
)
def moving_fashion_direction(seed: int = 0) -> Splits:
    """Moving garments labelled by motion direction (4 classes)."""
    return moving_fashion(seed, "direction")


@register(
    "moving-fashion-garment",
    "the moving-fashion clips labelled by garment class (10 classes); 1,200 clips (70/10/20 split)",
    "video",
    "generated from Debian dataset-fashion-mnist",
)
def moving_fashion_garment(seed: int = 0) -> Splits:
    """Moving garments labelled by Fashion-MNIST class (10 classes)."""
    return moving_fashion(seed, "garment")
