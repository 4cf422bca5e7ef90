"""Federated learning on Flower: (a) per-round time of a real deployment (SuperLink + 4
SuperNode processes on 127.0.0.1) vs the simulation engine for the same 4 clients; (b) per-round
wall time of the simulation for 10 and 100 clients; (c) rounds to reach 85 % Fashion-MNIST
test accuracy, FedAvg (E = 5, B = 10) vs FedSGD (E = 1, B = inf, one step), IID and shards,
K = 100, C = 0.1 (McMahan et al. 2017, Table 2); (d) CKKS private inference vs plaintext.

``python -m benchmarks.bench_federated [deploy] [simtime] [rounds] [fedsgd_lr] [he]`` (default: all);
``--partitions iid`` runs the rounds comparison on one partition only.
FedAvg stops at the target; FedSGD then runs 10x as many rounds (the goal ratio), so if it
does not reach the target the ratio is reported as a lower bound. ``--full`` caps FedAvg at
100 rounds instead of 30 and times 5 rounds instead of 3; ``--avg-cap`` and ``--sgd-cap`` set
the two round caps directly (shards need far more FedAvg rounds than IID), ``--avg-eval-every``
how often FedAvg is evaluated (default every round).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.harness import make_parser, parse, write_table
from trusttango.data import load_builtin
from trusttango.federated import FedConfig, simulate
from trusttango.federated.deploy import deploy
from trusttango.privacy.crypto.he import HENet, evaluate_encrypted
from trusttango.train import TrainConfig, fit

TARGET = 0.85
LOWER = 0.5  # a second, lower target: on shards FedAvg does not reach 85 % within its cap
SGD_EVAL_EVERY = 5  # FedSGD evaluates every 5 rounds (its rounds are cheap; the 10k-image evaluation is not)
CONTENTION = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at start"


@dataclass(frozen=True)
class Settings:
    """The command line's sizes: ``full`` (more rounds timed, HE images, FedAvg cap 100), the round
    caps (``sgd_cap`` 0: 10x FedAvg's rounds), FedAvg's evaluation interval, the partitions."""

    full: bool = False
    avg_cap: int | None = None
    sgd_cap: int = 0
    avg_eval_every: int = 1
    partitions: tuple[str, ...] = ("iid", "shards")

    @property
    def timed_rounds(self) -> int:
        return 5 if self.full else 3

    @property
    def fedavg_cap(self) -> int:
        return self.avg_cap or (100 if self.full else 30)

    @property
    def sgd_span(self) -> str:
        """How many rounds FedSGD runs, for the notes."""
        return f"up to {self.sgd_cap}" if self.sgd_cap else "10x FedAvg's"


def simulate_retrying(cfg: FedConfig, tries: int = 3):
    """:func:`simulate`, retried: on an overloaded CPU Ray's node may time out during startup."""
    for attempt in range(tries):
        try:
            return simulate(cfg)
        except RuntimeError:
            if attempt == tries - 1:
                raise
            time.sleep(30)


def per_round(history) -> float:
    """Median wall seconds of rounds 1.. (round 0 is the initial evaluation)."""
    return statistics.median(r.time_s for r in history.rounds[1:])


def timing_config(folder: Path, clients: int, rounds: int, **kw) -> FedConfig:
    """All clients every round, one local epoch, the same 6,000 Fashion-MNIST images in all."""
    return FedConfig(
        data="fashion-mnist", workdir=str(folder), clients=clients, fraction=1.0, min_clients=clients,
        rounds=rounds, local_epochs=1, batch_size=32, train_limit=6000, **kw,
    )  # fmt: skip


def deploy_rows(folder: Path, rounds: int) -> list[list[object]]:
    real = deploy(timing_config(folder / "deploy", 4, rounds, timeout_s=900))
    sim = simulate_retrying(timing_config(folder / "sim4", 4, rounds))
    return [["deployment (4 SuperNode processes, loopback HTTP)", 4, per_round(real), real.rounds[-1].accuracy],
            ["simulation engine (Ray, 1 actor)", 4, per_round(sim), sim.rounds[-1].accuracy],
            ["deployment / simulation", "", per_round(real) / per_round(sim), ""]]  # fmt: skip


def simtime_rows(folder: Path, rounds: int) -> list[list[object]]:
    rows = []
    for clients in (10, 100):
        history = simulate_retrying(timing_config(folder / f"sim{clients}", clients, rounds))
        rows.append(["simulation engine (Ray, 1 actor)", clients, per_round(history), history.rounds[-1].accuracy])
    return rows


def rounds_rows(folder: Path, partition: str, settings: Settings) -> list[list[object]]:
    common = dict(data="fashion-mnist", clients=100, fraction=0.1, partition=partition, target_accuracy=TARGET)
    start = time.perf_counter()
    avg_cap = settings.fedavg_cap
    avg_cfg = FedConfig(workdir=str(folder / f"{partition}-avg"), rounds=avg_cap, local_epochs=5, batch_size=10,
                        lr=0.1, eval_every=settings.avg_eval_every, **common)  # fmt: skip
    avg = simulate_retrying(avg_cfg)
    avg_s, n_avg = time.perf_counter() - start, avg.rounds_to(TARGET)
    sgd_cap = settings.sgd_cap or 10 * (n_avg or avg_cap)
    start = time.perf_counter()
    sgd_cfg = FedConfig(workdir=str(folder / f"{partition}-sgd"), rounds=sgd_cap, algorithm="fedsgd", lr=0.5,
                        eval_every=SGD_EVAL_EVERY, **common)  # fmt: skip
    sgd = simulate_retrying(sgd_cfg)
    sgd_s, n_sgd = time.perf_counter() - start, sgd.rounds_to(TARGET)
    if n_avg is None:
        ratio = "n/a (FedAvg did not reach the target)"
    else:
        ratio = f"{n_sgd / n_avg:.1f}x" if n_sgd else f">= {sgd_cap / n_avg:.0f}x (FedSGD not there after {sgd_cap})"
    lower = [h.rounds_to(LOWER) for h in (avg, sgd)]
    lower_ratio = f"{lower[1] / lower[0]:.1f}x" if all(lower) else ""
    return [
        [partition, "FedAvg E=5 B=10 lr=0.1", avg.rounds[-1].round, n_avg or f"> {avg_cap}", lower[0] or f"> {avg_cap}",
         avg.rounds[-1].accuracy, max(r.accuracy for r in avg.rounds), avg_s / avg.rounds[-1].round],
        [partition, "FedSGD E=1 B=inf lr=0.5", sgd.rounds[-1].round, n_sgd or f"> {sgd_cap}",
         lower[1] or f"> {sgd_cap}", sgd.rounds[-1].accuracy, max(r.accuracy for r in sgd.rounds),
         sgd_s / sgd.rounds[-1].round],
        [partition, "FedSGD rounds / FedAvg rounds", "", ratio, lower_ratio, "", "", ""],
    ]  # fmt: skip


def fedsgd_lr_rows(folder: Path, rounds: int = 30) -> list[list[object]]:
    """FedSGD's learning rate (IID, K = 100, C = 0.1): accuracy after ``rounds`` rounds per lr."""
    rows = []
    for lr in (0.5, 1.0, 2.0):
        cfg = FedConfig(data="fashion-mnist", workdir=str(folder / f"lr{lr}"), clients=100, fraction=0.1,
                        rounds=rounds, algorithm="fedsgd", lr=lr)  # fmt: skip
        history = simulate_retrying(cfg)
        rows.append([lr, rounds, history.rounds[-1].accuracy, max(r.accuracy for r in history.rounds)])
    return rows


def he_row(full: bool) -> list[object]:
    splits = load_builtin("digits")
    model = HENet(8, 10, channels=2, hidden=16)
    fit(model, splits.train, None, TrainConfig(epochs=15, batch_size=64, lr=3e-3, progress=False))
    report = evaluate_encrypted(model, splits.test, n=50 if full else 5)
    start = time.perf_counter()
    with torch.no_grad():
        model(splits.test.x[: report.n])
    plain_s = (time.perf_counter() - start) / report.n
    with torch.no_grad():
        logit_range = float(model(splits.test.x[: report.n]).abs().max())
    return [report.n, report.plain_accuracy, report.encrypted_accuracy, report.agreement,
            report.max_logit_error / logit_range, report.latency_s, report.latency_s / plain_s, report.input_bytes,
            report.output_bytes]  # fmt: skip


def main(parts: list[str], settings: Settings) -> None:
    header = ["setting", "clients", "median s/round", "final accuracy"]
    notes = (
        "Flower 1.41, Fashion-MNIST 6,000 train images split evenly, C = 1, E = 1, B = 32. "
        f"Shared 2-core CPU: {CONTENTION}."
    )
    with tempfile.TemporaryDirectory() as tmp:
        if "deploy" in parts:
            write_table(
                "Federated: real deployment vs simulation, per-round wall time",
                header,
                deploy_rows(Path(tmp), settings.timed_rounds),
                notes,
            )
        if "simtime" in parts:
            write_table(
                "Federated: simulation per-round wall time vs number of clients",
                header,
                simtime_rows(Path(tmp), settings.timed_rounds),
                notes,
            )
        for partition in settings.partitions:
            if "rounds" in parts:
                write_table(
                    f"Federated: rounds to {TARGET:.0%} Fashion-MNIST test accuracy, FedAvg vs FedSGD "
                    f"(K=100, C=0.1, {partition})",
                    [
                        "partition",
                        "algorithm",
                        "rounds run",
                        f"rounds to {TARGET:.0%}",
                        f"rounds to {LOWER:.0%}",
                        "final accuracy",
                        "best accuracy (any evaluated round)",
                        "s/round",
                    ],  # fmt: skip
                    rounds_rows(Path(tmp), partition, settings),
                    f"Flower 1.41 simulation engine; FedAvg stops at the target (evaluated every "
                    f"{settings.avg_eval_every} round(s)), FedSGD runs "
                    f"{settings.sgd_span} rounds and "
                    f"is evaluated every {SGD_EVAL_EVERY} rounds (its rounds-to figures are multiples of that). "
                    f"Shared 2-core CPU: {CONTENTION}; wall times are upper bounds.",
                )
    if "fedsgd_lr" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            rows = fedsgd_lr_rows(Path(tmp))
        write_table("Federated: FedSGD learning rate (Fashion-MNIST, IID, K=100, C=0.1)",
               ["lr", "rounds", "final accuracy", "best accuracy"], rows,
               f"One full-batch SGD step per round on 10 clients. Shared 2-core CPU: {CONTENTION}.")  # fmt: skip
    if "he" in parts:
        write_table(
            "CKKS private inference (TenSEAL, conv+x^2+fc+x^2+fc on digits) vs plaintext torch",
            ["n", "plain acc", "encrypted acc", "agreement", "max logit error / max logit", "s/image (encrypted)",
             "slowdown vs plaintext", "enc input bytes", "enc output bytes"],
            [he_row(settings.full)],
            f"make_context defaults: poly_modulus_degree 16384, 40-bit scale. Shared 2-core CPU: {CONTENTION}.",
        )  # fmt: skip


PARTS = ("deploy", "simtime", "rounds", "fedsgd_lr", "he")


def parser():
    """The script's command line: its parts and :class:`Settings`."""
    found = make_parser(__doc__, PARTS)
    found.add_argument("--full", action="store_true", help="5 timed rounds, FedAvg cap 100, 50 HE images")
    found.add_argument("--avg-cap", type=int, default=None, help="FedAvg's round cap (default 30, 100 with --full)")
    found.add_argument("--sgd-cap", type=int, default=0, help="FedSGD's round cap (0: 10x FedAvg's rounds)")
    found.add_argument("--avg-eval-every", type=int, default=1, help="FedAvg evaluated every N rounds")
    found.add_argument("--partitions", default="iid,shards", help="comma-separated: iid, shards")
    return found


if __name__ == "__main__":
    args = parse(parser())
    settings = Settings(args.full, args.avg_cap, args.sgd_cap, args.avg_eval_every, tuple(args.partitions.split(",")))
    main(args.parts, settings)
