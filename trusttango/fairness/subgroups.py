"""Subgroup metrics and disparities of a classifier (Gender Shades style intersectional tables).

Per group: accuracy, selection rate ``P(ŷ=+)``, true / false positive and false negative rates,
and the expected calibration error (ECE, Guo et al. 2017, Eq. 3). Across groups, with the
definitions of Hardt et al. 2016 and fairlearn (Bird et al. 2020):

* demographic parity difference ``max_g SR_g - min_g SR_g``; ratio ``min_g SR_g / max_g SR_g``;
* equalised odds difference ``max(ΔTPR, ΔFPR)``; ratio ``min(TPR ratio, FPR ratio)``;
* equal opportunity difference ``ΔTPR``; ratio the TPR ratio.

Every gap carries a percentile bootstrap confidence interval (Efron 1979) from resampled rows,
and every group a ``small`` flag when it has fewer than ``min_group`` rows (or no positives /
negatives), where its rates cannot support a conclusion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from torch import nn

from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.records import Record

GAPS = ("demographic_parity", "equalized_odds", "equal_opportunity", "accuracy")


def group_labels(groups: pd.DataFrame | Mapping[str, np.ndarray], n_rows: int | None = None) -> np.ndarray:
    """One label per row naming its (intersectional) group, e.g. ``"sex=Female|race=Black"``.

    Checks that there is at least one column, that every column has ``n_rows`` values and that
    the intersection has at least two distinct groups.
    """
    frame = pd.DataFrame({k: np.asarray(v) for k, v in groups.items()}) if isinstance(groups, Mapping) else groups
    require(frame.shape[1] > 0, "groups: expected at least one group column")
    if n_rows is not None:
        require(
            len(frame) == n_rows,
            f"groups: {len(frame)} rows but the data has {n_rows} ({abs(len(frame) - n_rows)} rows mismatch)",
        )
    for col in frame.columns:
        require(frame[col].nunique(dropna=False) >= 2, f"groups: column {col!r} has a single value; nothing to compare")
    parts = [f"{col}=" + frame[col].astype(str).to_numpy(dtype=object) for col in frame.columns]
    labels = parts[0]
    for part in parts[1:]:
        labels = labels + "|" + part
    return labels.astype(str)


@dataclass
class GroupMetrics:
    """Metrics of one group (rates are NaN where undefined, e.g. FPR without negatives)."""

    group: str
    n: int
    accuracy: float
    selection_rate: float
    tpr: float
    fpr: float
    fnr: float
    ece: float
    small: bool


@dataclass
class Gap:
    """A between-group difference and ratio with their bootstrap confidence intervals."""

    difference: float
    difference_ci: tuple[float, float]
    ratio: float
    ratio_ci: tuple[float, float]


@dataclass
class SubgroupReport(Record):
    """Per-group table and gaps; ``positive`` is the class treated as the favourable outcome."""

    groups: list[GroupMetrics]
    gaps: dict[str, Gap]
    positive: int
    confidence: float

    def frame(self) -> pd.DataFrame:
        """Per-group metrics as a DataFrame (one row per group)."""
        return pd.DataFrame([asdict(g) for g in self.groups]).set_index("group")


def _cells(codes: np.ndarray, true_pos: np.ndarray, pred_pos: np.ndarray, correct: np.ndarray, k: int) -> np.ndarray:
    """Counts ``(k, 5)`` per group: n, positives, predicted positives, true positives, correct."""
    stats = [np.ones_like(true_pos), true_pos, pred_pos, true_pos & pred_pos, correct]
    return np.stack([np.bincount(codes, weights=s.astype(float), minlength=k) for s in stats], axis=1)


def _rates(cells: np.ndarray) -> dict[str, np.ndarray]:
    n, pos, pred, tp, correct = cells.T
    neg, fp = n - pos, pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "accuracy": correct / n,
            "selection_rate": pred / n,
            "tpr": tp / pos,
            "fpr": fp / neg,
        }


def _diff_ratio(values: np.ndarray) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if len(v) < 2:
        return float("nan"), float("nan")
    hi, lo = v.max(), v.min()
    return float(hi - lo), float(lo / hi) if hi > 0 else 1.0


def _gaps(rates: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    dp = _diff_ratio(rates["selection_rate"])
    tpr, fpr = _diff_ratio(rates["tpr"]), _diff_ratio(rates["fpr"])
    return {
        "demographic_parity": dp,
        "equalized_odds": (max(tpr[0], fpr[0]), min(tpr[1], fpr[1])),
        "equal_opportunity": tpr,
        "accuracy": _diff_ratio(rates["accuracy"]),
    }


def expected_calibration_error(proba: np.ndarray, y_true: np.ndarray, bins: int = 10) -> float:
    """ECE of the top-class confidence (Guo et al. 2017, Eq. 3): ``Σ_b |B_b|/n · |acc(B_b) - conf(B_b)|``."""
    conf, pred = proba.max(1), proba.argmax(1)
    which = np.minimum((conf * bins).astype(int), bins - 1)
    acc = np.bincount(which, weights=(pred == y_true).astype(float), minlength=bins)
    mean_conf = np.bincount(which, weights=conf, minlength=bins)
    return float(np.abs(acc - mean_conf).sum() / max(1, len(y_true)))


def subgroup_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: pd.DataFrame | Mapping[str, np.ndarray] | np.ndarray,
    proba: np.ndarray | None = None,
    positive: int = 1,
    n_boot: int = 200,
    confidence: float = 0.95,
    min_group: int = 30,
    seed: int = 0,
) -> SubgroupReport:
    """Per-group metrics and fairness gaps of predictions ``y_pred`` against ``y_true``.

    ``groups`` is a table of group attributes (several columns give intersections) or a ready
    array of group labels. ``proba`` ``(N, K)`` enables the per-group calibration error. The
    binary events are ``y == positive`` (one-vs-rest for multi-class models).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    require(y_true.shape == y_pred.shape and y_true.ndim == 1, "y_pred: expected one prediction per label")
    require(n_boot >= 0 and 0 < confidence < 1, "n_boot must be >= 0 and confidence in (0, 1)")
    labels = np.asarray(groups).astype(str) if isinstance(groups, np.ndarray) else group_labels(groups, len(y_true))
    require(len(labels) == len(y_true), f"groups: {len(labels)} rows but the data has {len(y_true)}")
    names, codes = np.unique(labels, return_inverse=True)
    require(len(names) >= 2, "groups: a single group; nothing to compare")
    true_pos, pred_pos, correct = y_true == positive, y_pred == positive, y_true == y_pred
    cells = _cells(codes, true_pos, pred_pos, correct, len(names))
    rates = _rates(cells)
    table = []
    for g, name in enumerate(names):
        n, pos = int(cells[g, 0]), int(cells[g, 1])
        rows = codes == g
        ece = expected_calibration_error(proba[rows], y_true[rows]) if proba is not None else float("nan")
        small = n < min_group or pos == 0 or pos == n
        table.append(
            GroupMetrics(
                str(name),
                n,
                float(rates["accuracy"][g]),
                float(rates["selection_rate"][g]),
                float(rates["tpr"][g]),
                float(rates["fpr"][g]),
                float(1 - rates["tpr"][g]),
                ece,
                small,
            )  # fmt: skip
        )
    point = _gaps(rates)
    boot = _bootstrap(codes, true_pos, pred_pos, correct, len(names), n_boot, seed)
    alpha = (1 - confidence) / 2
    gaps = {}
    for key in GAPS:
        ci = np.nanquantile(boot[key], [alpha, 1 - alpha], axis=0) if n_boot else np.full((2, 2), np.nan)
        gaps[key] = Gap(
            point[key][0], (float(ci[0, 0]), float(ci[1, 0])), point[key][1], (float(ci[0, 1]), float(ci[1, 1]))
        )
    return SubgroupReport(table, gaps, positive, confidence)


