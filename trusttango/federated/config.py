"""Settings of a federated run and the files the clients and server read.

The server owns the settings (:class:`FedConfig`); it sends each round's local
hyperparameters (E, B, lr) and the model's :class:`~trusttango.models.ModelConfig` in the
training message, so a client needs to know only where its own partition lies.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict
from torch import nn

from trusttango.data import load_data
from trusttango.data.base import LabelledDataset
from trusttango.data.files import load_npz
from trusttango.data.partition import SCHEMES, partition, plot_label_distribution
from trusttango.errors import require
from trusttango.models import ModelConfig, build_model, config_for
from trusttango.schema import STRICT, read, validate

ALGORITHMS: tuple[str, ...] = ("fedavg", "fedsgd")


@dataclass
class FedConfig:
    """A federated run (McMahan et al. 2017, Algorithm 1).

    ``fraction`` is C (each round samples ``max(C*K, min_clients)`` of the K clients),
    ``local_epochs`` E and ``batch_size`` B (0: the client's whole data, i.e. B = inf).
    ``algorithm="fedsgd"`` forces E = 1 and B = inf with plain SGD: one full-batch gradient
    step per client per round, the paper's FedSGD baseline. ``dp_noise`` > 0 runs DP-FedAvg
    (McMahan et al. 2018): each client joins a round independently with probability C (Poisson
    sampling, so ``min_clients`` does not apply), the server clips each update to ``dp_clip``
    and adds noise (:class:`~trusttango.federated.strategies.DPFedAvg`);
    ``local_dp_noise`` > 0 makes every client train with DP-SGD (Abadi et al. 2016), each
    client's (epsilon, ``dp_delta``) composed over the rounds it took part in.
    ``secagg`` aggregates with Flower's SecAgg+ (Bell et al. 2020): the server learns only the
    n_k-weighted sum of the client updates (see :mod:`trusttango.federated.strategies`);
    ``secagg_clip`` is the first round's bound on each update coordinate, later rounds size it
    from the updates (an update beyond the bound is re-aggregated, never clipped).
    """

    __pydantic_config__ = STRICT  # read from Flower's run config by trusttango.schema

    data: str = "digits"
    workdir: str = "runs/federated"
    clients: int = 10
    fraction: float = 0.1
    rounds: int = 5
    local_epochs: int = 1
    batch_size: int = 10
    lr: float = 0.1
    algorithm: str = "fedavg"
    partition: str = "iid"
    alpha: float = 0.5
    min_clients: int = 1
    train_limit: int = 0  # use only this many training examples (0: all)
    dp_noise: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    local_dp_noise: float = 0.0  # sigma of DP-SGD on every client (0: off)
    local_dp_clip: float = 1.0  # per-example gradient norm bound of client DP-SGD
    timeout_s: float = 600.0  # per round: replies later than this are left out
    target_accuracy: float = 0.0  # stop as soon as the global test accuracy reaches it (0: run all rounds)
    eval_every: int = 1  # evaluate the global model every this many rounds (and after the last)
    secagg: bool = False  # aggregate with SecAgg+ (secure aggregation)
    secagg_clip: float = 1.0  # SecAgg+: first round's bound on |update coordinate| (later rounds adapt)
    seed: int = 0
    depth: int = 2
    width: float = 0.5

    def __post_init__(self) -> None:
        require(self.clients >= 1, f"clients: must be >= 1, got {self.clients}")
        require(0 < self.fraction <= 1, f"fraction: C must lie in (0, 1], got {self.fraction}")
        require(self.rounds >= 1, f"rounds: must be >= 1, got {self.rounds}")
        require(self.eval_every >= 1, f"eval_every: must be >= 1, got {self.eval_every}")
        require(self.local_epochs >= 1, f"local_epochs: E must be >= 1, got {self.local_epochs}")
        require(self.batch_size >= 0, f"batch_size: B must be >= 0 (0: full local data), got {self.batch_size}")
        require(self.lr > 0, f"lr: must be > 0, got {self.lr}")
        require(self.algorithm in ALGORITHMS, f"algorithm: expected one of {ALGORITHMS}, got {self.algorithm!r}")
        require(self.partition in SCHEMES, f"partition: expected one of {SCHEMES}, got {self.partition!r}")
        require(1 <= self.min_clients <= self.clients, f"min_clients: must lie in [1, clients], got {self.min_clients}")
        require(self.dp_noise >= 0 and self.dp_clip > 0, "dp_noise must be >= 0 and dp_clip > 0")
        require(self.local_dp_noise >= 0 and self.local_dp_clip > 0, "local_dp_noise must be >= 0, local_dp_clip > 0")
        require(0 <= self.target_accuracy <= 1, f"target_accuracy must lie in [0, 1], got {self.target_accuracy}")
        require(0 < self.dp_delta < 1, f"dp_delta must lie in (0, 1), got {self.dp_delta}")
        require(self.secagg_clip > 0, f"secagg_clip must be > 0, got {self.secagg_clip}")
        if self.secagg:
            require(self.clients_per_round >= 2, f"secagg: needs >= 2 clients per round, got {self.clients_per_round}")
            require(
                self.dp_noise == 0,
                "secagg: DP-FedAvg (dp_noise) clips each update on the server, which secure aggregation hides; "
                "use local_dp_noise (DP-SGD on the clients) instead",
            )
        if self.algorithm == "fedsgd":
            self.local_epochs, self.batch_size = 1, 0

    @property
    def clients_per_round(self) -> int:
        """m = max(C * K, min_clients)."""
        return max(int(self.fraction * self.clients), self.min_clients)

    def to_run_config(self) -> dict[str, str | int | float | bool]:
        """Flat key/value form (Flower's run config: ``--run-config`` / pyproject)."""
        return {k.replace("_", "-"): v for k, v in asdict(self).items()}

    @classmethod
    def from_run_config(cls, config: dict) -> FedConfig:
        """The settings in Flower's run config (keys with ``-``), each field's type checked;
        keys that are not settings (Flower's own) are left out."""
        known = {f.name for f in fields(cls)}
        values = {k.replace("-", "_"): v for k, v in config.items() if k.replace("-", "_") in known}
        return validate(cls, values, "run config")


def model_config(cfg: FedConfig, data: LabelledDataset) -> ModelConfig:
    """The global model: a small CNN with group norm (batch-norm running statistics do not average
    across non-IID clients, Hsieh et al. 2020)."""
    return config_for(data.input_shape, data.num_classes, depth=cfg.depth, width=cfg.width, norm="group", dropout=0.0)


def build_global_model(model_cfg: ModelConfig, seed: int = 0) -> nn.Module:
    return build_model(model_cfg, seed=seed)


def prepare(cfg: FedConfig, clients: list[LabelledDataset] | None = None) -> Path:
    """Write the federation's files under ``cfg.workdir`` and return that folder: one partition
    ``client_<k>.npz`` per client (``clients`` when given, else ``cfg.data``'s training split
    partitioned by ``cfg.partition``), ``test.npz`` (``cfg.data``'s test split), ``clients.json``
    (the partition sizes n_k), ``partition.png`` (label distribution) and ``fed_config.json``."""
    splits = load_data(cfg.data, seed=cfg.seed)
    if clients is None:
        train = splits.train
        if cfg.train_limit and cfg.train_limit < len(train):
            train = train.subset(np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.train_limit])
        clients = partition(train, cfg.clients, cfg.partition, seed=cfg.seed, alpha=cfg.alpha)
    require(len(clients) == cfg.clients, f"clients: {cfg.clients} expected, {len(clients)} partitions given")
    out = Path(cfg.workdir)
    out.mkdir(parents=True, exist_ok=True)
    for k, ds in enumerate(clients):
        save_npz(ds, out / f"client_{k}.npz")
    save_npz(splits.test, out / "test.npz")
    (out / "clients.json").write_text(json.dumps({"sizes": [len(ds) for ds in clients]}))
    plot_label_distribution(clients, out / "partition.png")
    (out / "fed_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return out


class ClientsFile(BaseModel):
    """The schema of ``clients.json``: the partition sizes n_k, one per client."""

    model_config = ConfigDict(strict=True, extra="forbid")

    sizes: list[int]


def client_sizes(folder: str | Path) -> list[int]:
    """The partition sizes n_k that :func:`prepare` recorded in ``<folder>/clients.json``."""
    path = Path(folder) / "clients.json"
    require(path.exists(), f"{path}: missing (write the federation's files with prepare())")
    return read(ClientsFile, path).sizes


def save_npz(ds: LabelledDataset, path: Path) -> None:
    x = (ds.x.numpy() * 255).round().astype(np.uint8)  # (N, C, H, W) bytes
    np.savez(path, x=x, y=ds.y.numpy(), class_names=np.array(ds.class_names))


@lru_cache(maxsize=4)
def load_partition(path: str) -> LabelledDataset:
    """One client's (or the test) partition, cached per process."""
    return load_npz(path)
