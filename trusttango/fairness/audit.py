"""Dataset audit before training, and the training-vs-deployment shift test.

* :func:`balance_table` / :func:`plot_balance` — class counts and, for each group column in the
  dataset's ``extra``, the group x class counts (PNG bar charts).
* :func:`shift_test` — is the data a model now sees distributed like its training data?
  A kernel two-sample test (maximum mean discrepancy, Gretton et al. 2012, Eq. 3, unbiased
  estimate, Gaussian kernel with the median-distance bandwidth) on the model's penultimate
  features, with a permutation p-value, overall and per predicted class (Rabanser et al. 2019,
  "Failing loudly", use such representation-space tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from trusttango.data.base import LabelledDataset
from trusttango.errors import InputError, require
from trusttango.plotting import save_figure, subplots
from trusttango.records import Record
from trusttango.torchutil import penultimate_features


def balance_table(data: LabelledDataset, columns: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """``{"class": counts per class, <column>: group x class counts}`` for the ``extra`` columns."""
    columns = list(data.extra) if columns is None else columns
    missing = [c for c in columns if c not in data.extra]
    require(not missing, f"columns: {missing} not in {data.name} (has {sorted(data.extra)})")
    names = np.asarray(data.class_names)[data.y.numpy()]
    out = {"class": pd.Series(data.class_counts(), index=data.class_names, name="count").to_frame()}
    for col in columns:
        out[col] = pd.crosstab(pd.Series(data.extra[col], name=col), pd.Series(names, name="class"))
    return out


def plot_balance(tables: dict[str, pd.DataFrame], path: str | Path) -> Path:
    """One PNG with a bar chart per table of :func:`balance_table` (stacked by class for groups)."""
    fig, axes = subplots(1, len(tables), figsize=(4.5 * len(tables), 3.5), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items(), strict=True):
        table.plot.bar(ax=ax, stacked=True, legend=name != "class")
        ax.set(title=f"{name} balance", ylabel="examples", xlabel="")
    return save_figure(fig, path, dpi=110)


def mmd2(kernel: torch.Tensor, n: int) -> float:
    """Unbiased squared MMD (Gretton et al. 2012, Eq. 3) from the joint kernel matrix of samples
    ``z[:n]`` and ``z[n:]``."""
    m = len(kernel) - n
    kaa, kbb, kab = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within = (kaa.sum() - kaa.diag().sum()) / (n * (n - 1)) + (kbb.sum() - kbb.diag().sum()) / (m * (m - 1))
    return float(within - 2 * kab.mean())


def mmd_test(a: torch.Tensor, b: torch.Tensor, n_perm: int = 200, seed: int = 0) -> tuple[float, float]:
    """``(MMD², permutation p-value)`` of samples ``a`` ``(n, D)`` and ``b`` ``(m, D)``; Gaussian kernel
    with the median pairwise distance as bandwidth."""
    require(len(a) >= 2 and len(b) >= 2, "shift test: need at least 2 examples on each side")
    z = torch.cat([a, b]).double()
    dist = torch.cdist(z, z)
    kernel = torch.exp(-dist.pow(2) / (2 * float(dist.median().clamp_min(1e-6)) ** 2))
    stat = mmd2(kernel, len(a))
    gen = torch.Generator().manual_seed(seed)
    exceed = 0
    for _ in range(n_perm):
        perm = torch.randperm(len(z), generator=gen)
        exceed += mmd2(kernel[perm][:, perm], len(a)) >= stat
    return stat, (exceed + 1) / (n_perm + 1)


@dataclass
class ShiftResult(Record):
    """Overall and per-class (predicted class) MMD² and p-values; ``shifted`` at level ``alpha``
    (per-class tests Bonferroni-corrected)."""

    mmd2: float
    p_value: float
    shifted: bool
    per_class: dict[str, dict[str, float]]
    alpha: float


def shift_test(
    model: nn.Module,
    train: LabelledDataset,
    deployment: LabelledDataset | torch.Tensor,
    max_examples: int = 500,
    n_perm: int = 200,
    alpha: float = 0.05,
    min_class: int = 10,
    seed: int = 0,
) -> ShiftResult:
    """Two-sample test of training vs deployment data on the model's penultimate features."""
    rng = np.random.default_rng(seed)
    deploy_x = deployment.x if isinstance(deployment, LabelledDataset) else deployment
    require(
        tuple(deploy_x.shape[1:]) == train.input_shape,
        f"deployment: examples shaped {tuple(deploy_x.shape[1:])}, training data has {train.input_shape}",
    )
    a_x = train.x[rng.permutation(len(train))[:max_examples]]
    b_x = deploy_x[rng.permutation(len(deploy_x))[:max_examples]]
    fa, fb = penultimate_features(model, a_x), penultimate_features(model, b_x)
    stat, p = mmd_test(fa, fb, n_perm, seed)
    pa, pb = _predicted(model, a_x), _predicted(model, b_x)
    classes = {}
    tested = [c for c in range(train.num_classes) if (pa == c).sum() >= min_class and (pb == c).sum() >= min_class]
    for c in tested:
        s, pc = mmd_test(fa[pa == c], fb[pb == c], n_perm, seed)
        classes[train.class_names[c]] = {"mmd2": s, "p_value": pc, "shifted": float(pc < alpha / len(tested))}
    return ShiftResult(stat, p, p < alpha, classes, alpha)


def _predicted(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from trusttango.evaluate import predict_proba

    return predict_proba(model, x).argmax(1)


def read_groups(path: Path, n_rows: int):
    """Group table from a CSV file (header row = column names, one row per example of the split)."""
    if not path.exists():
        raise InputError(f"--groups: {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"--groups: {path} is not a readable CSV file ({type(err).__name__})") from None
    require(
        len(frame) == n_rows,
        f"--groups: {path} has {len(frame)} rows but the data split has {n_rows} "
        f"({abs(len(frame) - n_rows)} rows mismatch)",
    )
    return frame


def attach_groups(data: LabelledDataset, table: pd.DataFrame, columns: list[str] | None) -> LabelledDataset:
    """A copy of ``data`` whose group attributes (``extra``) are the ``columns`` of ``table``."""
    copy = data.subset(range(len(data)))
    copy.extra = {c: table[c].to_numpy() for c in (columns or table.columns)}
    return copy
