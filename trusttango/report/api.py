"""``trusttango.audit(model, data)``: the trust audit from Python, on any ``nn.Module``.

The CLI's ``trusttango audit`` and this function run the same stages
(:func:`~trusttango.report.audit.run_stages`); this one takes the objects a notebook holds.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import nn

from trusttango.data import LabelledDataset, Splits, load_data
from trusttango.errors import InputError
from trusttango.models.external import ModelSource
from trusttango.models.io import SavedModel, load_model
from trusttango.models.unified import check_compatible
from trusttango.modes import eval_mode
from trusttango.report.audit import AuditConfig, check_config, run_stages
from trusttango.report.result import AuditResult, check_out
from trusttango.train import resolve_device


def audit(
    model: nn.Module | ModelSource | SavedModel | str | Path,
    data: Splits | LabelledDataset | str | Path,
    config: AuditConfig | None = None,
    out: str | Path | None = None,
    progress: bool = False,
) -> AuditResult:
    """Audit ``model`` on ``data``; write the report into ``out`` when given.

    ``model``: an ``nn.Module`` returning ``(N, K)`` logits for inputs in [0, 1] (a model that
    expects other values or normalised inputs: a :class:`~trusttango.models.external.ModelSource`
    with ``module=``, ``value_range``, ``mean``, ``std``), a loaded ``SavedModel``, or a
    trusttango model directory. Its train/eval flags are restored afterwards. A module or
    ``SavedModel`` passed in is audited on the device it lives on; a model the audit loads from
    files (a path, a ``ModelSource`` without ``module``) is placed by ``config.device``.

    ``data``: :class:`~trusttango.data.Splits`; a ``LabelledDataset`` taken as the test split
    alone (stages that need the training data, membership inference, say so and are skipped);
    or a built-in name or path as the CLI takes it. ``config``'s ``data``, ``model``,
    ``model_source`` and ``out`` are taken from the arguments; the rest applies as in the CLI.
    The threat model (the robustness budget) is the one of the data's name unless
    ``config.robust_eps`` is set.
    """
    config = config or AuditConfig()
    splits = _splits(data, config.seed)
    source = (
        model if isinstance(model, ModelSource) else ModelSource(module=model) if isinstance(model, nn.Module) else None
    )
    name = str(data) if isinstance(data, str | Path) else splits.test.name.split("/")[0]
    directory = Path(model) if isinstance(model, str | Path) else None  # its files are hashed in the provenance
    config = replace(config, data=name, model=directory, model_source=source, out=Path(out or config.out))
    check_config(config)
    with eval_mode(model) if isinstance(model, nn.Module) else nullcontext():  # the user's flags come back
        saved = source.load(splits.test) if source else _saved(model, splits)
        if isinstance(model, str | Path) or (isinstance(model, ModelSource) and model.module is None):
            saved.model.to(resolve_device(config.device))  # loaded here from files, placed as the CLI places it
        if out is not None:
            check_out(config.out, config.force)
        result = run_stages(config, splits, saved, progress)
    if out is not None:
        result.write(config.out, force=True)
    return result


def _splits(data: Splits | LabelledDataset | str | Path, seed: int) -> Splits:
    if isinstance(data, Splits):
        return data
    if isinstance(data, LabelledDataset):
        empty = data.subset(np.arange(0))
        return Splits(empty, empty, data)
    if isinstance(data, str | Path):
        return load_data(str(data), seed=seed)
    raise InputError(f"data: expected Splits, a LabelledDataset, a built-in name or a path, got {type(data).__name__}")


def _saved(model: SavedModel | str | Path, splits: Splits) -> SavedModel:
    if isinstance(model, str | Path):
        model = load_model(model)
    if not isinstance(model, SavedModel):
        raise InputError(f"model: expected an nn.Module, a ModelSource, a SavedModel or a path, got {type(model)}")
    check_compatible(model.config, splits.test)
    return model
