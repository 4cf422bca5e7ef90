"""Federated learning on Flower: FedAvg / FedSGD (McMahan et al. 2017) around the one training
loop, simulated (:func:`simulate`) or deployed as SuperLink + SuperNode processes
(:class:`LocalDeployment`), with DP-FedAvg, client-side DP-SGD and SecAgg+ secure aggregation
as options of one :class:`FedConfig`, all run by the one server app and returning a
:class:`FedHistory`.

Flower is imported when a run starts: ``import trusttango.federated`` loads neither Flower nor
its server and client apps (the names from :mod:`.server_app` are exported lazily, PEP 562).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trusttango.federated.config import FedConfig, prepare
from trusttango.federated.deploy import LocalDeployment, deploy, run_supernode
from trusttango.federated.history import FedHistory, RoundRecord, plot_history


def simulate(cfg: FedConfig, backend_config: dict | None = None) -> FedHistory:
    """Partition the data (:func:`prepare`) and run ``cfg`` with Flower's simulation engine,
    one virtual SuperNode per client; return the history (also in ``<workdir>/history.json``).

    Plain FedAvg, DP-FedAvg and SecAgg+ (``cfg.secagg``) all take this path; the final global
    model is ``<workdir>/model`` (:func:`trusttango.models.load_model`)."""
    from flwr.simulation import run_simulation

    from trusttango.federated.client_app import make_client_app
    from trusttango.federated.server_app import make_server_app

    folder = prepare(cfg)
    (folder / "history.json").unlink(missing_ok=True)
    backend = backend_config or {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 1}}
    run_simulation(make_server_app(cfg), make_client_app(str(folder)), cfg.clients, backend_config=backend)
    path = Path(folder) / "history.json"
    if not path.exists():
        raise RuntimeError(f"federated simulation finished without a history (see the Flower log above): {path}")
    return FedHistory.from_dict(json.loads(path.read_text()))


def __getattr__(name: str) -> Any:
    if name == "run_server":
        from trusttango.federated.server_app import run_server

        return run_server
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
]
