"""The one dataset abstraction: tensors in memory, a modality tag and class names.

Every loader in :mod:`trusttango.data` returns a :class:`LabelledDataset`; every pillar
(training, search, explanation, attacks, privacy, fairness) consumes one. Images are
float32 tensors shaped ``(N, C, H, W)`` with values in ``[0, 1]``; normalisation belongs
to the model, so attacks and explanations work in pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from trusttango.errors import InputError, require

Modality = Literal["image", "audio", "video", "tabular"]
MODALITIES: tuple[str, ...] = ("image", "audio", "video", "tabular")


@dataclass
class LabelledDataset(torch.utils.data.Dataset):
    """Inputs ``x``, integer labels ``y`` in ``[0, len(class_names))``, and metadata.

    ``extra`` holds per-example side columns of the same length (e.g. group attributes
    for fairness audits); it follows the rows through :meth:`subset`.
    """

    x: torch.Tensor
    y: torch.Tensor
    class_names: list[str]
    modality: Modality = "image"
    name: str = "data"
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate(self)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched fetch: one tensor gather instead of one call per example."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.x[idx], self.y[idx]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example, e.g. ``(1, 28, 28)``."""
        return tuple(self.x.shape[1:])

    def subset(self, indices: np.ndarray | torch.Tensor, name: str | None = None) -> LabelledDataset:
        """The rows at ``indices`` (with their ``extra`` columns) as a new dataset."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        extra = {k: v[idx.numpy()] for k, v in self.extra.items()}
        return replace(self, x=self.x[idx], y=self.y[idx], extra=extra, name=name or self.name)

    def class_counts(self) -> np.ndarray:
        """Number of examples per class, length ``num_classes``."""
        return np.bincount(self.y.numpy(), minlength=self.num_classes)


def concat(first: LabelledDataset, *rest: LabelledDataset, name: str | None = None) -> LabelledDataset:
    """The rows of ``first`` then of each of ``rest``: one input shape and one list of class
    names; the ``extra`` columns all of them have are kept."""
    parts = [first, *rest]
    for ds in rest:
        require(ds.input_shape == first.input_shape, f"concat: input shape {ds.input_shape} != {first.input_shape}")
        require(ds.class_names == first.class_names, f"concat: {ds.name!r} has other class names than {first.name!r}")
    keys = set(first.extra).intersection(*(ds.extra for ds in rest))
    extra = {k: np.concatenate([ds.extra[k] for ds in parts]) for k in sorted(keys)}
    x, y = torch.cat([ds.x for ds in parts]), torch.cat([ds.y for ds in parts])
    return replace(first, x=x, y=y, extra=extra, name=name or first.name)


def validate(ds: LabelledDataset) -> None:
    """Check shapes, dtypes, label range and finiteness; raise :class:`InputError`."""
    require(ds.modality in MODALITIES, f"{ds.name}: modality {ds.modality!r} is not one of {MODALITIES}")
    require(ds.x.shape[0] == ds.y.shape[0], f"{ds.name}: x has {ds.x.shape[0]} rows but y has {ds.y.shape[0]}")
    require(ds.y.ndim == 1, f"{ds.name}: y must be one label per row, got shape {tuple(ds.y.shape)}")
    require(len(ds.class_names) >= 2, f"{ds.name}: need at least 2 classes, got {len(ds.class_names)}")
    if len(ds.y):
        lo, hi = int(ds.y.min()), int(ds.y.max())
        require(
            lo >= 0 and hi < len(ds.class_names),
            f"{ds.name}: labels must lie in [0, {len(ds.class_names) - 1}], found range [{lo}, {hi}]",
        )
    require(bool(torch.isfinite(ds.x).all()), f"{ds.name}: x contains NaN or infinite values")
    for key, col in ds.extra.items():
        require(len(col) == len(ds.y), f"{ds.name}: extra column {key!r} has {len(col)} rows, expected {len(ds.y)}")


@dataclass
class Splits:
    """Train / validation / test partitions of one task."""

    train: LabelledDataset
    val: LabelledDataset
    test: LabelledDataset

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names


def stratified_indices(y: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Split row indices into parts of the given ``fractions``, stratified by label.

    Deterministic for a ``seed``. Each class is shuffled and cut at the same fractions, so
    every part keeps the class proportions (up to rounding). The last part takes the rest.
    """
    require(abs(sum(fractions) - 1.0) < 1e-6, f"split fractions must sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(rows)).astype(int)
        for part, chunk in zip(parts, np.split(rows, cuts), strict=False):
            part.append(chunk)
    return [np.sort(np.concatenate(p)) for p in parts]


def split(ds: LabelledDataset, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> Splits:
    """Deterministic stratified train / validation / test split of one dataset."""
    require(0 < val_fraction < 1 and 0 <= test_fraction < 1, "val/test fractions must lie in (0, 1)")
    train_fraction = 1.0 - val_fraction - test_fraction
    require(train_fraction > 0, "val_fraction + test_fraction must be below 1")
    tr, va, te = stratified_indices(ds.y.numpy(), (train_fraction, val_fraction, test_fraction), seed)
    return Splits(ds.subset(tr, f"{ds.name}/train"), ds.subset(va, f"{ds.name}/val"), ds.subset(te, f"{ds.name}/test"))


def _stacked(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate for :meth:`LabelledDataset.__getitems__`, whose batches come pre-stacked."""
    return batch


def make_loader(
    ds: LabelledDataset, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False
) -> DataLoader:
    """A DataLoader over ``ds`` that gathers whole batches at once (seeded shuffling)."""
    require(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
    if len(ds) == 0:
        raise InputError(f"{ds.name}: dataset is empty")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last, collate_fn=_stacked
    )
