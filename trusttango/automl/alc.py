"""The anytime-learning score of the ChaLearn AutoDL challenge (Liu et al., "Winning
solutions and post-challenge analyses of the ChaLearn AutoDL challenge 2019", TPAMI 2021).

Each prediction is scored by its NAUC (normalised area under the ROC curve, averaged over
classes); the scores at the prediction times form a step curve over a log-transformed time
axis, and its area is the ALC (area under the learning curve).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata

from trusttango.errors import require
from trusttango.plotting import save_figure, subplots

T_DEFAULT, T0 = 1200.0, 60.0


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.astype(bool)
    out = np.zeros((len(labels), num_classes), dtype=bool)
    out[np.arange(len(labels)), labels.astype(int)] = True
    return out


def nauc(labels: np.ndarray, scores: np.ndarray) -> float:
    """NAUC = 2 * mean_k AUC_k - 1 over the class columns with both positives and negatives.

    ``labels``: class indices ``(N,)`` or a 0/1 matrix ``(N, K)``; ``scores``: raw scores
    ``(N, K)`` (no thresholding). AUC_k is the Mann-Whitney statistic from the ranks of the
    scores, tied scores getting their average rank. Returns 0.0 when no column qualifies.
    """
    scores = np.asarray(scores, dtype=np.float64)
    require(scores.ndim == 2, f"scores: expected a matrix (N, K), got shape {scores.shape}")
    truth = _one_hot(labels, scores.shape[1])
    require(truth.shape == scores.shape, f"labels: expected {scores.shape}, got {truth.shape}")
    aucs = []
    for k in range(scores.shape[1]):
        pos = truth[:, k]
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        ranks = rankdata(scores[:, k], method="average")
        aucs.append((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return 2 * float(np.mean(aucs)) - 1 if aucs else 0.0


def time_transform(t: float | np.ndarray, budget: float = T_DEFAULT, t0: float = T0) -> np.ndarray:
    """t~ = log(1 + t / t0) / log(1 + T / t0)."""
    return np.log1p(np.asarray(t, dtype=np.float64) / t0) / math.log1p(budget / t0)


def alc(times: ArrayLike, scores: ArrayLike, budget: float = T_DEFAULT, t0: float = T0) -> float:
    """Area under the step learning curve ("post" steps) on the transformed time axis.

    X = [0, t~_1..t~_n, 1], Y = [0, s_1..s_n, s_n], ALC = sum_i (X_{i+1} - X_i) Y_i;
    predictions made after ``budget`` are dropped.
    """
    times, scores = np.asarray(times, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    require(times.shape == scores.shape, f"times and scores differ in length: {times.shape} vs {scores.shape}")
    require(budget > 0, f"budget must be > 0, got {budget}")
    keep = times <= budget
    times, scores = times[keep], scores[keep]
    require(bool(np.all(np.diff(times) >= 0)), "times must be non-decreasing")
    x = np.concatenate([[0.0], time_transform(times, budget, t0), [1.0]])
    y = np.concatenate([[0.0], scores, scores[-1:] if len(scores) else [0.0]])
    return float(np.sum(np.diff(x) * y[:-1]))


@dataclass
class LearningCurve:
    """Predictions' time stamps (seconds from the run's start) and NAUC scores under budget T."""

    budget: float = T_DEFAULT
    t0: float = T0
    times: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def add(self, time_s: float, labels: np.ndarray, probabilities: np.ndarray) -> float | None:
        """Score a prediction made at ``time_s``; ignored (returns None) after the budget."""
        if time_s > self.budget:
            return None
        score = nauc(labels, probabilities)
        self.times.append(float(time_s))
        self.scores.append(score)
        return score

    @property
    def alc(self) -> float:
        return alc(self.times, self.scores, self.budget, self.t0)

    def to_dict(self) -> dict:
        return {"budget_s": self.budget, "t0_s": self.t0, "times_s": self.times, "nauc": self.scores, "alc": self.alc}

    def plot(self, path: str | Path, title: str = "") -> Path:
        """PNG of NAUC against transformed time (the shaded area is the ALC)."""
        x = np.concatenate([[0.0], time_transform(self.times, self.budget, self.t0), [1.0]])
        y = np.concatenate([[0.0], self.scores, self.scores[-1:] if self.scores else [0.0]])
        fig, ax = subplots(figsize=(6, 4))
        ax.step(x, y, where="post", color="C0")
        ax.fill_between(x, y, step="post", alpha=0.3, color="C0")
        t0, budget = f"{self.t0:g}", f"{self.budget:g}"
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"log(1 + t/{t0}) / log(1 + T/{t0}),  T = {budget} s")
        ax.set_ylabel("NAUC of the prediction")
        ax.set_title(f"{title}  ALC = {self.alc:.4f}".strip())
        return save_figure(fig, path, dpi=100)
