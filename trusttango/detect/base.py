"""What every detector shares: the model fingerprint, the ROC threshold, and the combination of
per-input statistics into one score.

Contract of :class:`Detector`: ``fit(clean, adversarial)`` learns the combination and the
threshold, ``score(x)`` gives one number per input (higher = more likely adversarial),
``predict(x)`` is ``score(x) >= threshold``; a fingerprint of the model's weights and the input
shape are recorded at fit and checked at every use, so a detector is never applied to a model
or inputs it was not fitted on.

One file format for every detector (:meth:`Detector.save`, :func:`read_detector`): a folder
holding :data:`FILE` (the registry key, the constructor settings and the fitted state, validated
field by field on load) and, for detectors that keep reference data, :data:`ARRAYS`
(safetensors; nothing is unpickled).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from trusttango.errors import InputError, require
from trusttango.models.io import cpu_tensors
from trusttango.schema import read
from trusttango.torchutil import check_batch

FORMAT = "trusttango-detector/3"
FILE = "detector.json"
ARRAYS = "arrays.safetensors"


class FittedState(BaseModel):
    """What ``fit`` learned."""

    model_config = ConfigDict(extra="forbid")
    fingerprint: str
    input_shape: list[int]
    threshold: float
    mean: list[float]
    std: list[float]
    coef: list[float]
    intercept: float


class DetectorFile(BaseModel):
    """The contents of :data:`FILE`."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["trusttango-detector/3"]
    detector: str
    settings: dict[str, Any]
    fit: FittedState


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's parameter and buffer names, shapes and values (16 hex digits)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def batches(x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
    """``x`` checked (:func:`~trusttango.torchutil.check_batch`) and split into batches."""
    return check_batch(x).split(batch_size)


