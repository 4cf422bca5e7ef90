"""``trusttango federated`` (FedAvg / FedSGD, simulated or deployed on Flower, with DP-FedAvg,
client DP-SGD or SecAgg+; history and plots) and ``trusttango federated-node`` (one SuperNode
joining a SuperLink elsewhere)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from trusttango.cli._common import FORCE_OPTION, console, data_option
from trusttango.outputs import atomic_output, check_output

RECORDS = ("fed_config.json", "history.json", "model/config.json")  # each records the work folder's path


def _settle(staging: Path, out: Path) -> None:
    """Record ``out``, where the run's folder ends up, instead of the staging folder it ran in."""
    for name in RECORDS:
        path = staging / name
        if path.exists():
            path.write_text(
                path.read_text().replace(json.dumps(str(staging.resolve())), json.dumps(str(out.resolve())))
            )


def federated(
    data: str = data_option("fashion-mnist"),
    out: Path = typer.Option(Path("runs/federated"), help="Folder for partitions, history.json and PNGs."),
    force: bool = FORCE_OPTION,
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
    target_accuracy: float = typer.Option(0.0, help="Stop once the test accuracy reaches this (0: never)."),
    eval_every: int = typer.Option(1, help="Evaluate the global model every this many rounds (and the last)."),
    train_limit: int = typer.Option(0, help="Use only this many training examples (0: all)."),
    dp_noise: float = typer.Option(0.0, help="DP-FedAvg noise multiplier (0: off)."),
    dp_clip: float = typer.Option(1.0, help="DP-FedAvg clipping norm of client updates."),
    local_dp_noise: float = typer.Option(0.0, help="DP-SGD noise multiplier on every client (0: off)."),
    local_dp_clip: float = typer.Option(1.0, help="Client DP-SGD per-example gradient clipping norm."),
    deploy: bool = typer.Option(
        False, "--deploy", help="Real deployment: a SuperLink + one SuperNode process per client on 127.0.0.1."
    ),
    secagg: bool = typer.Option(False, "--secagg", help="Aggregate with Flower's SecAgg+ (secure aggregation)."),
    seed: int = typer.Option(0),
) -> None:
    """Federated averaging (McMahan et al. 2017) on Flower: simulated, or deployed with --deploy."""
    from trusttango.federated import FedConfig, simulate
    from trusttango.federated import deploy as run_deployment

    check_output(out, force, [data])
    cfg = FedConfig(
        data=data, workdir=str(out), clients=clients, fraction=fraction, rounds=rounds, local_epochs=local_epochs,
        batch_size=batch_size, lr=lr, algorithm=algorithm, partition=partition, alpha=alpha,
        min_clients=min_clients, train_limit=train_limit, dp_noise=dp_noise, dp_clip=dp_clip,
        local_dp_noise=local_dp_noise, local_dp_clip=local_dp_clip, target_accuracy=target_accuracy, seed=seed,
        eval_every=eval_every, secagg=secagg,
    )  # fmt: skip
    with atomic_output(out) as staging:  # the run works in a staging folder; a failed run leaves --out as it was
        cfg.workdir = str(staging.resolve())
        history = run_deployment(cfg) if deploy else simulate(cfg)
        _settle(staging, out)
    console.print(f"{history.summary()}; history.json, history.png and partition.png written to {out}")


def federated_node(
    superlink: str = typer.Option(..., help="The SuperLink's Fleet API address, HOST:PORT."),
    data: Path = typer.Option(
        ..., "--data", help="This node's own partition (.npz written by `trusttango federated`)."
    ),
    partition_id: int = typer.Option(0, help="This node's client id."),
    clients: int = typer.Option(1, help="Number of clients in the federation."),
    max_retries: int = typer.Option(10, help="Give up after this many failed connection attempts."),
    max_wait: float = typer.Option(60.0, help="Give up after this many seconds without a connection."),
) -> None:
    """Run one Flower SuperNode holding only ``--data`` against a SuperLink (e.g. on another machine)."""
    from trusttango.federated import run_supernode

    raise typer.Exit(run_supernode(superlink, data, partition_id, clients, max_retries, max_wait))


def register(app: typer.Typer) -> None:
    app.command()(federated)
    app.command("federated-node")(federated_node)
