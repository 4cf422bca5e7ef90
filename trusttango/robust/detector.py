"""Adversarial-input detectors that leave the network unchanged.

* :class:`EntropyDetector` — the seed's detector (Amirian et al. 2018, "Two to Trust" sec. 3,
  SPECS 2): the mean local spatial entropy of the guided-backprop feature response of the
  predicted class (optionally a few more statistics of the entropy image combined by a small
  logistic model), thresholded on the ROC of clean vs attacked validation data.
* :class:`FeatureSqueezingDetector` — Xu, Evans & Qi (NDSS 2018), eq. 1: the largest L1
  distance between the prediction on ``x`` and on squeezed copies (bit-depth reduction,
  median filter).
* :class:`KernelDensityDetector` — Feinman et al. (2017), eqs. 1-2: kernel density of the
  penultimate features under the predicted class, and Monte-Carlo dropout uncertainty,
  combined by logistic regression.

All share :class:`Detector`: ``fit(clean, adversarial)``, ``score`` (higher = more likely
adversarial), ``predict`` (``score >= threshold``); a fingerprint of the model's weights is
recorded at fit and checked at every use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from torch import nn

from trusttango.errors import InputError, require
from trusttango.modes import eval_mode
from trusttango.plotting import save_figure
from trusttango.robust.entropy import local_entropy

matplotlib.use("Agg")

Responder = Callable[[nn.Module, torch.Tensor], torch.Tensor]
FORMAT = "trusttango-detector/2"
AUTO = "auto"
ALL = "all"
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
GUIDED, ACTIVATION, BOTH = "guided", "activation", "both"
SIGNALS = (GUIDED, ACTIVATION, BOTH)


def guided_response(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """Feature response: the guided-backprop signal of the predicted class (SPECS 2) w.r.t. ``x``,
    or (``layer`` = a module name) w.r.t. that inner module's output, read on the same backward pass."""
    return feature_responses(model, x, [layer], GUIDED)[0]


def feature_responses(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str | None], signal: str = GUIDED
) -> list[torch.Tensor]:
    """Responses of ``x`` at each of ``layers`` (``None`` = the input), read on one pass.

    ``signal``: ``"guided"`` the guided-backprop signal of the predicted class (SPECS 2) at the
    layer, ``"activation"`` the layer's forward output (the input image itself for ``None``),
    ``"both"`` the two per layer (guided first).
    """
    from trusttango.explain import GuidedBackprop

    grads: dict[str, list[torch.Tensor]] = {name: [] for name in layers if name is not None}
    acts: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            acts[name] = out.detach()
            if signal != ACTIVATION:
                out.register_hook(grads[name].append)

        return hook

    handles = [_submodule(model, name).register_forward_hook(keep(name)) for name in grads]
    try:
        if signal == ACTIVATION:
            with torch.no_grad():
                model(x)
        else:
            at_input = GuidedBackprop(model).attribute(x, target=None)
    finally:
        for handle in handles:
            handle.remove()
    if signal != ACTIVATION:
        for name, kept in grads.items():
            require(
                len(kept) == 1, f"layer {name!r}: expected one tensor output on the path to the logits, got {len(kept)}"
            )
    out = []
    for name in layers:
        if signal != ACTIVATION:
            out.append(at_input if name is None else grads[name][0].detach())
        if signal != GUIDED:
            out.append(x.detach() if name is None else acts[name])
    return out


def _submodule(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        raise InputError(f"layer: no module named {layer!r} in the model") from None


def spatial_relu_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, int]]]:
    """Names and output sizes (H, W) of the ReLU modules with 2-D feature maps, in forward order."""
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            shapes.setdefault(name, tuple(out.shape[2:]))

        return hook

    handles = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model.eval()(x[:1].to(model_device(model)))
    finally:
        for h in handles:
            h.remove()
    return [(name, shape) for name, shape in shapes.items() if len(shape) == 2]


def full_resolution_layer(model: nn.Module, x: torch.Tensor) -> str | None:
    """The deepest ReLU module whose output keeps the spatial size of the first ReLU's output
    (the last feature map before the first downsampling), or ``None`` (the input) if there is none."""
    spatial = spatial_relu_layers(model, x)
    if not spatial:
        return None
    return [name for name, shape in spatial if shape == spatial[0][1]][-1]


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's parameter and buffer names, shapes and values (16 hex digits)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _batches(x: torch.Tensor, batch_size: int):
    require(isinstance(x, torch.Tensor) and x.ndim >= 2, "inputs: expected a tensor batch (N, ...)")
    require(bool(torch.isfinite(x).all()), "inputs: contain NaN or infinite values")
    return x.split(batch_size)


