"""Aggregation strategies of the one server app (Flower's Message API strategies).

* FedAvg (McMahan et al. 2017, Algorithm 1): ``w_{t+1} = sum_k (n_k / n) w_{t+1}^k``.
* DP-FedAvg (McMahan et al. 2018, "Learning differentially private recurrent language models",
  Algorithm 1, fixed-denominator estimator): :class:`DPFedAvg`. Each client joins a round
  independently with probability q = C (Poisson sampling: a variable number of clients per
  round, possibly none); each update is clipped to L2 norm ``dp_clip``; the server releases
  ``(sum of clipped updates + N(0, (dp_noise * dp_clip)^2 I)) / (q K)``. That is the
  Poisson-subsampled Gaussian mechanism with noise multiplier ``dp_noise`` at client level
  (add or remove one client's data), so the accountants' bound (:func:`dp_epsilon`, RDP) is
  the bound of the mechanism that runs. Sampling and noise draw from a generator seeded with
  ``FedConfig.seed``: the guarantee assumes that seed stays secret.
* SecAgg+ (Bell et al. 2020, "Secure single-server aggregation with (poly)logarithmic
  overhead"; Bonawitz et al. 2017): :class:`SecAggPlusFedAvg` runs Flower's
  ``SecAggPlusWorkflow`` each round, so the server learns only the weighted sum of the updates.

SecAgg+ sums integers modulo M = 2^32, so each client quantises ``(n_k / W) * update_k``:
coordinates are clipped to [-c, c] and mapped to Q levels by stochastic rounding, and the
weight ``n_k / W`` is itself quantised to ``round(Q n_k / W) / Q``. The unmasked sum divided by
the summed weights is the n_k-weighted mean of the updates exactly when

* ``W >= max_k n_k`` (else ``(n_k / W) * update`` leaves [-c, c]): W is the largest partition;
* ``c >= max |update coordinate|``: each client reports its update's largest coordinate, the
  next round's c is twice this round's largest, and a round whose updates exceed c is run
  through the protocol again with c doubled past them (the clients resend the same update);
* ``m * Q < M`` (no wrap-around in the sum of m clients): Q is the largest power of two below
  M / m, so one quantisation step is ``2c / Q`` and the mean is off by at most
  ``m * 2c / (Q * sum_k n_k / W)`` per coordinate.

Clients send updates ``w_k - w_t`` rather than weights, so c bounds the (small) updates and the
quantisation step is fine. What the server still sees per client: n_k (as in every SecAgg+
round of Flower) and the update's largest coordinate (a post-processing of a DP-SGD update
when the clients train with local DP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Strategy
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from trusttango.federated.config import FedConfig
from trusttango.privacy.dp.accountants import composed_epsilon

UNIT_WEIGHT = "unit-weight"
MODULUS = 2**32  # SecAgg+ mask modulus M (Flower's largest)
MIN_CLIP = 1e-8  # smallest quantisation range: updates of exactly zero still need one


def dp_epsilon(cfg: FedConfig, rounds: int | None = None) -> float:
    """Client-level epsilon at ``cfg.dp_delta`` of :class:`DPFedAvg` (an upper bound, RDP): the
    Poisson-subsampled Gaussian mechanism with rate q = C, composed over ``rounds`` (default:
    ``cfg.rounds``) releases."""
    steps = cfg.rounds if rounds is None else rounds
    return composed_epsilon([(cfg.dp_noise, cfg.fraction, steps)], cfg.dp_delta)


def make_strategy(cfg: FedConfig, client_sizes: list[int] | None = None) -> Strategy:
    """The strategy of ``cfg``: SecAgg+ FedAvg when ``secagg`` (weights bounded by the largest of
    ``client_sizes``), FedAvg with C, min clients and n_k weighting otherwise, wrapped in DP-FedAvg
    when ``dp_noise`` > 0."""
    if cfg.secagg:
        return SecAggPlusFedAvg(cfg, max(client_sizes or [1]))
    if cfg.dp_noise > 0:
        return DPFedAvg(cfg)
    return FedAvg(
        fraction_train=cfg.fraction,
        fraction_evaluate=0.0,  # the server evaluates the global model centrally each round
        min_train_nodes=cfg.min_clients,
        min_available_nodes=cfg.min_clients,
        weighted_by_key="num-examples",
    )


class DPFedAvg(FedAvg):
    """DP-FedAvg with Poisson sampling of clients (module docstring). ``sampled`` lists how
    many clients each round asked; ``releases`` counts the noisy aggregates (one per round)."""

    def __init__(self, cfg: FedConfig) -> None:
        super().__init__(
            fraction_train=cfg.fraction, fraction_evaluate=0.0, min_train_nodes=0,
            min_available_nodes=cfg.clients, weighted_by_key=UNIT_WEIGHT,
        )  # fmt: skip
        self.noise, self.clip, self.expected = cfg.dp_noise, cfg.dp_clip, cfg.fraction * cfg.clients
        self.rng = np.random.default_rng(cfg.seed)
        self.sampled: list[int] = []
        self.releases = 0
        self._arrays: ArrayRecord | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> list:
        """Ask each of the K connected clients independently with probability q = C."""
        _, nodes = sample_nodes(grid, self.min_available_nodes, 0)
        chosen = [node for node in sorted(nodes) if self.rng.random() < self.fraction_train]
        self.sampled.append(len(chosen))
        self._arrays = arrays
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return list(self._construct_messages(record, chosen, MessageType.TRAIN))

    def aggregate_train(self, server_round: int, replies) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """``w_t + (sum_k clip(w_k - w_t) + N(0, (sigma C)^2)) / (q K)``; released every round,
        also when no client was sampled or none replied."""
        valid, _ = self._check_and_log_replies(list(replies), is_train=True)
        current = [a.astype(np.float64) for a in self._arrays.to_numpy_ndarrays()]
        total = [np.zeros_like(a) for a in current]
        for reply in valid:
            update = [w.astype(np.float64) - c for w, c in zip(_arrays_of(reply), current, strict=True)]
            scale = min(1.0, self.clip / max(float(np.sqrt(sum(float((u * u).sum()) for u in update))), 1e-12))
            total = [t + scale * u for t, u in zip(total, update, strict=True)]
        noisy = [(t + self.rng.normal(0.0, self.noise * self.clip, t.shape)) / self.expected for t in total]
        self.releases += 1
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key) if valid else None
        return add_update(self._arrays, noisy), metrics


def _arrays_of(reply) -> list[np.ndarray]:
    """The one ArrayRecord of a client's reply, as numpy arrays."""
    (record,) = reply.content.array_records.values()
    return record.to_numpy_ndarrays()


