"""Membership inference at low false-positive rates on Fashion-MNIST (no anchor library: the
figures are attack power, not speed).

A user's MLP (784-256-10) memorises ``N`` training images (the members); ``N`` test images are
non-members and ``2N`` more the population. LiRA and RMIA (online and offline, from the same
reference models) and the loss threshold score the same members and non-members; the table
gives TPR at 0.1 % and 1 % FPR and AUC, for queries without and with 1-pixel shifts (the MLP
was trained without shifts), and RMIA offline with a single reference model. Writes
``membership_roc.png`` (log-log) beside this file.

Run: ``python -m benchmarks.bench_membership [--n 1000] [--reference-models 8]``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.harness import make_parser, parse, write_table
from trusttango.data import load_builtin
from trusttango.privacy.audits import (
    ReferenceModels,
    lira_attack,
    loss_threshold_attack,
    plot_roc,
    rmia_attack,
)
from trusttango.train import TrainConfig, fit

CONFIG = TrainConfig(epochs=40, batch_size=64, lr=1e-3, weight_decay=0.0, schedule="constant", progress=False)


def mlp() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def main(n: int, n_models: int) -> None:
    torch.set_num_threads(1)
    splits = load_builtin("fashion-mnist", seed=0)
    members = splits.train.subset(np.random.default_rng(1).permutation(len(splits.train))[:n])
    order = np.random.default_rng(0).permutation(len(splits.test))
    nonmembers, population = splits.test.subset(order[:n]), splits.test.subset(order[n : 3 * n])
    model = mlp()
    fit(model, members, None, CONFIG)
    model.eval()
    rows, curves = [], []
    loss = loss_threshold_attack(model, members, nonmembers)
    for shift in (0, 1):
        start = time.perf_counter()
        refs = ReferenceModels(mlp, CONFIG, n_models=n_models, online=True, shift=shift).fit(members, nonmembers,
                                                                                          population)  # fmt: skip
        seconds = time.perf_counter() - start
        found = [lira_attack(model, members, nonmembers, refs, online=True),
                 lira_attack(model, members, nonmembers, refs, online=False),
                 rmia_attack(model, members, nonmembers, refs, online=True),
                 rmia_attack(model, members, nonmembers, refs, online=False)]  # fmt: skip
        rows += [[r.method, f"{shift} px", r.tpr_at(0.001), r.tpr_at(0.01), r.auc, seconds] for r in found]
        curves += found if shift == 0 else []
    start = time.perf_counter()
    one = ReferenceModels(mlp, CONFIG, n_models=1, online=False).fit(members, nonmembers, population)
    rmia_one = rmia_attack(model, members, nonmembers, one)
    rows.append([rmia_one.method, "0 px", rmia_one.tpr_at(0.001), rmia_one.tpr_at(0.01), rmia_one.auc,
                 time.perf_counter() - start])  # fmt: skip
    rows.append([loss.method, "0 px", loss.tpr_at(0.001), loss.tpr_at(0.01), loss.auc, 0.0])
    plot_roc([loss, *curves, rmia_one], Path(__file__).with_name("membership_roc.png"), log=True)
    write_table(
        "Membership inference at low FPR: LiRA and RMIA vs the loss threshold (Fashion-MNIST MLP)",
        ["attack", "query shifts", "TPR at 0.1 % FPR", "TPR at 1 % FPR", "AUC", "reference seconds"],
        rows,
        f"A 784-256-10 MLP trained 40 epochs on {n} training images (members; train accuracy 1.0); {n} test images "
        f"are non-members, {2 * n} more the population; reference models trained like the target on random halves "
        f"of the candidates (online design; offline attacks use each example's OUT half); one thread. Load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end of the run.",
    )
    print(*rows, sep="\n")


def parser():
    """The script's command line: ``--n`` members, ``--reference-models``."""
    found = make_parser(__doc__)
    found.add_argument("--n", type=int, default=1000, help="members (and non-members; the population is 2n)")
    found.add_argument("--reference-models", type=int, default=8, help="online reference models (even)")
    return found


if __name__ == "__main__":
    args = parse(parser())
    main(args.n, args.reference_models)
