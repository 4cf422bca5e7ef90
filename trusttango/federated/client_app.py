"""The Flower ClientApp: local training of the global model with the one loop :func:`fit`.

A client (McMahan et al. 2017, Algorithm 1, ``ClientUpdate``) receives the global weights,
the model config and (E, B, lr), runs E epochs of minibatch SGD on its own partition only,
and returns its weights and ``num-examples`` n_k (the weight of its update in the average).
Its data is the file named by the node config ``data-path`` (a real SuperNode), else
``<partition-dir>/client_<partition-id>.npz`` (simulation).

Under secure aggregation the same app answers Flower's SecAgg+ protocol (Bell et al. 2020,
through ``flwr.client.mod.secaggplus_mod``, applied only to messages that carry its stage
record): the training step is the same :func:`local_update`, with every key of the server's
config (local DP-SGD included), and the reply is the update ``w_k - w`` in Flower's legacy
``FitRes`` layout that the mod quantises and masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from trusttango.data.base import LabelledDataset
from trusttango.errors import InputError, require
from trusttango.federated.config import build_global_model, load_partition
from trusttango.models import ModelConfig
from trusttango.privacy.dp import DPSGD
from trusttango.train import TrainConfig, fit

UPDATE_CACHE = "trusttango.secagg-update"  # node state: this round's update, for a re-run of the protocol


def client_data_path(node_config: dict, partition_dir: str | None) -> str:
    """Where this node's partition lies (node config ``data-path`` wins)."""
    if "data-path" in node_config:
        return str(node_config["data-path"])
    require(partition_dir is not None, "client: node config has no 'data-path' and the run has no partition-dir")
    return str(Path(partition_dir) / f"client_{int(node_config['partition-id'])}.npz")


def check_model(model_cfg: ModelConfig, data: LabelledDataset, arrays: ArrayRecord) -> dict[str, torch.Tensor]:
    """The received weights as a state dict, or :class:`InputError` when the server's model
    does not fit this client's data or the weights do not fit the model config."""
    require(
        tuple(model_cfg.input_shape) == tuple(data.input_shape) and model_cfg.num_classes == data.num_classes,
        f"client: server model expects inputs {tuple(model_cfg.input_shape)} with {model_cfg.num_classes} classes, "
        f"local data has {tuple(data.input_shape)} with {data.num_classes}",
    )
    state = arrays.to_torch_state_dict()
    expected = {k: tuple(v.shape) for k, v in build_global_model(model_cfg).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        diff = sorted(set(got.items()) ^ set(expected.items()))[:3]
        raise InputError(f"client: received weights do not match the model config (first differences: {diff})")
    return state


def client_seed(seed: int, client_id: int, server_round: int) -> int:
    """The training seed of one client in one round: a distinct stream for every
    (run seed, client, round) triple (NumPy's ``SeedSequence``), never shared or reused."""
    return int(np.random.SeedSequence([seed, client_id, server_round]).generate_state(1)[0])


def local_update(content: RecordDict, data: LabelledDataset, client_id: int = 0) -> RecordDict:
    """ClientUpdate(k, w): E epochs of SGD with batch B on ``data`` from the global ``w``
    (``content`` holds ``arrays`` and ``config``); returns the reply's records.

    With ``local-dp-noise`` sigma > 0 in the config the client trains with DP-SGD (Abadi et al.
    2016, Algorithm 1: Poisson lots of rate B/n_k, per-example clipping to ``local-dp-clip``,
    Gaussian noise; :class:`~trusttango.privacy.dp.DPSGD` on the one loop) and reports this
    round's mechanism (sigma, q, steps) and epsilon, so the server can compose them per client.
    Each (client, round) draws its own shuffles and noise (:func:`client_seed`)."""
    config = content["config"]
    model_cfg = ModelConfig.from_dict(json.loads(str(config["model"])))
    model = build_global_model(model_cfg)
    model.load_state_dict(check_model(model_cfg, data, content["arrays"]))
    batch = int(config["batch-size"]) or len(data)
    seed = client_seed(int(config["seed"]), client_id, int(config.get("server-round", 0)))
    tc = TrainConfig(
        epochs=int(config["local-epochs"]), batch_size=batch, optimizer="sgd", lr=float(config["lr"]),
        momentum=0.0, weight_decay=0.0, schedule="constant", seed=seed, device="cpu", progress=False,
    )  # fmt: skip
    sigma = float(config.get("local-dp-noise", 0.0))
    dp = None
    if sigma > 0:
        dp = DPSGD(
            noise_multiplier=sigma, max_grad_norm=float(config["local-dp-clip"]), delta=float(config["dp-delta"])
        )
    history = fit(model, data, None, tc, hooks=[] if dp is None else [dp])
    metrics = {"train-loss": history.records[-1].train_loss, "num-examples": len(data), "unit-weight": 1}
    if dp is not None:
        privacy = dp.meta()["privacy"]
        metrics |= {"client-id": client_id, "dp-epsilon": privacy["epsilon"], "dp-noise": sigma,
                    "dp-sample-rate": privacy["sample_rate"], "dp-steps": privacy["steps"]}  # fmt: skip
    return RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(metrics)})


