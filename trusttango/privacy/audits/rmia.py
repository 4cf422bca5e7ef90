"""RMIA, the relative membership attack (Zarifzadeh et al. 2024, "Low-cost high-power
membership inference attacks", Sec. 3).

With ``Pr(x | theta)`` the target's probability of ``x``'s label and ``Pr(x)`` its average over
reference models, the likelihood ratio of a candidate ``x`` against a population example ``z``
is ``LR(x, z) = (Pr(x | theta) / Pr(x)) / (Pr(z | theta) / Pr(z))``; the score of ``x`` is the
fraction of population examples with ``LR(x, z) >= gamma`` (Eq. 4), per query, then averaged
over the queries; equal fractions are ordered by the ratio itself (:func:`_tie_break`).

* Offline: only models that did not train on the example; ``Pr(x)`` is approximated from their
  mean as ``((1 + a) Pr_OUT(x) + (1 - a)) / 2`` (the paper's linear approximation of the IN
  models, App. B.2.2), ``a = OFFLINE_A`` by default (the authors' code; the paper tunes it on a
  reference model). Population examples that every reference model trained on are left out.
* Online: ``Pr(x)`` of a candidate is the mean over all reference models (half IN, half OUT).
  No reference model trains on the population, so ``Pr(z)`` takes the offline approximation:
  both estimate the same ``(Pr_IN + Pr_OUT) / 2``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.privacy.audits.membership import MembershipResult, membership_result
from trusttango.privacy.audits.reference import ReferenceModels, query_logits

OFFLINE_A = 0.3


def _probability(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Softmax probability of the labels ``y``: (..., examples, queries)."""
    probs = logits.double().softmax(-1)
    return probs.gather(-1, y.view(-1, 1, 1).expand(*probs.shape[:-1], 1)).squeeze(-1).numpy()


def _marginal(ref: np.ndarray, keeps: np.ndarray, a: float, online: bool) -> tuple[np.ndarray, np.ndarray]:
    """``Pr(x)`` per example and query from the reference models' ``ref`` (models, examples,
    queries) that trained (``keeps``) or did not train on it: online, the mean over all of them;
    offline, the approximation from the OUT ones; and which examples have one."""
    if online:
        return ref.mean(0), np.ones(ref.shape[1], dtype=bool)
    out = ~keeps
    usable = out.any(0)
    mean_out = (ref * out[..., None]).sum(0) / np.maximum(out.sum(0), 1)[:, None]
    return ((1 + a) * mean_out + (1 - a)) / 2, usable


def _tie_break(ratio_x: np.ndarray, n_z: int) -> np.ndarray:
    """Less than one step of the count (``1 / (n_z * queries)``), ordering examples by their
    mean log ratio: for one query the count is a non-decreasing function of the ratio, so this
    only orders ties, such as every candidate that beats all of ``z`` (which would otherwise
    leave the lowest FPRs unread)."""
    order = np.log(ratio_x).mean(1).argsort().argsort()
    return (order + 1) / (len(order) + 1) * 0.5 / (n_z * ratio_x.shape[1])


def rmia_attack(
    model: nn.Module,
    members: LabelledDataset,
    nonmembers: LabelledDataset,
    references: ReferenceModels,
    online: bool = False,
    gamma: float = 1.0,
    offline_a: float = OFFLINE_A,
) -> MembershipResult:
    """RMIA on ``model`` with ``references`` fitted on the same members and non-members; one
    reference model suffices offline, online needs references fitted online."""
    n_models = getattr(references, "n_models_", references.n_models)
    require(n_models >= 1, f"RMIA: needs at least 1 reference model, got {n_models}")
    require(not online or references.online, "RMIA online: the reference models were fitted offline")
    require(gamma > 0 and np.isfinite(gamma), f"RMIA: gamma must be a finite value > 0, got {gamma}")
    require(0 <= offline_a <= 1, f"RMIA: offline_a must lie in [0, 1], got {offline_a}")
    y = torch.cat([members.y, nonmembers.y])
    target_x = _probability(references.target(model, members, nonmembers), y)
    population = references.population_
    target_z = _probability(query_logits(model, population, references.shift, references.flip), population.y)
    pr_x, _ = _marginal(_probability(references.logits_, y), references.keeps_, offline_a, online)
    pr_z, usable = _marginal(_probability(references.population_logits_, population.y),
                             references.population_keeps_, offline_a, online=False)  # fmt: skip
    require(bool(usable.any()), "RMIA: every population example was trained on by every reference model")
    ratio_x, ratio_z = target_x / pr_x, (target_z / pr_z)[usable]
    counts = np.mean([np.searchsorted(np.sort(ratio_z[:, q]), ratio_x[:, q] / gamma, side="right")
                      for q in range(ratio_x.shape[1])], 0) / len(ratio_z)  # fmt: skip
    scores = counts + _tie_break(ratio_x, len(ratio_z))
    n = len(members)
    mode = "online" if online else "offline"
    return membership_result(f"RMIA ({mode}, {n_models} reference models)", scores[:n], scores[n:])
