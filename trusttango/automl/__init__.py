"""AutoDL: anytime search over the unified architecture under a wall-clock budget, scored by ALC.

The names below are exported lazily (PEP 562): ``import trusttango.automl`` loads neither
Optuna nor SQLAlchemy until a search, sampler or storage is used. The ALC names are imported
at once: the function ``alc`` shares its name with its module, which would otherwise shadow it
as soon as any other submodule imports ``trusttango.automl.alc``.
"""

from __future__ import annotations

from trusttango.automl.alc import LearningCurve, alc, nauc, time_transform
from trusttango.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["compare", "ensemble_proba"], "ensemble"),
    **dict.fromkeys(["meta_features", "warm_start"], "meta"),
    **dict.fromkeys(
        ["SAMPLERS", "AnytimeSearch", "SearchResult", "Snapshot", "fgsm_accuracy", "make_sampler"], "runner"
    ),
    **dict.fromkeys(["SearchSpace", "space_for", "suggest", "to_configs"], "space"),
    **dict.fromkeys(["masked", "open_storage"], "storage"),
}

__all__ = ["LearningCurve", "alc", "nauc", "time_transform", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
