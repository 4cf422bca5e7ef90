"""AutoDL benchmark: each sampler's ALC (ChaLearn AutoDL 2019 protocol) on digits and a
Fashion-MNIST subset, against the anchor: the fixed default architecture with default
hyperparameters (``trusttango train``'s defaults), retrained with new seeds until the budget
is spent, scored by the same anytime protocol.

Reduced size by default (T = 45 s, 1.5k-example Fashion-MNIST subset, small CNN only);
TRUSTTANGO_FULL=1 runs T = 1200 s on full Fashion-MNIST with every backbone.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append  # noqa: E402

from trusttango.automl import SAMPLERS, AnytimeSearch, SearchSpace, space_for  # noqa: E402
from trusttango.data import Splits, load_builtin, stratified_indices  # noqa: E402

FULL = os.environ.get("TRUSTTANGO_FULL") == "1"
BUDGET = 1200.0 if FULL else float(os.environ.get("BENCH_AUTOML_BUDGET", "45"))


def _subset(splits: Splits, n: int) -> Splits:
    def take(ds, k):
        if k >= len(ds):
            return ds
        idx, _ = stratified_indices(ds.y.numpy(), (k / len(ds), 1 - k / len(ds)), 0)
        return ds.subset(idx)

    return Splits(take(splits.train, n), take(splits.val, n // 6), take(splits.test, n // 3))


def _fixed_default(space: SearchSpace) -> SearchSpace:
    """A degenerate space holding only the foundation's defaults (ModelConfig / TrainConfig)."""
    point = {"backbone": "small_cnn", "fusion": "none", "input_scale": 1, "width": 0.5, "depth": 3, "bottleneck": 128,
             "dropout": 0.2, "activation": "relu", "augment": "none", "optimizer": "adamw", "lr": 2e-3,
             "schedule": "onecycle", "batch_size": 128, "epochs": 5}  # fmt: skip
    return SearchSpace(
        modality=space.modality, side=space.side, backbones=("small_cnn",), fusions=("none",), input_scales=(1,),
        widths=(0.5,), depth=(3, 3), bottlenecks=(128,), dropout=(0.2, 0.2), activations=("relu",), augments=("none",),
        optimizers=("adamw",), lr=(2e-3, 2e-3), schedules=("onecycle",), batch_sizes=(128,), epochs=(5, 5),
        default=point,
    )  # fmt: skip


def main() -> None:
    torch.set_num_threads(1 if not FULL else max(1, os.cpu_count() or 1))
    data = {
        "digits": load_builtin("digits", 0),
        "fashion-mnist": load_builtin("fashion-mnist", 0) if FULL else _subset(load_builtin("fashion-mnist", 0), 1500),
    }
    backbones = ("small_cnn", "resnet18", "mobilenet_v2") if FULL else ("small_cnn",)
    rows, alcs = [], {}
    for name, splits in data.items():
        space = space_for(splits.train, backbones=backbones, epochs=(1, 10 if FULL else 4))
        runs = [(s, space, "accuracy") for s in SAMPLERS] + [("fixed default", _fixed_default(space), "accuracy")]
        for label, sp, objective in runs:
            sampler = "random" if label == "fixed default" else label
            result = AnytimeSearch(splits, BUDGET, sampler, space=sp, objective=objective, prune=True).run()
            best = result.best
            acc = (
                float(np.mean(best.model()(splits.test.x).argmax(1).numpy() == splits.test.y.numpy())) if best else 0.0
            )
            alcs.setdefault(label, []).append(result.curve.alc)
            rows.append([name, label, result.curve.alc, acc, result.trials_run, len(result.curve.times)])
            print(rows[-1], flush=True)
    for label, values in alcs.items():
        ratio = np.mean(values) / np.mean(alcs["fixed default"])
        rows.append(["mean", label, float(np.mean(values)), "", "", f"ALC ratio vs fixed default {ratio:.3f}"])
    append(
        f"AutoML: sampler ALC vs fixed default (T = {BUDGET:g} s)",
        ["dataset", "sampler", "ALC", "best test acc", "trials", "predictions"],
        rows,
        notes=("Reduced size (1.5k Fashion-MNIST subset, small_cnn only, 1 thread); " if not FULL else "")
        + "CPU shared with ~8 concurrent jobs: absolute ALCs are pessimistic, compare within the table.",
    )


if __name__ == "__main__":
    main()
