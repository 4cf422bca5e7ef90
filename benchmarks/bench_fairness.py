"""Fairness benchmark: (1) Adult, plain vs reweighted (Kamiran & Calders 2012) classifier, group gaps
from trusttango vs fairlearn (anchor) as ratios; (2) Clever Hans demo on Fashion-MNIST: accuracy on
clean / tagged / tag-swapped test sets for a clean, a tagged and a right-for-the-right-reasons model.

Reduced size by default (CPU); ``--full`` for the full data.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from fairlearn.metrics import demographic_parity_difference, equal_opportunity_difference, equalized_odds_difference

from benchmarks.harness import make_parser, parse, write_table
from trusttango.data import Splits, load_builtin, stratified_indices
from trusttango.evaluate import predict_proba
from trusttango.fairness import GroupReweighting, RightReasons, accuracies, clever_hans_check, region_mask, tagged_data
from trusttango.fairness.subgroups import model_subgroups
from trusttango.models import build_model, config_for
from trusttango.train import TrainConfig, fit
from trusttango.workflow import train_model

TAG = (0, 0, 4, 4)


def take(ds, n: int | None):
    """A stratified subset of ``n`` rows (``None``: all of them)."""
    if n is None or n >= len(ds):
        return ds
    idx, _ = stratified_indices(ds.y.numpy(), (n / len(ds), 1 - n / len(ds)), 0)
    return ds.subset(idx)


def adult_rows(full: bool) -> list[list[object]]:
    s = load_builtin("adult")
    s = s if full else Splits(take(s.train, 8000), take(s.val, 1000), take(s.test, 5000))
    rows = []
    for name, hooks in (("plain", []), ("reweighted", [GroupReweighting(columns=["sex"])])):
        saved = train_model(
            s, TrainConfig(epochs=4, batch_size=128, lr=3e-3, progress=False), hooks, width=0.25, depth=2
        )
        t = time.perf_counter()
        rep = model_subgroups(saved.model, s.test, columns=["sex"], n_boot=200)
        ours_s = time.perf_counter() - t
        y, sex = s.test.y.numpy(), s.test.extra["sex"]
        pred = predict_proba(saved.model, s.test).argmax(1).numpy()
        t = time.perf_counter()
        anchor = {
            "demographic_parity": demographic_parity_difference(y, pred, sensitive_features=sex),
            "equalized_odds": equalized_odds_difference(y, pred, sensitive_features=sex),
            "equal_opportunity": equal_opportunity_difference(y, pred, sensitive_features=sex),
        }
        anchor_s = time.perf_counter() - t
        for key, value in anchor.items():
            g = rep.gaps[key]
            rows.append([name, saved.meta["metrics"]["test_accuracy"], key, g.difference,
                         f"[{g.difference_ci[0]:.3f}, {g.difference_ci[1]:.3f}]", value, g.difference / value,
                         f"{ours_s:.2f} (200 boot) / {anchor_s:.3f}"])  # fmt: skip
    return rows


def fmnist_fit(data: Splits, hooks=()):
    model = build_model(config_for(data.train.input_shape, 10), seed=0)
    fit(model, data.train, data.val, TrainConfig(epochs=4, progress=False), hooks)
    return model.eval()


def cleverhans_rows(full: bool) -> list[list[object]]:
    s = load_builtin("fashion-mnist")
    s = s if full else Splits(take(s.train, 6000), take(s.val, 1000), take(s.test, 2000))
    data = tagged_data(s, 6, TAG)
    mask = region_mask(s.train.input_shape, TAG).float()
    rows = []
    for name, splits, hooks in (
        ("clean data", s, []),
        ("tagged data", data.splits, []),
        ("tagged + RRR (lambda=100)", data.splits, [RightReasons(mask, lam=100.0)]),
    ):
        model = fmnist_fit(splits, hooks)
        acc = accuracies(model, data)
        check = clever_hans_check(model, data.swapped_test, region=TAG, max_examples=500)
        rows.append([name, acc["clean"], acc["tagged"], acc["swapped"], check.concentration, check.flip_rate,
                     "FLAGGED" if check.flagged else "passed"])  # fmt: skip
    return rows


def main(parts: list[str], full: bool = False) -> None:
    """Run the named halves (``adult``, ``cleverhans``; default both)."""
    torch.set_num_threads(2)
    np.random.seed(0)
    size = "full" if full else "reduced (Adult 8k train / 5k test; F-MNIST 6k train / 2k test)"
    notes = f"Size: {size}."
    if "adult" in parts:
        write_table(
            "Fairness: Adult plain vs reweighted, sex gaps, trusttango vs fairlearn",
            ["model", "test acc", "gap", "ours", "95% CI", "fairlearn", "ours/fairlearn", "time s ours/fairlearn"],
            adult_rows(full),
            notes,
        )
    if "cleverhans" in parts:
        write_table(
            "Clever Hans demo: corner tag on class Shirt (F-MNIST)",
            ["model", "acc clean", "acc tagged", "acc tag-swapped", "attr. concentration", "flip rate", "check"],
            cleverhans_rows(full),
            notes,
        )


PARTS = ("adult", "cleverhans")


def parser():
    """The script's command line: its parts and ``--full``."""
    found = make_parser(__doc__, PARTS)
    found.add_argument("--full", action="store_true", help="the whole of Adult and Fashion-MNIST")
    return found


if __name__ == "__main__":
    args = parse(parser())
    main(args.parts, args.full)