def quantization_levels(clients: int) -> int:
    """Q: the largest power of two with ``clients * Q < M`` (and Q < 2^31: Flower rounds to int32)."""
    return 2 ** min(30, int(math.log2((MODULUS - 1) // clients)))


@dataclass
class _Node:
    """What Flower's SecAgg+ workflow needs of a legacy client proxy: the node id."""

    node_id: int


class _Participants:
    """The legacy strategy interface Flower's ``SecAggPlusWorkflow`` calls for one round: the
    sampled nodes get ``config``; :meth:`aggregate_fit` keeps the unmasked aggregate."""

    def __init__(self, nodes: list[int], config: dict) -> None:
        self.nodes, self.config = nodes, config
        self.results: list = []  # FitRes of each client; each carries the aggregate as parameters

    def configure_fit(self, server_round: int, parameters, client_manager) -> list:
        from flwr.common import FitIns

        return [(_Node(nid), FitIns(parameters, dict(self.config))) for nid in self.nodes]

    def aggregate_fit(self, server_round: int, results: list, failures: list) -> tuple:
        self.results = [fit for _, fit in results]
        return (self.results[0].parameters if self.results else None), {}


def secagg_round(grid: Grid, server_round: int, arrays: ArrayRecord, participants: _Participants, workflow) -> list:
    """One run of Flower's SecAgg+ ``workflow`` over ``grid`` from the global ``arrays``; the
    clients' ``FitRes`` (each holding the unmasked weighted mean as parameters), empty if the
    protocol halted (too many dropouts)."""
    from flwr.app import Context, RecordDict
    from flwr.server import LegacyContext
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

    state = RecordDict()
    state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({Key.CURRENT_ROUND: server_round})
    state.array_records[MAIN_PARAMS_RECORD] = arrays
    context = Context(run_id=0, node_id=0, node_config={}, state=state, run_config={})
    workflow(grid, LegacyContext(context, strategy=participants))  # type: ignore[arg-type]
    return participants.results


class SecAggPlusFedAvg(FedAvg):
    """FedAvg whose every training round is Flower's SecAgg+ protocol (module docstring).

    SecAgg+ needs four message exchanges per round rather than one, so :meth:`configure_train`
    samples the nodes and sends nothing, and :meth:`aggregate_train` runs the protocol on the
    same grid; evaluation, timeouts and the round loop stay :meth:`Strategy.start`'s."""

    def __init__(self, cfg: FedConfig, max_weight: int) -> None:
        super().__init__(
            fraction_train=cfg.fraction, fraction_evaluate=0.0, min_train_nodes=cfg.min_clients,
            min_available_nodes=cfg.min_clients,
        )  # fmt: skip
        self.max_weight, self.clip, self.timeout = float(max_weight), float(cfg.secagg_clip), cfg.timeout_s
        self.clips: list[float] = []  # the quantisation range c of every protocol run
        self._pending: tuple | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> list:
        """Sample this round's nodes (as FedAvg does); the messages are SecAgg+'s."""
        wanted = max(int(len(list(grid.get_node_ids())) * self.fraction_train), self.min_train_nodes)
        nodes, _ = sample_nodes(grid, self.min_available_nodes, wanted)
        config["server-round"] = server_round
        self._pending = (grid, arrays, _Participants(nodes, dict(config)))
        return []

    def workflow(self, clients: int):
        """Flower's ``SecAggPlusWorkflow`` sized for ``clients`` and the current range."""
        from flwr.server.workflow import SecAggPlusWorkflow

        return SecAggPlusWorkflow(
            num_shares=1.0, reconstruction_threshold=2 / 3, max_weight=self.max_weight, clipping_range=self.clip,
            quantization_range=quantization_levels(clients), modulus_range=MODULUS, timeout=self.timeout,
        )  # fmt: skip

    def aggregate_train(self, server_round: int, replies) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Run SecAgg+ until no update exceeded the range; ``w_t`` plus the weighted mean update."""
        grid, arrays, participants = self._pending
        while True:
            self.clips.append(self.clip)
            results = secagg_round(grid, server_round, arrays, participants, self.workflow(len(participants.nodes)))
            if not results:
                return None, None
            peak = max(float(fit.metrics["update-max-abs"]) for fit in results)
            if peak <= self.clip:
                break
            self.clip = 2 * peak  # clipped: the sum is not the mean; again with a range that holds
        self.clip = max(2 * peak, MIN_CLIP)  # the next round's range, from this round's updates
        from flwr.common import parameters_to_ndarrays

        return add_update(arrays, parameters_to_ndarrays(results[0].parameters)), train_metrics(results)


def add_update(arrays: ArrayRecord, update: list[np.ndarray]) -> ArrayRecord:
    """``arrays`` plus the aggregated ``update`` (the same order and shapes)."""
    import torch

    state = arrays.to_torch_state_dict()
    return ArrayRecord({k: (v.double() + torch.from_numpy(np.asarray(u))).to(v.dtype) for (k, v), u in
                        zip(state.items(), update, strict=True)})  # fmt: skip


def train_metrics(results: list) -> MetricRecord:
    """The n_k-weighted mean training loss and the number of examples of one round."""
    n = np.array([fit.num_examples for fit in results], dtype=float)
    loss = np.array([float(fit.metrics["train-loss"]) for fit in results])
    return MetricRecord({"train-loss": float((n * loss).sum() / n.sum()), "num-examples": int(n.sum())})
