"""The one training loop. Every variant (plain, adversarial, Lipschitz, DP, federated
client) is this loop plus :class:`Hook` objects, never a copy of it.

A hook may, at set-up, replace the model / optimiser / loader / criterion (DP-SGD wraps
them), rewrite each batch (adversarial training), add to each loss (input-gradient
regularisers), and record per-epoch figures (epsilon spent). Hooks run in list order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from trusttango.data.base import LabelledDataset, make_loader
from trusttango.errors import InputError, require
from trusttango.modes import eval_mode
from trusttango.records import Record
from trusttango.torchutil import model_device

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle", "step")


@dataclass
class TrainConfig:
    """How to train. ``budget_s`` (wall-clock seconds) caps ``epochs`` when set."""

    epochs: int = 5
    budget_s: float | None = None
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "onecycle"
    patience: int | None = None  # early stopping: epochs without validation improvement
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        require(self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        require(self.budget_s is None or self.budget_s > 0, f"budget_s must be > 0, got {self.budget_s}")


@dataclass
class EpochRecord:
    """One row of the training history."""

    epoch: int
    step: int
    time_s: float
    train_loss: float
    val_accuracy: float | None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class History(Record):
    """What :func:`fit` did: one record per epoch, and why it stopped."""

    records: list[EpochRecord] = field(default_factory=list)
    stopped: str = "epochs"
    best_val_accuracy: float | None = None
    best_epoch: int | None = None


@dataclass
class TrainState:
    """The loop's mutable state, handed to every hook."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loader: torch.utils.data.DataLoader
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    config: TrainConfig
    device: torch.device
    epoch: int = 0
    step: int = 0
    stop: bool = False
    history: History = field(default_factory=History)


class Hook:
    """Base class of training hooks; override only what you need."""

    def setup(self, state: TrainState) -> None:
        """Called once before training; may replace ``state.model`` and friends."""

    def batch(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewrite a training batch (already on the device)."""
        return x, y

    def loss(
        self, state: TrainState, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor
    ) -> torch.Tensor:
        """Return the loss to minimise (default: unchanged)."""
        return loss

    def epoch_end(self, state: TrainState, record: EpochRecord) -> None:
        """Called after each epoch's validation; may add to ``record.extra`` or set ``state.stop``."""

    def meta(self) -> dict:
        """What to record in the saved model's ``config.json`` (e.g. a DP guarantee)."""
        return {}


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when present, else CPU; a CUDA device this machine lacks is refused."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        require(count > (device.index or 0), f"device {name!r}: this machine has {count} CUDA device(s)")
    return device


def seed_everything(seed: int) -> None:
    """Seed torch and numpy (the loop's shuffling has its own seeded generator)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        nesterov = cfg.momentum > 0  # plain SGD (FedSGD) when momentum is 0
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=nesterov
        )
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.25)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


@torch.no_grad()
def accuracy(
    model: nn.Module, data: LabelledDataset, batch_size: int = 512, device: torch.device | None = None
) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (eval mode; restores the previous mode)."""
    device = device or model_device(model)
    correct = 0
    with eval_mode(model):
        for x, y in make_loader(data, batch_size):
            correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
    return correct / max(1, len(data))


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps  {task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def fit(
    model: nn.Module,
    train: LabelledDataset,
    val: LabelledDataset | None = None,
    config: TrainConfig | None = None,
    hooks: Sequence[Hook] = (),
) -> History:
    """Train ``model`` on ``train`` in place; return the :class:`History`.

    Stops after ``config.epochs``, when ``config.budget_s`` runs out (checked every
    step), or when validation accuracy has not improved for ``config.patience`` epochs;
    with ``patience`` set, the best validation weights are restored at the end.
    """
    cfg = config or TrainConfig()
    require(len(train) > 0, f"{train.name}: training set is empty")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    loader = make_loader(train, cfg.batch_size, shuffle=True, seed=cfg.seed)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    state = TrainState(model, _optimizer(model, cfg), loader, criterion, cfg, device)
    for hook in hooks:
        hook.setup(state)
    scheduler = _scheduler(state.optimizer, cfg, len(state.loader))
    start = time.perf_counter()
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    with _progress(cfg.progress) as bar:
        task = bar.add_task(f"train {train.name}", total=cfg.epochs * len(state.loader), status="")
        while state.epoch < cfg.epochs and not state.stop:
            loss_sum, seen = _run_epoch(state, hooks, scheduler, start, bar, task)
            val_acc = accuracy(state.model, val, device=device) if val is not None else None
            record = EpochRecord(state.epoch, state.step, time.perf_counter() - start, loss_sum / max(1, seen), val_acc)
            for hook in hooks:
                hook.epoch_end(state, record)
            state.history.records.append(record)
            bar.update(
                task, status=f"loss {record.train_loss:.3f}" + (f" val {val_acc:.3f}" if val_acc is not None else "")
            )
            if val_acc is not None and (
                state.history.best_val_accuracy is None or val_acc > state.history.best_val_accuracy
            ):
                state.history.best_val_accuracy, state.history.best_epoch, stale = val_acc, state.epoch, 0
                if cfg.patience is not None:
                    best_state = {k: v.detach().clone() for k, v in state.model.state_dict().items()}
            elif cfg.patience is not None:
                stale += 1
                if stale >= cfg.patience:
                    state.history.stopped, state.stop = "early_stopping", True
            state.epoch += 1
    if best_state is not None:
        state.model.load_state_dict(best_state)
    return state.history


def _run_epoch(
    state: TrainState, hooks: Sequence[Hook], scheduler, start: float, bar: Progress, task
) -> tuple[float, int]:
    """One pass over the loader; returns (sum of batch losses * batch size, examples seen)."""
    cfg = state.config
    state.model.train()
    loss_sum, seen = 0.0, 0
    for x, y in state.loader:
        if cfg.budget_s is not None and time.perf_counter() - start >= cfg.budget_s:
            state.history.stopped, state.stop = "budget", True
            break
        if len(y) == 0:  # Poisson sampling (DP) can draw an empty batch
            continue
        x, y = x.to(state.device, non_blocking=True), y.to(state.device, non_blocking=True)
        for hook in hooks:
            x, y = hook.batch(state, x, y)
        state.optimizer.zero_grad(set_to_none=True)  # before the forward: Opacus' "ew" mode checks it there
        logits = state.model(x)
        loss = state.criterion(logits, y)
        for hook in hooks:
            loss = hook.loss(state, x, y, logits, loss)
        loss.backward()
        state.optimizer.step()
        if state.step < getattr(scheduler, "total_steps", math.inf):  # OneCycle refuses extra steps
            scheduler.step()
        value = float(loss.detach())
        require(math.isfinite(value), f"training diverged: loss became {value} at step {state.step}; lower the lr")
        loss_sum += value * len(y)
        seen += len(y)
        state.step += 1
        bar.advance(task)
    return loss_sum, seen
