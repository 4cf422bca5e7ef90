"""Detection of adversarial inputs, with the network left unchanged, and the zoom-in classifier.

Every detector: ``Detector(model, **options).fit(clean, adversarial)``, then ``score(x)``
(higher = more likely adversarial) and ``predict(x)``; ``save(folder)`` and
:func:`load_detector` in one format for all; :data:`DETECTORS` names them.

* :class:`EntropyDetector`: local spatial entropy of the feature response (Amirian et al. 2018),
* :class:`FeatureSqueezingDetector`: feature squeezing (Xu, Evans & Qi 2018),
* :class:`KernelDensityDetector`: kernel density and dropout uncertainty (Feinman et al. 2017).

The zoom-in classifier's model format (:mod:`trusttango.detect.zoom`) is an entry point that
:func:`trusttango.models.load_model` finds without importing this package.
"""

from pathlib import Path

from torch import nn

from trusttango.detect.base import Detector, choose_threshold, model_fingerprint, read_detector
from trusttango.detect.density import KernelDensityDetector
from trusttango.detect.entropy import EntropyDetector, plot_detector_examples
from trusttango.detect.evaluation import (
    DETECTION_ATTACKS,
    DetectionResult,
    adversarial_pairs,
    attack_pairs,
    detection_attack,
    detection_roc,
    evaluate_detector,
    score_attacks,
)
from trusttango.detect.local_entropy import local_entropy, max_entropy, plot_entropy, to_levels
from trusttango.detect.responses import feature_responses, full_resolution_layer, guided_response, spatial_relu_layers
from trusttango.detect.squeezing import FeatureSqueezingDetector, bit_depth, median_filter
from trusttango.detect.zoom import ZoomClassifier, load_zoom, save_zoom, train_zoom

DETECTORS: dict[str, type[Detector]] = {
    cls.key: cls for cls in (EntropyDetector, FeatureSqueezingDetector, KernelDensityDetector)
}


def load_detector(path: str | Path, model: nn.Module) -> Detector:
    """The detector :meth:`Detector.save` wrote into the folder ``path``, for ``model`` (any
    detector of :data:`DETECTORS`; its fingerprint and input shape are checked at use)."""
    return read_detector(path, model, DETECTORS)


__all__ = [
    "DETECTION_ATTACKS",
    "DETECTORS",
    "DetectionResult",
    "Detector",
    "ZoomClassifier",
    "EntropyDetector",
    "FeatureSqueezingDetector",
    "KernelDensityDetector",
    "adversarial_pairs",
    "attack_pairs",
    "bit_depth",
    "choose_threshold",
    "detection_attack",
    "detection_roc",
    "evaluate_detector",
    "feature_responses",
    "full_resolution_layer",
    "guided_response",
    "load_detector",
    "load_zoom",
    "local_entropy",
    "max_entropy",
    "median_filter",
    "model_fingerprint",
    "plot_detector_examples",
    "plot_entropy",
    "save_zoom",
    "score_attacks",
    "spatial_relu_layers",
    "to_levels",
    "train_zoom",
]