def _bootstrap(codes, true_pos, pred_pos, correct, k: int, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Gaps on ``n_boot`` row resamples: ``{gap: (n_boot, 2)}`` of (difference, ratio)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {key: [] for key in GAPS}
    for _ in range(n_boot):
        idx = rng.integers(0, len(codes), len(codes))
        for key, value in _gaps(_rates(_cells(codes[idx], true_pos[idx], pred_pos[idx], correct[idx], k))).items():
            out[key].append(value)
    return {key: np.asarray(v, dtype=float).reshape(-1, 2) for key, v in out.items()}


def model_subgroups(
    model: nn.Module,
    data: LabelledDataset,
    groups: pd.DataFrame | Mapping[str, np.ndarray] | None = None,
    columns: list[str] | None = None,
    **options: object,
) -> SubgroupReport:
    """:func:`subgroup_metrics` of ``model`` on ``data`` (a probe set for image models, Adult for tables).

    ``groups`` defaults to the dataset's ``extra`` columns (all, or those named in ``columns``).
    """
    from trusttango.evaluate import predict_proba

    if groups is None:
        columns = columns or list(data.extra)
        missing = [c for c in columns if c not in data.extra]
        require(not missing, f"groups: column(s) {missing} not in {data.name} (has {sorted(data.extra)})")
        groups = {c: data.extra[c] for c in columns}
    elif columns is not None:
        frame = pd.DataFrame(groups)
        missing = [c for c in columns if c not in frame.columns]
        require(not missing, f"groups: column(s) {missing} missing (has {list(frame.columns)})")
        groups = frame[columns]
    proba = predict_proba(model, data)
    labels = group_labels(groups, len(data))
    return subgroup_metrics(data.y.numpy(), proba.argmax(1).numpy(), labels, proba.numpy(), **options)
