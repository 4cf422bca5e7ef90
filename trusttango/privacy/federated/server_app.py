"""The Flower ServerApp: FedAvg / FedSGD (McMahan et al. 2017) with per-round evaluation.

Each round the strategy samples m = max(C*K, min_clients) connected nodes, sends them the
global weights w_t, and sets w_{t+1} = sum_k (n_k / n) w_{t+1}^k over the replies (eq. in
Algorithm 1). Nodes that fail or vanish mid-round are left out of the average. After each
round (or every ``eval_every`` rounds) the server evaluates w_{t+1} on its held-out test set
and records accuracy, loss, bytes sent each way and wall time since the previous record
(:class:`FedHistory`, plotted by :func:`plot_history`).
With ``dp_noise`` > 0 the strategy is wrapped in Flower's DP-FedAvg (server-side fixed
clipping, McMahan et al. 2018) with uniform client weights, and (epsilon, delta) is reported.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, Strategy

from trusttango.plotting import save_figure
from trusttango.privacy.federated.config import FedConfig, build_global_model, load_partition, model_config

UNIT_WEIGHT = "unit-weight"


@dataclass
class RoundRecord:
    round: int
    accuracy: float
    loss: float
    bytes_down: int  # server -> clients
    bytes_up: int  # clients -> server
    clients: int  # replies aggregated
    time_s: float


@dataclass
class FedHistory:
    """Round-by-round figures of a federated run (round 0: the initial model)."""

    rounds: list[RoundRecord] = field(default_factory=list)
    epsilon: float | None = None
    delta: float | None = None
    config: dict = field(default_factory=dict)
    client_epsilon: dict[int, float] = field(default_factory=dict)  # local DP-SGD: client id -> epsilon at delta

    def rounds_to(self, accuracy: float) -> int | None:
        """First round whose global test accuracy reaches ``accuracy`` (None: never)."""
        return next((r.round for r in self.rounds if r.accuracy >= accuracy), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FedHistory:
        rounds = [RoundRecord(**r) for r in data["rounds"]]
        local = {int(k): float(v) for k, v in data.get("client_epsilon", {}).items()}
        return cls(rounds, data.get("epsilon"), data.get("delta"), data["config"], local)


def payload_bytes(msg: Message) -> int:
    """Bytes of the model arrays a message carries."""
    if msg.has_error():
        return 0
    return sum(len(a.data) for record in msg.content.array_records.values() for a in record.values())


class MeteredGrid:
    """A Grid proxy counting the model bytes sent each way and the replies that came back, and
    keeping each client's local DP-SGD mechanisms (sigma, q, steps), one per round it took part in."""

    def __init__(self, grid: Grid) -> None:
        self.grid, self.down, self.up, self.replies = grid, 0, 0, 0
        self.mechanisms: dict[int, list[tuple[float, float, int]]] = {}

    def __getattr__(self, name: str):
        return getattr(self.grid, name)

    def send_and_receive(self, messages, *, timeout: float | None = None):
        messages = list(messages)
        self.down += sum(payload_bytes(m) for m in messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        self.up += sum(payload_bytes(r) for r in replies)
        self.replies += sum(not r.has_error() for r in replies)
        for reply in replies:
            metrics = None if reply.has_error() else reply.content.metric_records.get("metrics")
            if metrics is not None and "dp-steps" in metrics:
                mechanism = (float(metrics["dp-noise"]), float(metrics["dp-sample-rate"]), int(metrics["dp-steps"]))
                self.mechanisms.setdefault(int(metrics["client-id"]), []).append(mechanism)
        return replies


def composed_epsilon(mechanisms: list[tuple[float, float, int]], delta: float) -> float:
    """epsilon at ``delta`` of the composition of subsampled Gaussian mechanisms
    (noise multiplier, sampling rate, steps), RDP accountant (Mironov 2017, via Opacus)."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = list(mechanisms)
    return float(accountant.get_epsilon(delta))


def dp_epsilon(cfg: FedConfig) -> float:
    """User-level (epsilon, delta) of DP-FedAvg: the subsampled Gaussian mechanism with
    sampling rate q = m/K over ``rounds`` steps."""
    return composed_epsilon([(cfg.dp_noise, cfg.clients_per_round / cfg.clients, cfg.rounds)], cfg.dp_delta)


def make_strategy(cfg: FedConfig) -> Strategy:
    """FedAvg with C, min clients and n_k weighting; DP-FedAvg wrapper when ``dp_noise`` > 0."""
    strategy = FedAvg(
        fraction_train=cfg.fraction,
        fraction_evaluate=0.0,  # the server evaluates the global model centrally each round
        min_train_nodes=cfg.min_clients,
        min_available_nodes=cfg.min_clients,
        weighted_by_key=UNIT_WEIGHT if cfg.dp_noise > 0 else "num-examples",
    )
    if cfg.dp_noise > 0:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy, cfg.dp_noise, cfg.dp_clip, cfg.clients_per_round
        )
    return strategy


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


def run_server(grid: Grid, cfg: FedConfig) -> FedHistory:
    """Run ``cfg.rounds`` rounds of FedAvg over ``grid`` (fewer once ``cfg.target_accuracy`` is
    reached); write ``history.json`` and ``history.png`` to ``cfg.workdir``; return the history."""
    test = load_partition(str(Path(cfg.workdir) / "test.npz"))
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
        with open(Path(cfg.workdir) / "rounds.jsonl", "a") as progress:  # live progress, one line per round
            progress.write(json.dumps(asdict(record)) + "\n")
        metered.down = metered.up = metered.replies = 0
        clock["t"] = now
        if cfg.target_accuracy and acc >= cfg.target_accuracy:
            raise TargetReached
        return MetricRecord({"accuracy": acc, "loss": loss})

    train_config = ConfigRecord(
        {"model": json.dumps(model_cfg.to_dict()), "local-epochs": cfg.local_epochs, "batch-size": cfg.batch_size,
         "lr": cfg.lr, "seed": cfg.seed, "local-dp-noise": cfg.local_dp_noise, "local-dp-clip": cfg.local_dp_clip,
         "dp-delta": cfg.dp_delta}
    )  # fmt: skip
    initial = ArrayRecord(model.state_dict())
    try:
        make_strategy(cfg).start(metered, initial, cfg.rounds, cfg.timeout_s, train_config, evaluate_fn=evaluate_fn)
    except TargetReached:
        pass
    if cfg.dp_noise > 0:
        history.epsilon, history.delta = dp_epsilon(cfg), cfg.dp_delta
    history.client_epsilon = {k: composed_epsilon(m, cfg.dp_delta) for k, m in sorted(metered.mechanisms.items())}
    out = Path(cfg.workdir)
    (out / "history.json").write_text(json.dumps(history.to_dict(), indent=2))
    plot_history(history, out / "history.png")
    return history


def plot_history(history: FedHistory, path: str | Path) -> Path:
    """Test accuracy, test loss and cumulative MB sent per round, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r.round for r in history.rounds]
    sent, total = [], 0.0
    for r in history.rounds:
        total += (r.bytes_down + r.bytes_up) / 1e6
        sent.append(total)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, values, label in zip(
        axes, ([r.accuracy for r in history.rounds], [r.loss for r in history.rounds], sent),
        ("test accuracy", "test loss", "MB sent (cumulative)"), strict=True,
    ):  # fmt: skip
        ax.plot(rounds, values, marker=".")
        ax.set(xlabel="round", ylabel=label)
    title = (
        f"{history.config.get('algorithm', '')} K={history.config.get('clients')} C={history.config.get('fraction')}"
    )
    if history.epsilon is not None:
        title += f"  (epsilon={history.epsilon:.2f}, delta={history.delta:g})"
    fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


def make_server_app(cfg: FedConfig | None = None) -> ServerApp:
    """A ServerApp for ``cfg`` (default: the run config, e.g. ``flwr run --run-config``)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, cfg or FedConfig.from_run_config(dict(context.run_config)))

    return app


app = make_server_app()
