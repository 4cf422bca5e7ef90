"""``trusttango federated``: FedAvg / FedSGD simulated with Flower, history + plots."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    @app.command()
    def federated(
        data: str = typer.Option("fashion-mnist", help="Built-in name, image folder, .npz or IDX file."),
        out: Path = typer.Option(Path("runs/federated"), help="Folder for partitions, history.json and PNGs."),
        clients: int = typer.Option(100, help="K: number of clients."),
        fraction: float = typer.Option(0.1, help="C: fraction of clients sampled per round, in (0, 1]."),
        rounds: int = typer.Option(50, help="Communication rounds."),
        local_epochs: int = typer.Option(5, help="E: local epochs per round."),
        batch_size: int = typer.Option(10, help="B: local batch size (0: the client's whole data)."),
        lr: float = typer.Option(0.1, help="Local SGD learning rate."),
        algorithm: str = typer.Option("fedavg", help="fedavg | fedsgd (E=1, B=inf, one step)."),
        partition: str = typer.Option("iid", help="iid | shards | dirichlet | unbalanced"),
        alpha: float = typer.Option(0.5, help="Dirichlet concentration (partition dirichlet)."),
        min_clients: int = typer.Option(1, help="Minimum clients per round."),
        train_limit: int = typer.Option(0, help="Use only this many training examples (0: all)."),
        dp_noise: float = typer.Option(0.0, help="DP-FedAvg noise multiplier (0: off)."),
        dp_clip: float = typer.Option(1.0, help="DP-FedAvg clipping norm of client updates."),
        secagg: bool = typer.Option(False, "--secagg", help="Aggregate with Flower's SecAgg+ (secure aggregation)."),
        seed: int = typer.Option(0),
    ) -> None:
        """Federated averaging (McMahan et al. 2017) simulated with Flower's simulation engine."""
        from trusttango.privacy.federated import FedConfig, simulate

        cfg = FedConfig(
            data=data, workdir=str(out), clients=clients, fraction=fraction, rounds=rounds, local_epochs=local_epochs,
            batch_size=batch_size, lr=lr, algorithm=algorithm, partition=partition, alpha=alpha,
            min_clients=min_clients, train_limit=train_limit, dp_noise=dp_noise, dp_clip=dp_clip, seed=seed,
        )  # fmt: skip
        if secagg:
            from trusttango.privacy.federated.secagg import final_accuracy, simulate_secagg

            accuracy = final_accuracy(cfg, simulate_secagg(cfg))
            Console(stderr=True).print(f"SecAgg+ FedAvg, {rounds} rounds: test accuracy {accuracy:.4f}")
            return
        history = simulate(cfg)
        last = history.rounds[-1]
        line = f"round {last.round}: test accuracy {last.accuracy:.4f}, loss {last.loss:.4f}"
        if history.epsilon is not None:
            line += f"; (epsilon, delta) = ({history.epsilon:.3f}, {history.delta:g})"
        Console(stderr=True).print(f"{line}; history.json, history.png and partition.png written to {out}")