def choose_threshold(labels: np.ndarray, scores: np.ndarray, recall: float | None = None) -> float:
    """Threshold on the ROC curve: the highest one reaching ``recall`` on adversarial inputs,
    or (``recall=None``) the one maximising Youden's J = TPR - FPR (Youden 1950)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(labels, scores)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if recall is None:
        return float(thresholds[np.argmax(tpr - fpr)])
    return float(thresholds[np.argmax(tpr >= recall)])


class Detector:
    """Base class. Subclasses implement :meth:`statistics` ``x -> (N, F)`` numpy features;
    one feature is used as is (oriented so adversarial scores higher), several are combined
    by a standardised logistic regression."""

    name = "detector"
    key = ""  # its name in :data:`trusttango.detect.DETECTORS`

    def __init__(self, model: nn.Module, batch_size: int = 256) -> None:
        require(isinstance(model, nn.Module), f"model: expected a torch.nn.Module, got {type(model).__name__}")
        require(batch_size >= 1, f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.fingerprint: str | None = None
        self.threshold: float | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.coef: np.ndarray | None = None
        self.intercept = 0.0
        self.input_shape: tuple[int, ...] | None = None

    def settings(self) -> dict[str, Any]:
        """The JSON-able constructor keywords that rebuild this detector (model excluded)."""
        return {"batch_size": self.batch_size}

    def arrays(self) -> dict[str, torch.Tensor]:
        """Tensors the constructor also takes (reference data), saved as safetensors."""
        return {}

    def statistics(self, x: torch.Tensor) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, clean: torch.Tensor, adversarial: torch.Tensor, recall: float | None = None) -> Detector:
        """Fit the combination and the threshold on clean (label 0) vs adversarial (label 1) inputs."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score

        require(len(clean) >= 2 and len(adversarial) >= 2, "fit: need at least 2 clean and 2 adversarial inputs")
        require(recall is None or 0 < recall <= 1, f"recall must lie in (0, 1], got {recall}")
        feats = np.concatenate([self.statistics(clean), self.statistics(adversarial)])
        labels = np.r_[np.zeros(len(clean)), np.ones(len(adversarial))]
        self.mean, self.std = feats.mean(0), feats.std(0) + 1e-12
        z = (feats - self.mean) / self.std
        if feats.shape[1] == 1:
            self.coef, self.intercept = np.array([1.0 if roc_auc_score(labels, z[:, 0]) >= 0.5 else -1.0]), 0.0
        else:
            logistic = LogisticRegression(C=1.0, max_iter=1000).fit(z, labels)
            self.coef, self.intercept = logistic.coef_[0], float(logistic.intercept_[0])
        self.fingerprint = model_fingerprint(self.model)
        self.input_shape = tuple(clean.shape[1:])
        self.threshold = choose_threshold(labels, self._combine(feats), recall)
        return self

    def _combine(self, feats: np.ndarray) -> np.ndarray:
        return ((feats - self.mean) / self.std) @ self.coef + self.intercept

    def _check_fitted(self) -> None:
        require(
            self.threshold is not None, f"{self.name}: used before fit(); fit it on clean and adversarial data first"
        )
        current = model_fingerprint(self.model)
        require(
            current == self.fingerprint,
            f"{self.name}: fitted on model {self.fingerprint}, applied to a different model {current}; refit it",
        )

    def score(self, x: torch.Tensor) -> np.ndarray:
        """Detection score per input (higher = more likely adversarial)."""
        self._check_fitted()
        require(
            tuple(x.shape[1:]) == self.input_shape,
            f"x: the detector was fitted on inputs of shape {self.input_shape}, got {tuple(x.shape[1:])}",
        )
        return self._combine(self.statistics(x))

    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Boolean flags: ``True`` where the input is judged adversarial."""
        return self.score(x) >= self.threshold

    def save(self, folder: str | Path) -> Path:
        """Write the fitted detector into ``folder`` (:data:`FILE`, and :data:`ARRAYS` when it
        keeps reference data); :func:`read_detector` reads it back. Returns the folder."""
        from safetensors.torch import save_file

        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fit = FittedState(
            fingerprint=self.fingerprint, input_shape=list(self.input_shape), threshold=self.threshold,
            mean=self.mean.tolist(), std=self.std.tolist(), coef=self.coef.tolist(), intercept=self.intercept,
        )  # fmt: skip
        document = DetectorFile(format=FORMAT, detector=self.key, settings=self.settings(), fit=fit)
        (folder / FILE).write_text(document.model_dump_json(indent=2))
        if arrays := self.arrays():
            save_file(cpu_tensors(arrays), folder / ARRAYS)
        return folder

    def restore(self, fit: FittedState) -> Detector:
        """Set the fitted state read from a file (the fingerprint is checked at every use)."""
        self.fingerprint, self.threshold, self.intercept = fit.fingerprint, fit.threshold, fit.intercept
        self.input_shape = tuple(fit.input_shape)
        self.mean, self.std, self.coef = (np.asarray(v, dtype=float) for v in (fit.mean, fit.std, fit.coef))
        require(
            len(self.mean) == len(self.std) == len(self.coef),
            "fit: mean, std and coef must have one entry per statistic",
        )
        return self


def read_detector(path: str | Path, model: nn.Module, registry: dict[str, type[Detector]]) -> Detector:
    """The detector in the folder ``path`` (or its :data:`FILE`) for ``model``, its class looked up
    in ``registry``; every field is validated and a bad one named in a one-line ``InputError``."""
    from safetensors.torch import load_file

    path = Path(path)
    file = path / FILE if path.is_dir() else path
    require(file.is_file(), f"{path}: not a detector folder ({FILE} missing)")
    document = read(DetectorFile, file)
    require(
        document.detector in registry, f"{file}: unknown detector {document.detector!r}; known: {', '.join(registry)}"
    )
    arrays = load_file(file.parent / ARRAYS) if (file.parent / ARRAYS).exists() else {}
    try:
        detector = registry[document.detector](model, **document.settings, **arrays)
    except TypeError as err:
        raise InputError(f"{file}: settings do not fit the {document.detector} detector ({err})") from None
    return detector.restore(document.fit)
