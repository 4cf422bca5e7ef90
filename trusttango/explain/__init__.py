"""Explanations: attribution maps, their quality metrics, concepts and the heatmap helper.

Every method: ``Method(model, **options).attribute(inputs, target=None) -> Tensor`` shaped
like ``inputs`` (Grad-CAM: ``(N, 1, H, W)``), ``target`` None = predicted class.
"""

from trusttango.explain.backward_rules import Deconvolution, GuidedBackprop
from trusttango.explain.cam import GradCAM, GuidedGradCAM, conv_layers
from trusttango.explain.compare import METHODS, compare_methods
from trusttango.explain.concepts import TCAVResult, cka_matrix, linear_cka, load_image_set, tcav
from trusttango.explain.gradient import InputXGradient, IntegratedGradients, Saliency, SmoothGrad
from trusttango.explain.heatmap import to_heatmap
from trusttango.explain.meaningful import MeaningfulPerturbation
from trusttango.explain.metrics import deletion_game, deletion_insertion, pointing_game, randomisation_check
from trusttango.explain.net2vec import Net2VecResult, net2vec
from trusttango.explain.occlusion import Occlusion
from trusttango.explain.regions import RegionAblation, region_ablation

__all__ = [
    "METHODS",
    "cka_matrix",
    "compare_methods",
    "linear_cka",
    "load_image_set",
    "net2vec",
    "region_ablation",
    "tcav",
    "Net2VecResult",
    "RegionAblation",
    "TCAVResult",
    "deletion_game",
    "deletion_insertion",
    "pointing_game",
    "randomisation_check",
    "Deconvolution",
    "GradCAM",
    "GuidedBackprop",
    "GuidedGradCAM",
    "InputXGradient",
    "IntegratedGradients",
    "MeaningfulPerturbation",
    "Occlusion",
    "Saliency",
    "SmoothGrad",
    "conv_layers",
    "to_heatmap",
]