def choose_threshold(labels: np.ndarray, scores: np.ndarray, recall: float | None = None) -> float:
    """Threshold on the ROC curve: the highest one reaching ``recall`` on adversarial inputs,
    or (``recall=None``) the one maximising Youden's J = TPR - FPR."""
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

    def statistics(self, x: torch.Tensor) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def fit(self, clean: torch.Tensor, adversarial: torch.Tensor, recall: float | None = None) -> Detector:
        """Fit the combination and the threshold on clean (label 0) vs adversarial (label 1) inputs."""
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
        return self._combine(self.statistics(x))

    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Boolean flags: ``True`` where the input is judged adversarial."""
        return self.score(x) >= self.threshold


class EntropyDetector(Detector):
    """Local spatial entropy of the feature response (seed "Two to Trust", sec. 3).

    ``window`` and ``bins`` are the entropy's neighbourhood side and histogram bins
    (:func:`~trusttango.robust.entropy.local_entropy`); several windows, e.g. ``(3, 5)``, give one
    entropy image per window and response layer (multi-scale). ``layer`` picks the response: ``None``
    the guided-backprop map at the input (the seed's figure), a module name the guided signal
    at that module's output, ``"auto"`` (default) the last full-resolution ReLU
    (:func:`full_resolution_layer`), ``"all"`` every ReLU with a 2-D feature map
    (:func:`spatial_relu_layers`), or a list of module names; ``"auto"`` and ``"all"`` are
    resolved at first use. ``summary=False`` scores the mean entropy (the seed's statistic);
    ``summary=True`` adds the standard deviation, the quantiles :data:`QUANTILES` and the
    non-zero fraction of the entropy image. Several statistics (several layers, or a summary)
    are combined by a small logistic model. ``signal`` is what is read at each layer
    (:func:`feature_responses`): ``"guided"`` (default, the seed's guided-backprop response),
    ``"activation"`` (the forward feature map) or ``"both"``. ``responder(model, x)`` replaces the
    response altogether (``layer`` and ``signal`` are then unused).
    """

    name = "entropy detector"

    def __init__(
        self,
        model: nn.Module,
        window: int | Sequence[int] = 3,
        bins: int = 256,
        summary: bool = False,
        responder: Responder | None = None,
        batch_size: int = 256,
        layer: str | list[str] | None = AUTO,
        signal: str = GUIDED,
    ) -> None:
        super().__init__(model, batch_size)
        require(signal in SIGNALS, f"signal: expected one of {SIGNALS}, got {signal!r}")
        self.bins, self.summary, self.layer, self.signal = bins, summary, layer, signal
        self.custom_responder = responder is not None
        self.responder = responder or (lambda net, x: feature_responses(net, x, self.layers(x)[:1], signal)[0])
        self.windows = (window,) if isinstance(window, int) else tuple(window)
        require(len(self.windows) > 0, "window: an empty list names no neighbourhood size")
        for side in self.windows:  # validates window and bins
            local_entropy(torch.zeros(1, 1, side, side), side, bins)
        require(layer != [], "layer: an empty list names no response layer")
        for name in layer if isinstance(layer, list) else [] if layer in (None, AUTO, ALL) else [layer]:
            _submodule(model, name)  # an unknown name fails here, not at first use

    def layers(self, x: torch.Tensor) -> list[str | None]:
        """The response layers, resolving ``"auto"`` / ``"all"`` on the model's output shapes for ``x``."""
        if self.layer == AUTO:
            self.layer = full_resolution_layer(self.model, x)
        elif self.layer == ALL:
            self.layer = [name for name, _ in spatial_relu_layers(self.model, x)] or None
        return list(self.layer) if isinstance(self.layer, list) else [self.layer]

    def entropies(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Entropy images (N, H, W) of the responses of ``x``, one per response layer, signal and
        window (layer-major: all signals and windows of the first layer, then the next layer's)."""
        layers = None if self.custom_responder else self.layers(x)
        device = model_device(self.model)
        per_batch = []  # entropy images only: a batch's responses are dropped once summarised
        for b in _batches(x, self.batch_size):
            b = b.to(device)
            maps = (
                [self.responder(self.model, b)]
                if layers is None
                else feature_responses(self.model, b, layers, self.signal)
            )
            per_batch.append([local_entropy(m, side, self.bins).cpu() for m in maps for side in self.windows])
        return [torch.cat(images) for images in zip(*per_batch, strict=True)]

    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        """Entropy images (N, H, W) of the responses of ``x`` at the first response layer and window."""
        return self.entropies(x)[0]

    def statistics(self, x: torch.Tensor) -> np.ndarray:
        return np.concatenate([self._summarise(e.flatten(1)) for e in self.entropies(x)], 1)

    def _summarise(self, flat: torch.Tensor) -> np.ndarray:
        mean = flat.mean(1, keepdim=True)
        if not self.summary:
            return mean.numpy()
        quantiles = torch.quantile(flat, torch.tensor(QUANTILES), dim=1).T
        nonzero = (flat > 0).float().mean(1, keepdim=True)
        return torch.cat([mean, flat.std(1, keepdim=True), quantiles, nonzero], 1).numpy()

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector as JSON (settings, combination, threshold, fingerprint)."""
        self._check_fitted()
        document = {
            "format": FORMAT, "window": list(self.windows), "bins": self.bins, "summary": self.summary,
            "layer": self.layer, "signal": self.signal,
            "fingerprint": self.fingerprint, "threshold": self.threshold, "mean": self.mean.tolist(),
            "std": self.std.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept,
        }  # fmt: skip
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, model: nn.Module) -> EntropyDetector:
        """Read a detector written by :meth:`save` for ``model`` (its fingerprint is checked at use)."""
        path = Path(path)
        require(path.is_file(), f"{path}: detector file not found")
        try:
            doc = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(f"{path}: corrupt JSON ({err})") from None
        require(isinstance(doc, dict) and doc.get("format") == FORMAT, f"{path}: not a {FORMAT} file")
        detector = cls(
            model, doc["window"], doc["bins"], doc["summary"], layer=doc["layer"], signal=doc.get("signal", GUIDED)
        )
        detector.fingerprint, detector.threshold, detector.intercept = (
            doc["fingerprint"],
            doc["threshold"],
            doc["intercept"],
        )
        detector.mean, detector.std, detector.coef = (np.asarray(doc[k], dtype=float) for k in ("mean", "std", "coef"))
        return detector


def bit_depth(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Reduce [0, 1] inputs to ``bits`` bits per value (Xu et al. 2018, sec. 4.1)."""
    levels = 2**bits - 1
    return torch.round(x.clamp(0, 1) * levels) / levels


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Per-channel ``size x size`` median filter with reflect padding (Xu et al. 2018, sec. 4.2)."""
    n, c, h, w = x.shape
    pad = size // 2
    padded = F.pad(x, (pad, size - 1 - pad, pad, size - 1 - pad), mode="reflect")
    patches = F.unfold(padded.reshape(n * c, 1, *padded.shape[-2:]), size)
    return patches.median(1).values.view(n, c, h, w)


class FeatureSqueezingDetector(Detector):
    """Feature squeezing (Xu, Evans & Qi 2018), eq. 1: ``max_s ||p(x) - p(s(x))||_1`` over the
    squeezers bit-depth reduction to ``bits`` bits and a ``median`` x ``median`` median filter."""

    name = "feature squeezing"

    def __init__(self, model: nn.Module, bits: int = 4, median: int = 3, batch_size: int = 256) -> None:
        super().__init__(model, batch_size)
        require(1 <= bits <= 8, f"bits must lie in [1, 8], got {bits}")
        require(median >= 2, f"median must be >= 2, got {median}")
        self.bits, self.median = bits, median

    @torch.no_grad()
    def statistics(self, x: torch.Tensor) -> np.ndarray:
        out = []
        self.model.eval()
        for b in _batches(x, self.batch_size):
            b = b.to(model_device(self.model))
            p = torch.softmax(self.model(b), 1)
            squeezed = [
                torch.softmax(self.model(s), 1) for s in (bit_depth(b, self.bits), median_filter(b, self.median))
            ]
            out.append(torch.stack([(p - q).abs().sum(1) for q in squeezed]).amax(0).cpu())
        return torch.cat(out).numpy()[:, None]


def _penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features: ``model.features(x)`` where the model has it, else the logits."""
    return model.features(x) if hasattr(model, "features") else model(x)


class KernelDensityDetector(Detector):
    """Kernel density and Bayesian uncertainty (Feinman et al. 2017).

    Density (eq. 1): ``log (1/|X_t|) sum_{x_i in X_t} exp(-||f(x) - f(x_i)||^2 / sigma^2)`` over the
    clean ``reference`` examples of the predicted class ``t``; ``sigma`` defaults to the median
    pairwise feature distance. Uncertainty (eq. 2): the variance of ``mc_samples`` Monte-Carlo
    dropout predictions (zero for models without dropout). Both combined by logistic regression.
    """

    name = "kernel density"

    def __init__(
        self,
        model: nn.Module,
        reference: torch.Tensor,
        reference_labels: torch.Tensor,
        bandwidth: float | None = None,
        mc_samples: int = 20,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model, batch_size)
        require(len(reference) == len(reference_labels) > 1, "reference: need >= 2 examples with one label each")
        require(mc_samples >= 2, f"mc_samples must be >= 2, got {mc_samples}")
        self.mc_samples = mc_samples
        self.ref_features, _ = self._features(reference)
        self.ref_labels = torch.as_tensor(reference_labels).long().cpu()
        self.bandwidth = bandwidth or float(torch.pdist(self.ref_features[:1000]).median())

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features and predicted classes of ``x``."""
        self.model.eval()
        feats, preds = [], []
        for b in _batches(x, self.batch_size):
            b = b.to(model_device(self.model))
            feats.append(_penultimate(self.model, b).cpu())
            preds.append(self.model(b).argmax(1).cpu())
        return torch.cat(feats), torch.cat(preds)

    def _log_density(self, feats: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        kernel = -torch.cdist(feats, self.ref_features).square() / self.bandwidth**2
        same = pred[:, None] == self.ref_labels[None, :]
        counts = same.sum(1).clamp_min(1)
        return torch.logsumexp(kernel.masked_fill(~same, -torch.inf), 1).clamp_min(-1e30) - counts.log()

    @torch.no_grad()
    def _uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        dropouts = [m for m in self.model.modules() if isinstance(m, nn.Dropout)]
        out = []
        with eval_mode(self.model):  # MC dropout: dropout on, everything else (BatchNorm) in eval mode
            for m in dropouts:
                m.train()
            for b in _batches(x, self.batch_size):
                b = b.to(model_device(self.model))
                probs = torch.stack([torch.softmax(self.model(b), 1) for _ in range(self.mc_samples)])
                out.append((probs.square().sum(2).mean(0) - probs.mean(0).square().sum(1)).cpu())
        return torch.cat(out)

    def statistics(self, x: torch.Tensor) -> np.ndarray:
        feats, pred = self._features(x)
        return torch.stack([-self._log_density(feats, pred), self._uncertainty(x)], 1).numpy()


@dataclass
class DetectionResult:
    """Detection quality on one attack: adversarial inputs are the positive class."""

    attack: str
    auc: float
    precision: float
    recall: float
    fpr_at_95_recall: float
    n_clean: int
    n_adversarial: int

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_detector(
    detector: Detector, clean: torch.Tensor, adversarial: torch.Tensor, attack: str = ""
) -> DetectionResult:
    """AUC, precision and recall at the fitted threshold, and FPR at 95 % recall."""
    require(
        len(clean) > 0 and len(adversarial) > 0,
        f"evaluate_detector{f' ({attack})' if attack else ''}: need clean and adversarial inputs, "
        f"got {len(clean)} and {len(adversarial)} (did the attack flip no prediction?)",
    )
    s_clean, s_adv = detector.score(clean), detector.score(adversarial)
    labels = np.r_[np.zeros(len(s_clean)), np.ones(len(s_adv))]
    scores = np.r_[s_clean, s_adv]
    flagged = scores >= detector.threshold
    tp = int((flagged & (labels == 1)).sum())
    fpr, tpr, _ = roc_curve(labels, scores)
    return DetectionResult(
        attack,
        float(roc_auc_score(labels, scores)),
        tp / max(1, int(flagged.sum())),
        tp / len(s_adv),
        float(fpr[np.argmax(tpr >= 0.95)]),
        len(s_clean),
        len(s_adv),
    )


def adversarial_pairs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean inputs the model classifies correctly and whose attacked copy it misclassifies,
    with those copies (the usual protocol of Feinman et al. 2017 and Xu et al. 2018)."""
    device = model_device(model)
    model.eval()
    x, y = x.to(device), torch.as_tensor(y).to(device)
    x_adv = attack(x, y).detach()
    with torch.no_grad():
        keep = (model(x).argmax(1) == y) & (model(x_adv).argmax(1) != y)
    return x[keep].cpu(), x_adv[keep].cpu()


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """ROC PNG: one curve per name from ``(clean scores, adversarial scores)``, AUC in the legend."""
    import matplotlib.pyplot as plt

    require(len(curves) > 0, "plot_roc: no curves given")
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (s_clean, s_adv) in curves.items():
        labels = np.r_[np.zeros(len(s_clean)), np.ones(len(s_adv))]
        scores = np.r_[s_clean, s_adv]
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(
        xlabel="false-positive rate", ylabel="true-positive rate (recall)", title=title or "adversarial detection ROC"
    )
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path, dpi=100)
