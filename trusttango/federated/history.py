"""The record of a federated run: one :class:`RoundRecord` per evaluated round, the central
(epsilon, delta) of DP-FedAvg and each client's DP-SGD epsilon, and its plot.

Written by the server app as ``<workdir>/history.json`` and read back by
:func:`trusttango.federated.simulate` and :class:`trusttango.federated.LocalDeployment`; this
module imports no Flower, so reading a history needs none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trusttango.plotting import save_figure, subplots
from trusttango.records import Record


@dataclass
class RoundRecord:
    """The global model after round ``round``, and what that round cost."""

    round: int
    accuracy: float
    loss: float
    bytes_down: int  # server -> clients
    bytes_up: int  # clients -> server
    clients: int  # replies aggregated
    time_s: float


@dataclass
class FedHistory(Record):
    """Round-by-round figures of a federated run (round 0: the initial model)."""

    rounds: list[RoundRecord] = field(default_factory=list)
    epsilon: float | None = None
    delta: float | None = None
    config: dict = field(default_factory=dict)
    client_epsilon: dict[int, float] = field(default_factory=dict)  # local DP-SGD: client id -> epsilon at delta
    sampled: list[int] = field(default_factory=list)  # DP-FedAvg: clients asked in each round (Poisson)

    def rounds_to(self, accuracy: float) -> int | None:
        """First round whose global test accuracy reaches ``accuracy`` (None: never)."""
        return next((r.round for r in self.rounds if r.accuracy >= accuracy), None)

    def summary(self) -> str:
        """One line: the last record's accuracy and loss, and the privacy guarantees reached."""
        last = self.rounds[-1]
        line = f"round {last.round}: test accuracy {last.accuracy:.4f}, loss {last.loss:.4f}"
        if self.epsilon is not None:
            q = self.config.get("fraction")
            line += (
                f"; client-level (epsilon, delta) = ({self.epsilon:.3f}, {self.delta:g}), an RDP bound for "
                f"Poisson sampling of clients at q = {q} over {len(self.sampled)} releases"
            )
        if self.client_epsilon:
            delta = self.config.get("dp_delta")
            line += f"; client DP-SGD epsilon <= {max(self.client_epsilon.values()):.3f} at delta {delta:g}"
        if self.config.get("secagg"):
            line += "; aggregated with SecAgg+"
        return line

    @classmethod
    def from_dict(cls, data: dict) -> FedHistory:
        rounds = [RoundRecord(**r) for r in data["rounds"]]
        local = {int(k): float(v) for k, v in data.get("client_epsilon", {}).items()}
        return cls(rounds, data.get("epsilon"), data.get("delta"), data["config"], local, data.get("sampled", []))


def plot_history(history: FedHistory, path: str | Path) -> Path:
    """Test accuracy, test loss and cumulative MB sent per round, as a PNG."""
    rounds = [r.round for r in history.rounds]
    sent, total = [], 0.0
    for r in history.rounds:
        total += (r.bytes_down + r.bytes_up) / 1e6
        sent.append(total)
    fig, axes = subplots(1, 3, figsize=(11, 3.2))
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
        title += f"  client-level (epsilon={history.epsilon:.2f}, delta={history.delta:g})"
    fig.suptitle(title)
    return save_figure(fig, path, dpi=110)
