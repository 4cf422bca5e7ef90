"""FedAvg vs FedSGD rounds to a target accuracy (McMahan et al. 2017, Table 2), per-round wall
time of the Flower simulation, and CKKS private-inference latency vs plaintext.

Reduced size by default (digits, 10 clients); ``TRUSTTANGO_FULL=1``: Fashion-MNIST, 100
clients, C = 0.1, target 85 %, as in the issue.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import append  # noqa: E402

from trusttango.data import load_builtin  # noqa: E402
from trusttango.privacy.federated import FedConfig, simulate  # noqa: E402
from trusttango.privacy.he import HENet, evaluate_encrypted  # noqa: E402
from trusttango.train import TrainConfig, fit  # noqa: E402

FULL = os.environ.get("TRUSTTANGO_FULL") == "1"
SIZE = (
    dict(data="fashion-mnist", clients=100, fraction=0.1, target=0.85, avg_rounds=50, sgd_rounds=300)
    if FULL
    else dict(data="digits", clients=10, fraction=0.3, target=0.8, avg_rounds=5, sgd_rounds=15)
)


def federated_rows(folder: Path) -> list[list[object]]:
    rows = []
    for partition in ("iid", "shards"):
        results = {}
        for algorithm, rounds in (("fedavg", SIZE["avg_rounds"]), ("fedsgd", SIZE["sgd_rounds"])):
            cfg = FedConfig(
                data=SIZE["data"], workdir=str(folder / f"{partition}-{algorithm}"), clients=SIZE["clients"],
                fraction=SIZE["fraction"], rounds=rounds, local_epochs=5, batch_size=10, algorithm=algorithm,
                lr=0.1 if algorithm == "fedavg" else 0.5, partition=partition,
            )  # fmt: skip
            history = simulate(cfg)
            per_round = (
                statistics.median(r.time_s for r in history.rounds[2:]) if len(history.rounds) > 2 else float("nan")
            )
            results[algorithm] = history.rounds_to(SIZE["target"])
            rows.append(
                [
                    partition,
                    algorithm,
                    rounds,
                    results[algorithm] or f">{rounds}",
                    history.rounds[-1].accuracy,
                    per_round,
                ]
            )
        avg, sgd = results["fedavg"], results["fedsgd"] or SIZE["sgd_rounds"]
        rows.append(
            [
                partition,
                "FedSGD/FedAvg rounds",
                "",
                f"{'>=' if results['fedsgd'] is None else ''}{sgd / avg:.1f}x" if avg else "n/a",
                "",
                "",
            ]
        )
    return rows


def he_row() -> list[object]:
    splits = load_builtin("digits")
    model = HENet(8, 10, channels=2, hidden=16)
    fit(model, splits.train, None, TrainConfig(epochs=15, batch_size=64, lr=3e-3, progress=False))
    report = evaluate_encrypted(model, splits.test, n=50 if FULL else 5)
    start = time.perf_counter()
    with torch.no_grad():
        model(splits.test.x[: report.n])
    plain_s = (time.perf_counter() - start) / report.n
    return [report.n, report.plain_accuracy, report.encrypted_accuracy, report.agreement, report.latency_s,
            report.latency_s / plain_s, report.input_bytes, report.output_bytes]  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = federated_rows(Path(tmp))
    append(
        f"Federated: FedAvg (E=5, B=10) vs FedSGD, rounds to {SIZE['target']:.0%} "
        f"({SIZE['data']}, K={SIZE['clients']}, C={SIZE['fraction']})",
        ["partition", "algorithm", "rounds run", "rounds to target", "final accuracy", "median s/round"],
        rows,
        "Flower 1.41 simulation engine (Ray). Shared 2-core CPU, contended by other jobs: wall times are upper bounds.",
    )
    append(
        "CKKS private inference (TenSEAL, conv+x^2+fc+x^2+fc on digits) vs plaintext torch",
        [
            "n",
            "plain acc",
            "encrypted acc",
            "agreement",
            "s/image (encrypted)",
            "slowdown vs plaintext",
            "enc input bytes",
            "enc output bytes",
        ],
        [he_row()],
        "poly_modulus_degree 8192, scale 2^26. Shared 2-core CPU, contended.",
    )


if __name__ == "__main__":
    main()
