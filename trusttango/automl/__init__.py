"""AutoDL: anytime search over the unified architecture under a wall-clock budget, scored by ALC."""

from trusttango.automl.alc import LearningCurve, alc, nauc, time_transform
from trusttango.automl.ensemble import compare, ensemble_proba
from trusttango.automl.meta import meta_features, warm_start
from trusttango.automl.runner import SAMPLERS, AnytimeSearch, SearchResult, Snapshot, fgsm_accuracy, make_sampler
from trusttango.automl.space import SearchSpace, space_for, suggest, to_configs
from trusttango.automl.storage import masked, open_storage

__all__ = [
    "SAMPLERS",
    "AnytimeSearch",
    "LearningCurve",
    "SearchResult",
    "SearchSpace",
    "Snapshot",
    "alc",
    "compare",
    "ensemble_proba",
    "fgsm_accuracy",
    "make_sampler",
    "masked",
    "meta_features",
    "nauc",
    "open_storage",
    "space_for",
    "suggest",
    "time_transform",
    "to_configs",
    "warm_start",
]
