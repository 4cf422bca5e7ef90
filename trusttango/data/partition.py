"""Partition one dataset into K federated clients (McMahan et al. 2017, Hsu et al. 2019).

* ``iid``: a random permutation cut into K equal parts.
* ``shards``: the pathological non-IID split of McMahan et al. (2017, Sec. 3): sort by
  label, cut into ``K * shards_per_client`` shards, give each client ``shards_per_client``
  random shards (2 per client: most clients see only two classes).
* ``dirichlet``: label skew of Hsu et al. (2019): for each class c draw
  ``p_c ~ Dir(alpha * 1_K)`` and deal the class's rows to the clients in proportions ``p_c``;
  small ``alpha`` -> each client dominated by few classes, large ``alpha`` -> IID.
* ``unbalanced``: IID labels, client sizes from a log-normal (sigma ``unbalance``).

Every client receives at least one example, else :class:`InputError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.plotting import save_figure, subplots

SCHEMES: tuple[str, ...] = ("iid", "shards", "dirichlet", "unbalanced")


def partition_indices(
    labels: np.ndarray,
    num_clients: int,
    scheme: str = "iid",
    seed: int = 0,
    alpha: float = 0.5,
    shards_per_client: int = 2,
    unbalance: float = 1.0,
) -> list[np.ndarray]:
    """Row indices of each of ``num_clients`` clients under ``scheme`` (see module docstring)."""
    labels = np.asarray(labels)
    n = len(labels)
    require(scheme in SCHEMES, f"partition: unknown scheme {scheme!r}; choose one of {SCHEMES}")
    require(num_clients >= 1, f"clients: must be >= 1, got {num_clients}")
    require(num_clients <= n, f"clients: {num_clients} clients but only {n} samples to share")
    require(alpha > 0, f"alpha: the Dirichlet concentration must be > 0, got {alpha}")
    require(shards_per_client >= 1, f"shards_per_client: must be >= 1, got {shards_per_client}")
    require(unbalance >= 0, f"unbalance: must be >= 0, got {unbalance}")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(n), num_clients)
    elif scheme == "shards":
        num_shards = num_clients * shards_per_client
        require(num_shards <= n, f"clients: {num_shards} shards need at least as many samples, got {n}")
        order = np.argsort(labels, kind="stable")
        shards = np.array_split(order, num_shards)
        owner = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
        parts = [np.concatenate([shards[s] for s in row]) for row in owner]
    elif scheme == "dirichlet":
        parts = _dirichlet(labels, num_clients, alpha, rng)
    else:
        sizes = rng.lognormal(0.0, unbalance, num_clients)
        cuts = np.floor(np.cumsum(sizes / sizes.sum() * (n - num_clients))).astype(int)[:-1]
        cuts = cuts + np.arange(1, num_clients)  # one guaranteed example per client
        parts = np.split(rng.permutation(n), cuts)
    parts = [np.sort(p) for p in parts]
    empty = [k for k, p in enumerate(parts) if len(p) == 0]
    require(
        not empty, f"partition: {scheme} left client(s) {empty[:5]} with no data; use fewer clients or larger alpha"
    )
    return parts


def _dirichlet(labels: np.ndarray, num_clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Hsu et al. (2019) label skew: class c's rows dealt in proportions ``Dir(alpha)``."""
    parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        p = rng.dirichlet(np.full(num_clients, alpha))
        cuts = np.floor(np.cumsum(p)[:-1] * len(rows)).astype(int)
        for k, chunk in enumerate(np.split(rows, cuts)):
            parts[k].append(chunk)
    return [np.concatenate(p) for p in parts]


def partition(
    ds: LabelledDataset, num_clients: int, scheme: str = "iid", seed: int = 0, **options
) -> list[LabelledDataset]:
    """``ds`` split into ``num_clients`` client datasets (options of :func:`partition_indices`)."""
    idx = partition_indices(ds.y.numpy(), num_clients, scheme, seed, **options)
    return [ds.subset(rows, f"{ds.name}/client{k}") for k, rows in enumerate(idx)]


def label_matrix(clients: list[LabelledDataset]) -> np.ndarray:
    """Counts ``(clients, classes)``: how many examples of each class each client holds."""
    return np.stack([c.class_counts() for c in clients])


def plot_label_distribution(clients: list[LabelledDataset], path: str | Path, max_clients: int = 50) -> Path:
    """Stacked bar chart of the label counts of (up to ``max_clients``) clients, as a PNG."""
    from matplotlib import colormaps

    counts = label_matrix(clients[:max_clients])
    fig, ax = subplots(figsize=(max(6, 0.18 * len(counts) + 2), 3.5))
    bottom = np.zeros(len(counts))
    cmap = colormaps["tab10" if counts.shape[1] <= 10 else "tab20"]
    for c in range(counts.shape[1]):
        ax.bar(
            np.arange(len(counts)), counts[:, c], bottom=bottom, color=cmap(c % cmap.N), label=clients[0].class_names[c]
        )
        bottom += counts[:, c]
    ax.set(xlabel="client", ylabel="examples", title=f"label distribution of {len(clients)} clients")
    ax.legend(fontsize=6, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    return save_figure(fig, path, dpi=110)
