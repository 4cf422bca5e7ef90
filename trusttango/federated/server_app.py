"""The Flower ServerApp: FedAvg / FedSGD (McMahan et al. 2017) with per-round evaluation.

Each round the strategy samples m = max(C*K, min_clients) connected nodes, sends them the
global weights w_t, and sets w_{t+1} = sum_k (n_k / n) w_{t+1}^k over the replies (eq. in
Algorithm 1). Nodes that fail or vanish mid-round are left out of the average. After each
round (or every ``eval_every`` rounds) the server evaluates w_{t+1} on its held-out test set
and records accuracy, loss, bytes sent each way and wall time since the previous record
(:class:`FedHistory`, plotted by :func:`plot_history`).
The strategy (:func:`~trusttango.federated.strategies.make_strategy`) is FedAvg, DP-FedAvg
(Poisson sampling of clients, clipping and noise on the server, McMahan et al. 2018; its
client-level (epsilon, delta) bound reported) or FedAvg under
SecAgg+ secure aggregation; all three run through this one server loop and return the same
:class:`FedHistory`. Clients that train with local DP-SGD report each round's mechanism, and
the history holds each client's epsilon composed over the rounds it took part in. The final
global model is saved as a model directory ``<workdir>/model`` (:func:`trusttango.models.load_model`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp

from trusttango.federated.config import FedConfig, build_global_model, client_sizes, load_partition, model_config
from trusttango.federated.history import FedHistory, RoundRecord, plot_history
from trusttango.federated.strategies import dp_epsilon, make_strategy
from trusttango.models.io import SavedModel, save_model
from trusttango.privacy.dp.accountants import composed_epsilon


def payload_bytes(msg: Message) -> int:
    """Bytes of the model arrays a message carries (and of SecAgg+'s keys, shares and masked vectors)."""
    if msg.has_error():
        return 0
    arrays = sum(len(a.data) for record in msg.content.array_records.values() for a in record.values())
    blobs = 0
    for record in msg.content.config_records.values():
        for value in record.values():
            items = value if isinstance(value, list) else [value]
            blobs += sum(len(v) for v in items if isinstance(v, bytes))
    return arrays + blobs


def client_metrics(reply: Message) -> dict | None:
    """The metrics of a client's training reply (plain or SecAgg+ layout); None for anything else."""
    if reply.has_error():
        return None
    content = reply.content
    if "metrics" in content.metric_records:
        return dict(content.metric_records["metrics"])
    if "fitres.metrics" in content.config_records:
        return dict(content.config_records["fitres.metrics"])
    return None


class MeteredGrid:
    """A Grid proxy counting the model bytes sent each way and the client updates that came
    back, and keeping each client's local DP-SGD mechanisms (sigma, q, steps), one per round it
    took part in (a SecAgg+ re-run that resends an update is neither counted nor composed again)."""

    def __init__(self, grid: Grid) -> None:
        self.grid, self.down, self.up, self.replies = grid, 0, 0, 0
        self.mechanisms: dict[int, list[tuple[float, float, int]]] = {}

    def __getattr__(self, name: str):
        return getattr(self.grid, name)

    def send_and_receive(self, messages, *, timeout: float | None = None):
        messages = list(messages)
        if not messages:
            return []
        self.down += sum(payload_bytes(m) for m in messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        self.up += sum(payload_bytes(r) for r in replies)
        for reply in replies:
            metrics = client_metrics(reply)
            if metrics is None or metrics.get("reused"):
                continue
            self.replies += 1
            if "dp-steps" in metrics:
                mechanism = (float(metrics["dp-noise"]), float(metrics["dp-sample-rate"]), int(metrics["dp-steps"]))
                self.mechanisms.setdefault(int(metrics["client-id"]), []).append(mechanism)
        return replies


def evaluate_arrays(model: torch.nn.Module, arrays: ArrayRecord, data) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``arrays`` loaded into ``model`` on ``data``."""
    model.load_state_dict(arrays.to_torch_state_dict())
    model.eval()
    with torch.no_grad():
        logits = model(data.x)
    loss = float(torch.nn.functional.cross_entropy(logits, data.y))
    return float((logits.argmax(1) == data.y).float().mean()), loss


class TargetReached(Exception):
    """The global model reached ``FedConfig.target_accuracy``: stop the rounds."""


def train_config(cfg: FedConfig, model_cfg) -> ConfigRecord:
    """What every client receives each round: the model config, (E, B, lr), the seed and local DP."""
    return ConfigRecord(
        {"model": json.dumps(model_cfg.to_dict()), "local-epochs": cfg.local_epochs, "batch-size": cfg.batch_size,
         "lr": cfg.lr, "seed": cfg.seed, "local-dp-noise": cfg.local_dp_noise, "local-dp-clip": cfg.local_dp_clip,
         "dp-delta": cfg.dp_delta}
    )  # fmt: skip


def run_server(grid: Grid, cfg: FedConfig) -> FedHistory:
    """Run ``cfg.rounds`` rounds of ``cfg``'s strategy over ``grid`` (fewer once
    ``cfg.target_accuracy`` is reached); write ``history.json``, ``history.png`` and the final
    global model (``model/``) to ``cfg.workdir``; return the history."""
    out = Path(cfg.workdir)
    test = load_partition(str(out / "test.npz"))
    model_cfg = model_config(cfg, test)
    model = build_global_model(model_cfg, seed=cfg.seed)
    metered = MeteredGrid(grid)
    history = FedHistory(config=asdict(cfg))
    clock = {"t": time.perf_counter()}

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round % cfg.eval_every and server_round != cfg.rounds:
            return None  # the bytes and time of this round go into the next record
        acc, loss = evaluate_arrays(model, arrays, test)
        now = time.perf_counter()
        record = RoundRecord(server_round, acc, loss, metered.down, metered.up, metered.replies, now - clock["t"])
        history.rounds.append(record)
        with open(out / "rounds.jsonl", "a") as progress:  # live progress, one line per round
            progress.write(json.dumps(asdict(record)) + "\n")
        metered.down = metered.up = metered.replies = 0
        clock["t"] = now
        if cfg.target_accuracy and acc >= cfg.target_accuracy:
            raise TargetReached
        return MetricRecord({"accuracy": acc, "loss": loss})

    strategy = make_strategy(cfg, client_sizes(out) if cfg.secagg else None)
    try:
        strategy.start(metered, ArrayRecord(model.state_dict()), cfg.rounds, cfg.timeout_s,
                       train_config(cfg, model_cfg), evaluate_fn=evaluate_fn)  # fmt: skip
    except TargetReached:
        pass
    if cfg.dp_noise > 0:
        history.sampled = strategy.sampled
        history.epsilon, history.delta = dp_epsilon(cfg, strategy.releases), cfg.dp_delta
    history.client_epsilon = {k: composed_epsilon(m, cfg.dp_delta) for k, m in sorted(metered.mechanisms.items())}
    (out / "history.json").write_text(json.dumps(history.to_dict(), indent=2))
    plot_history(history, out / "history.png")
    meta = {"federated": {"epsilon": history.epsilon, "delta": history.delta, "config": asdict(cfg)}}
    save_model(SavedModel(model, model_cfg, list(test.class_names), meta), out / "model")  # the last evaluated
    return history


def make_server_app(cfg: FedConfig | None = None) -> ServerApp:
    """A ServerApp for ``cfg`` (default: the run config, e.g. ``flwr run --run-config``)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, cfg or FedConfig.from_run_config(dict(context.run_config)))

    return app


app = make_server_app()