def secagg_update(content: RecordDict, data: LabelledDataset, client_id: int, state: RecordDict) -> RecordDict:
    """The SecAgg+ reply to a training instruction (Flower's legacy ``FitIns`` records): run
    :func:`local_update` and answer with the update ``w_k - w`` as ``FitRes`` records, with
    ``update-max-abs`` (its largest coordinate, from which the server sizes the quantisation
    range) among the metrics.

    The update is kept in the node's ``state`` for its round: if the server re-runs the protocol
    with a wider range, the same update is sent again (no second training, so no second DP
    release: the metrics then omit the ``dp-*`` mechanism and carry ``reused``)."""
    import flwr.compat.common.recorddict_compat as compat
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    fitins = compat.recorddict_to_fitins(content, keep_input=True)
    config = dict(fitins.config)
    cached = state.config_records.get(UPDATE_CACHE)
    if cached is not None and int(cached["server-round"]) == int(config["server-round"]):
        update = state.array_records[UPDATE_CACHE].to_numpy_ndarrays()
        metrics = {k: v for k, v in cached.items() if not k.startswith("dp-") and k != "server-round"}
        metrics["reused"] = 1
    else:
        keys = list(build_global_model(ModelConfig.from_dict(json.loads(str(config["model"])))).state_dict())
        arrays = parameters_to_ndarrays(fitins.parameters)
        require(len(arrays) == len(keys), f"client: received {len(arrays)} arrays, the model has {len(keys)}")
        start = {k: torch.from_numpy(np.array(a)) for k, a in zip(keys, arrays, strict=True)}
        reply = local_update(
            RecordDict({"arrays": ArrayRecord(start), "config": ConfigRecord(config)}), data, client_id
        )
        trained = reply["arrays"].to_torch_state_dict()
        update = [(trained[k].double() - start[k].double()).numpy() for k in keys]
        metrics = dict(reply["metrics"]) | {"update-max-abs": max(float(np.abs(u).max(initial=0.0)) for u in update)}
        state.array_records[UPDATE_CACHE] = ArrayRecord(update)
        state.config_records[UPDATE_CACHE] = ConfigRecord(metrics | {"server-round": int(config["server-round"])})
    fitres = FitRes(Status(Code.OK, "ok"), ndarrays_to_parameters(update), len(data), metrics)
    return compat.fitres_to_recorddict(fitres, keep_input=False)


def secagg_when_asked(msg: Message, context: Context, call_next):
    """Flower's ``secaggplus_mod`` for messages of the SecAgg+ protocol; others pass unchanged."""
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if msg.has_content() and RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def make_client_app(partition_dir: str | None = None) -> ClientApp:
    """A ClientApp reading partitions from ``partition_dir`` (default: run config ``workdir``);
    it answers plain FedAvg rounds and SecAgg+ rounds alike."""
    app = ClientApp(mods=[secagg_when_asked])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        folder = partition_dir or context.run_config.get("workdir")
        node_config = dict(context.node_config)
        data = load_partition(client_data_path(node_config, folder))
        client_id = int(node_config.get("partition-id", 0))
        if "fitins.parameters" in msg.content.array_records:  # SecAgg+: Flower's legacy FitIns layout
            reply = secagg_update(msg.content, data, client_id, context.state)
        else:
            reply = local_update(msg.content, data, client_id=client_id)
        return Message(content=reply, reply_to=msg)

    return app


app = make_client_app()
