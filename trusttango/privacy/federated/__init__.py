"""Federated learning on Flower: FedAvg / FedSGD apps around the one training loop,
simulated or deployed (SuperLink + SuperNode processes), with DP-FedAvg, client-side DP-SGD
and SecAgg+ options."""

from __future__ import annotations

import json
from pathlib import Path

from trusttango.privacy.federated.config import FedConfig, prepare
from trusttango.privacy.federated.deploy import LocalDeployment, deploy, run_supernode
from trusttango.privacy.federated.server_app import FedHistory, RoundRecord, plot_history, run_server


def simulate(cfg: FedConfig, backend_config: dict | None = None) -> FedHistory:
    """Partition the data (:func:`prepare`) and run ``cfg`` with Flower's simulation engine,
    one virtual SuperNode per client; return the history (also in ``<workdir>/history.json``)."""
    from flwr.simulation import run_simulation

    from trusttango.privacy.federated.client_app import make_client_app
    from trusttango.privacy.federated.server_app import make_server_app

    folder = prepare(cfg)
    (folder / "history.json").unlink(missing_ok=True)
    backend = backend_config or {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 1}}
    run_simulation(make_server_app(cfg), make_client_app(str(folder)), cfg.clients, backend_config=backend)
    path = Path(folder) / "history.json"
    if not path.exists():
        raise RuntimeError(f"federated simulation finished without a history (see the Flower log above): {path}")
    return FedHistory.from_dict(json.loads(path.read_text()))


def simulate_secagg(cfg: FedConfig):
    """FedAvg under Flower's SecAgg+ workflow, simulated; see :mod:`.secagg`."""
    from trusttango.privacy.federated.secagg import simulate_secagg as run

    return run(cfg)


__all__ = [
    "FedConfig",
    "FedHistory",
    "LocalDeployment",
    "RoundRecord",
    "deploy",
    "plot_history",
    "prepare",
    "run_server",
    "run_supernode",
    "simulate",
    "simulate_secagg",
]
