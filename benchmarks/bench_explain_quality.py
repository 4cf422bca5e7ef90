"""Explanation quality per method: deletion-game area, deletion / insertion AUC, sanity check.

Trains the default small CNN with the library's loop on a built-in dataset, then runs
:func:`trusttango.explain.compare_methods` on test images (one call) and appends the table.
Fong & Vedaldi 2017 claim meaningful perturbation gives the smallest deletion-game area; the
notes row says whether it does here.

    python benchmarks/bench_explain_quality.py --data fashion-mnist --n 64 --epochs 4
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append  # noqa: E402

from trusttango.data import load_builtin  # noqa: E402
from trusttango.explain import METHODS, MeaningfulPerturbation, compare_methods  # noqa: E402
from trusttango.train import TrainConfig  # noqa: E402
from trusttango.workflow import train_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--mp-steps", type=int, default=300)
    parser.add_argument("--notes", default="")
    args = parser.parse_args()
    splits = load_builtin(args.data, seed=0)
    saved = train_model(splits, TrainConfig(epochs=args.epochs, progress=False))
    model = saved.model.eval()
    x = splits.test.x[: args.n]
    methods = {**METHODS, "meaningful": partial(MeaningfulPerturbation, steps=args.mp_steps)}
    rows = compare_methods(model, x, methods=methods)
    keys = list(rows[0])
    for r in rows:
        print("  ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else r[k] for k in keys))
    best = min(rows, key=lambda r: r["deletion_game_area"])["method"]
    acc = saved.meta["metrics"]["test_accuracy"]
    notes = (
        f"{args.data}, small CNN ({args.epochs} epochs, test accuracy {acc:.3f}), {args.n} test images, "
        f"meaningful perturbation {args.mp_steps} steps. Smallest deletion-game area: {best} "
        f"(paper's claim: meaningful perturbation {'holds' if best == 'meaningful' else 'does not hold here'}). "
        + args.notes
    )
    append(f"Explanations: quality per method on {args.data}", keys, [list(r.values()) for r in rows], notes)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
