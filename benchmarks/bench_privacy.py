"""Privacy benchmark: DP-SGD cost and utility, membership leakage with / without DP, Mondrian on Adult.

1. Step time of DP-SGD (Opacus hooks and ghost clipping, through our Hook) vs non-private
   training of the same model on the same batches (ratio; goal <= 2x).
2. Fashion-MNIST test accuracy at epsilon = 1, 3, 8 (delta = 1e-5) and non-private
   (anchor: ~86 % at epsilon 3, Tramer & Boneh 2021 with ScatterNet features).
3. Membership-inference AUC (Yeom loss threshold) of an overfit model vs the same model with DP.
4. Mondrian on UCI Adult at k = 5, 10, 50: time, NCP, k checked by pycanon, linkage re-identifications.

Reduced size by default (a 6k-image subset, few epochs); TRUSTTANGO_FULL=1 for the full run.
Usage: ``.venv/bin/python benchmarks/bench_privacy.py [steps] [accuracy] [membership] [mondrian]``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import append  # noqa: E402

from trusttango.data import load_builtin, stratified_indices  # noqa: E402
from trusttango.data.tabular import adult_frame  # noqa: E402
from trusttango.models import build_model, config_for  # noqa: E402
from trusttango.privacy.anonymity import anonymize, linkage_attack  # noqa: E402
from trusttango.privacy.dp import DPSGD  # noqa: E402
from trusttango.privacy.membership import loss_threshold_attack  # noqa: E402
from trusttango.train import TrainConfig, accuracy, fit  # noqa: E402

FULL = os.environ.get("TRUSTTANGO_FULL") == "1"
NOTE = "" if FULL else "Reduced size; CPU shared with other jobs at run time (timings noisy)."


def _subset(ds, n, seed=0):
    if n >= len(ds):
        return ds
    idx, _ = stratified_indices(ds.y.numpy(), (n / len(ds), 1 - n / len(ds)), seed)
    return ds.subset(idx)


def _model(shape, k=10, **opts):
    return build_model(config_for(shape, k, norm="group", **opts), seed=0)


def step_times(train) -> list[list[object]]:
    cfg = TrainConfig(epochs=1, batch_size=128, optimizer="sgd", lr=0.1, schedule="constant", progress=False)
    rows, base = [], None
    for name, hooks in [("non-private", []), ("DP hooks", [DPSGD(noise_multiplier=1.0)]),
                        ("DP ghost clipping", [DPSGD(noise_multiplier=1.0, grad_sample_mode="ghost")])]:  # fmt: skip
        model = _model(train.input_shape)
        start = time.perf_counter()
        history = fit(model, train, None, cfg, hooks)
        per_step = (time.perf_counter() - start) / max(1, history.records[-1].step)
        base = base or per_step
        rows.append([name, per_step * 1000, per_step / base])
    return rows


def dp_accuracy(splits, epochs: int) -> list[list[object]]:
    rows = []
    for eps in (None, 1.0, 3.0, 8.0):
        hooks = [] if eps is None else [DPSGD(epsilon=eps, delta=1e-5, max_grad_norm=1.0)]
        cfg = TrainConfig(epochs=epochs, batch_size=256, optimizer="sgd", lr=0.5 if eps else 0.05,
                          schedule="constant", progress=False)  # fmt: skip
        model = _model(splits.train.input_shape)
        start = time.perf_counter()
        fit(model, splits.train, None, cfg, hooks)
        spent = hooks[0].meta()["privacy"]["epsilon"] if hooks else float("inf")
        rows.append(
            [
                f"epsilon {eps}" if eps else "non-private",
                spent,
                accuracy(model, splits.test),
                time.perf_counter() - start,
            ]
        )
    return rows


def membership(digits) -> list[list[object]]:
    order = np.random.default_rng(0).permutation(len(digits.train))
    members, nonmembers = digits.train.subset(order[:300]), digits.train.subset(order[300:600])
    rows = []
    for name, hooks, lr in [
        ("overfit, non-private", [], 3e-3),
        ("same model, DP epsilon 3", [DPSGD(epsilon=3.0)], 0.3),
    ]:
        model = _model(digits.train.input_shape, depth=2, width=0.25, dropout=0.0)
        opt = "sgd" if hooks else "adamw"
        cfg = TrainConfig(
            epochs=30, batch_size=32, lr=lr, optimizer=opt, weight_decay=0.0, schedule="constant", progress=False
        )
        fit(model, members, None, cfg, hooks)
        result = loss_threshold_attack(model, members, nonmembers)
        rows.append([name, accuracy(model, members), accuracy(model, nonmembers), result.auc, result.advantage])
    return rows


def mondrian_adult() -> list[list[object]]:
    from pycanon import anonymity

    frame = adult_frame() if FULL else adult_frame().iloc[:15000]
    qi = ["age", "sex", "race", "marital_status", "education_num"]
    before = linkage_attack(frame, frame, qi).reidentified
    rows = []
    for k in (5, 10, 50):
        start = time.perf_counter()
        result = anonymize(frame, k, qi, ["occupation"])
        elapsed = time.perf_counter() - start
        after = linkage_attack(result.table, frame, qi).reidentified
        rows.append(
            [
                k,
                len(frame),
                elapsed,
                result.ncp,
                result.n_classes,
                anonymity.k_anonymity(result.table, qi),
                before,
                after,
            ]
        )
    return rows


def main(parts: list[str]) -> None:
    """Run the named parts (default: all): steps, accuracy, membership, mondrian."""
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    parts = parts or ["steps", "accuracy", "membership", "mondrian"]
    if "steps" in parts or "accuracy" in parts:
        fmnist = load_builtin("fashion-mnist", seed=0)
    if "steps" in parts:
        rows = step_times(_subset(fmnist.train, 2560))
        title = "Privacy: DP-SGD step time vs non-private (Fashion-MNIST small CNN, batch 128, GroupNorm)"
        append(title, ["mode", "ms / step", "ratio to non-private"], rows, NOTE)
    if "accuracy" in parts:
        test = _subset(fmnist.test, 10000 if FULL else 2000)
        splits = type(fmnist)(_subset(fmnist.train, len(fmnist.train) if FULL else 6000), fmnist.val, test)
        append("Privacy: Fashion-MNIST accuracy under DP-SGD (delta 1e-5, RDP accountant)",
               ["run", "epsilon spent", "test accuracy", "time s"], dp_accuracy(splits, 10 if FULL else 2),
               "Anchor: ~86 % at epsilon 3 (Tramer & Boneh 2021, ScatterNet features). " + NOTE)  # fmt: skip
    if "membership" in parts:
        append("Privacy: membership inference (Yeom loss threshold), overfit vs DP (sklearn digits, 300 members)",
               ["model", "member accuracy", "non-member accuracy", "attack AUC", "advantage"],
               membership(load_builtin("digits", seed=0)), NOTE)  # fmt: skip
    if "mondrian" in parts:
        append("Privacy: Mondrian k-anonymity on UCI Adult (QI age, sex, race, marital_status, education_num)",
               ["k", "rows", "time s", "NCP", "classes", "k (pycanon)", "re-identified raw", "re-identified after"],
               mondrian_adult(), NOTE)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
