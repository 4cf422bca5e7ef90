"""Reference models for the low-FPR membership attacks (LiRA, RMIA).

Following Carlini et al. 2022 ("Membership inference attacks from first principles", Sec. IV),
``n_models`` models are built like the target (``make_model()``, the one training loop with
``train_config`` and fresh ``hooks()``), each trained on a random half of a pool.

* ``online=True``: the pool is the candidates (members, then non-members of the target) and
  every candidate is in exactly half of the models (the IN/OUT design). When members and
  non-members are equally many, each model trains on as many examples as there are members.
* ``online=False``: the pool is the population (examples from the same distribution that the
  target did not train on); no model sees a candidate (the offline setting).

The population also serves as RMIA's comparison examples ``z``. Each model and the target
answer the same queries (:func:`queries`): the inputs, plus shifted and mirrored copies where
the model was trained with those augmentations. The default is none: on a model trained
without shifts, querying them lowered LiRA's power (measured in benchmarks/RESULTS.md).

Contract: ``fit`` returns ``self``; afterwards ``logits_`` holds every model's logits on the
candidates (models x candidates x queries x classes), ``keeps_`` which model trained on which
candidate, and ``population_logits_``/``population_keeps_`` the same for the ``population_``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trusttango.data.base import LabelledDataset, concat
from trusttango.errors import require
from trusttango.torchutil import batched_forward
from trusttango.train import Hook, TrainConfig, fit


def queries(x: torch.Tensor, shift: int = 0, flip: bool = False) -> list[torch.Tensor]:
    """The queries of a batch (Carlini et al. 2022, Sec. VI-B, query the model at the
    augmentations it was trained with): the inputs; for images (N, C, H, W) with ``shift > 0``,
    also moved by ``shift`` pixels up, down, left and right (zero padding, as the unified model's
    training shifts); with ``flip``, each of those mirrored left-right too."""
    if x.dim() != 4:
        return [x]
    found = [x]
    if shift > 0:
        h, w = x.shape[-2:]
        padded = F.pad(x, (shift, shift, shift, shift))
        moves = [(0, shift), (2 * shift, shift), (shift, 0), (shift, 2 * shift)]
        found += [padded[..., dy : dy + h, dx : dx + w] for dy, dx in moves]
    return found + [q.flip(-1) for q in found] if flip else found


def query_logits(model: nn.Module, data: LabelledDataset, shift: int = 0, flip: bool = False) -> torch.Tensor:
    """``model``'s logits on each query of ``data``: (examples, queries, classes)."""
    return torch.stack([batched_forward(model, q) for q in queries(data.x, shift, flip)], 1)


def _halves(n_models: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n_models, n) booleans: each example kept by exactly half of the models (Carlini et al.'s
    design, so that every example has as many IN as OUT models)."""
    return np.argsort(rng.random((n_models, n)), axis=0) < n_models // 2


class ReferenceModels:
    """Models trained like the target on random halves of a pool (see the module's docstring)."""

    def __init__(
        self,
        make_model: Callable[[], nn.Module],
        train_config: TrainConfig,
        n_models: int = 4,
        online: bool = True,
        hooks: Callable[[], Sequence[Hook]] | None = None,
        shift: int = 0,
        flip: bool = False,
        seed: int = 0,
    ) -> None:
        self.make_model, self.train_config, self.n_models, self.online = make_model, train_config, n_models, online
        self.hooks, self.shift, self.flip, self.seed = hooks, shift, flip, seed

    def fit(
        self,
        members: LabelledDataset,
        nonmembers: LabelledDataset,
        population: LabelledDataset,
        deadline: float | None = None,
    ) -> ReferenceModels:
        """Train the models; ``population`` must not hold the target's training data. With a
        ``deadline`` (``time.perf_counter``), no model is started after it: ``n_models_`` says
        how many were trained (offline only: online needs every model of the IN/OUT design)."""
        require(deadline is None or not self.online, "reference models: a deadline applies offline only")
        require(self.n_models >= 1, f"reference models: expected >= 1, got {self.n_models}")
        require(not self.online or self.n_models % 2 == 0,
                f"reference models: online needs an even number (half IN, half OUT), got {self.n_models}")  # fmt: skip
        require(len(members) > 0 and len(nonmembers) > 0, "membership: members and non-members must both be non-empty")
        require(len(population) >= len(members),
                f"population: {len(population)} examples, fewer than the {len(members)} members")  # fmt: skip
        rng = np.random.default_rng(self.seed)
        candidates = concat(members, nonmembers)
        pool = candidates if self.online else population
        keeps = _halves(self.n_models, len(pool), rng) if self.n_models > 1 else rng.random((1, len(pool))) < 0.5
        logits, population_logits = [], []
        for i, kept in enumerate(keeps):
            if deadline is not None and time.perf_counter() >= deadline:
                break
            model = self.make_model()
            config = replace(self.train_config, seed=self.seed + i)
            half = pool.subset(np.flatnonzero(kept), name=f"reference model {i + 1}/{self.n_models}")
            fit(model, half, None, config, hooks=list(self.hooks()) if self.hooks else [])
            logits.append(query_logits(model, candidates, self.shift, self.flip))
            population_logits.append(query_logits(model, population, self.shift, self.flip))
        self.n_models_ = len(logits)
        shape = (0, len(candidates), 1, members.num_classes)
        self.logits_ = torch.stack(logits) if logits else torch.zeros(shape)
        self.population_logits_ = torch.stack(population_logits) if logits else torch.zeros(0, len(population), 1, 1)
        self.keeps_ = keeps if self.online else np.zeros((self.n_models_, len(candidates)), dtype=bool)
        self.population_keeps_ = (
            np.zeros((self.n_models_, len(population)), dtype=bool) if self.online else keeps[: self.n_models_]
        )
        self.population_, self.n_members_ = population, len(members)
        return self

    def target(self, model: nn.Module, members: LabelledDataset, nonmembers: LabelledDataset) -> torch.Tensor:
        """The target's logits on the candidates' queries, in the order the models were fitted."""
        require(hasattr(self, "logits_"), "reference models: call fit() first")
        candidates = concat(members, nonmembers)
        require(len(candidates) == self.logits_.shape[1] and len(members) == self.n_members_,
                "reference models: fitted on other members and non-members")  # fmt: skip
        return query_logits(model, candidates, self.shift, self.flip)
