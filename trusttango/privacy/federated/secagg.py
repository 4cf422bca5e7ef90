"""FedAvg under Flower's SecAgg+ workflow (Bonawitz et al. 2017; Bell et al. 2020).

Clients quantise their weighted update, add pairwise masks (cancelling in the sum) and a
self mask, and secret-share the mask seeds so dropped clients can be recovered; the server
unmasks only the sum, so the strategy receives one aggregated update per round and never an
individual client's plain weights. Flower runs SecAgg+ through its legacy workflow, so the
client here is a ``NumPyClient`` whose ``fit`` is the same :func:`local_update` (the one loop).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg as LegacyFedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp

from trusttango.models import ModelConfig
from trusttango.privacy.federated.client_app import client_data_path, local_update
from trusttango.privacy.federated.config import FedConfig, build_global_model, load_partition, model_config
from trusttango.privacy.federated.server_app import evaluate_arrays


class RecordingFedAvg(LegacyFedAvg):
    """Legacy FedAvg that records, per aggregation, how many distinct parameter vectors it
    was handed (SecAgg+ hands every result the same unmasked sum: 1) and the final weights."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.distinct_updates: list[int] = []
        self.final: list[np.ndarray] | None = None

    def aggregate_fit(self, server_round, results, failures):
        self.distinct_updates.append(len({b"".join(fit.parameters.tensors) for _, fit in results}))
        params, metrics = super().aggregate_fit(server_round, results, failures)
        if params is not None:
            self.final = parameters_to_ndarrays(params)
        return params, metrics


class _Client(NumPyClient):
    def __init__(self, path: str) -> None:
        self.path = path

    def fit(self, parameters, config):
        model_cfg = ModelConfig.from_dict(json.loads(str(config["model"])))
        keys = list(build_global_model(model_cfg).state_dict())
        state = OrderedDict((k, torch.from_numpy(np.asarray(p))) for k, p in zip(keys, parameters, strict=True))
        data = load_partition(self.path)
        reply = local_update(RecordDict({"arrays": ArrayRecord(state), "config": ConfigRecord(dict(config))}), data)
        return [v.numpy() for v in reply["arrays"].to_torch_state_dict().values()], len(data), {}


def make_secagg_client_app(partition_dir: str | None = None) -> ClientApp:
    def client_fn(context: Context):
        folder = partition_dir or context.run_config.get("workdir")
        return _Client(client_data_path(dict(context.node_config), folder)).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def make_secagg_server_app(cfg: FedConfig, strategy_out: list | None = None) -> ServerApp:
    """A ServerApp running FedAvg with SecAgg+ (all sampled clients share keys; reconstruction
    threshold 2/3); the final global weights are saved to ``<workdir>/final_weights.npz``."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        test = load_partition(str(Path(cfg.workdir) / "test.npz"))
        model_cfg = model_config(cfg, test)
        model = build_global_model(model_cfg, seed=cfg.seed)
        config = {"model": json.dumps(model_cfg.to_dict()), "local-epochs": cfg.local_epochs,
                  "batch-size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed}  # fmt: skip
        strategy = RecordingFedAvg(
            fraction_fit=cfg.fraction, fraction_evaluate=0.0, min_fit_clients=cfg.clients_per_round,
            min_available_clients=cfg.clients_per_round, on_fit_config_fn=lambda _: config,
            initial_parameters=ndarrays_to_parameters([v.numpy() for v in model.state_dict().values()]),
        )  # fmt: skip
        legacy = LegacyContext(context, config=ServerConfig(num_rounds=cfg.rounds), strategy=strategy)
        workflow = SecAggPlusWorkflow(num_shares=cfg.clients_per_round, reconstruction_threshold=2 / 3)
        DefaultWorkflow(fit_workflow=workflow)(grid, legacy)
        np.savez(Path(cfg.workdir) / "final_weights.npz", *strategy.final)
        if strategy_out is not None:
            strategy_out.append(strategy)

    return app


def simulate_secagg(cfg: FedConfig) -> RecordingFedAvg:
    """Partition and run ``cfg`` with SecAgg+ in Flower's simulation engine; return the strategy."""
    from flwr.simulation import run_simulation

    from trusttango.privacy.federated.config import prepare

    folder = prepare(cfg)
    out: list = []
    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0}, "init_args": {"num_cpus": 1}}
    run_simulation(
        make_secagg_server_app(cfg, out), make_secagg_client_app(str(folder)), cfg.clients, backend_config=backend
    )
    if not out:
        raise RuntimeError("SecAgg+ simulation finished without a result (see the Flower log above)")
    return out[0]


def final_accuracy(cfg: FedConfig, strategy: RecordingFedAvg) -> float:
    """Test accuracy of the final SecAgg+ global weights."""
    test = load_partition(str(Path(cfg.workdir) / "test.npz"))
    model = build_global_model(model_config(cfg, test))
    state = OrderedDict((k, torch.from_numpy(v)) for k, v in zip(model.state_dict(), strategy.final, strict=True))
    return evaluate_arrays(model, ArrayRecord(state), test)[0]
