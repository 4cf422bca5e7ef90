"""LiRA, the likelihood-ratio membership attack (Carlini et al. 2022, "Membership inference
attacks from first principles", Alg. 1).

The signal of a candidate ``(x, y)`` on a model is the logit-scaled confidence
``phi = log(p_y / (1 - p_y))``, computed from the logits as ``z_y - logsumexp_{j != y} z_j``
(exact where ``p_y`` rounds to 1), on each augmented query.

* Online: Gaussians are fitted to ``phi`` over the reference models that trained on ``x`` (IN)
  and those that did not (OUT); the score is the mean over queries of
  ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``.
* Offline: only OUT models; a one-sided test, the score is the mean over queries of
  ``-log Pr[Z > phi]`` with ``Z ~ N(mu_out, s_out)`` (higher: more likely a member).

Means are medians over the models, as in the authors' code. Below ``PER_EXAMPLE_VARIANCE``
reference models the variance is global (Sec. VI-A: with few models a per-example variance is
too noisy): the pooled within-example variance of each side and query, or the plain variance
where a side holds one model per example.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.privacy.audits.membership import MembershipResult, membership_result
from trusttango.privacy.audits.reference import ReferenceModels

PER_EXAMPLE_VARIANCE = 64


def logit_confidence(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """``log(p_y / (1 - p_y))`` of ``logits`` (..., examples, queries, classes) at labels ``y``."""
    true = logits.gather(-1, y.view(-1, 1, 1).expand(*logits.shape[:-1], 1)).squeeze(-1)
    others = logits.scatter(-1, y.view(-1, 1, 1).expand(*logits.shape[:-1], 1), float("-inf"))
    return (true - others.logsumexp(-1)).double().numpy()


def _gaussian(signals: np.ndarray, side: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and standard deviation of ``signals`` (models, examples, queries) over the models
    where ``side`` (models, examples) holds, per example and query."""
    counts = side.sum(0)
    require(bool((counts >= 1).all()), "LiRA: an example has no reference model on one side (IN or OUT)")
    values = np.where(side[..., None], signals, np.nan)
    mean = np.nanmedian(values, 0)
    if len(signals) >= PER_EXAMPLE_VARIANCE:
        return mean, np.maximum(np.nanstd(values, 0, ddof=1), 1e-6)
    if counts.min() >= 2:
        pooled = np.nansum((values - mean) ** 2, (0, 1)) / (counts.sum() - len(counts))
        return mean, np.maximum(np.sqrt(pooled), 1e-6)
    return mean, np.maximum(np.nanstd(values, (0, 1)), 1e-6)


def lira_attack(
    model: nn.Module,
    members: LabelledDataset,
    nonmembers: LabelledDataset,
    references: ReferenceModels,
    online: bool = True,
) -> MembershipResult:
    """LiRA on ``model`` with ``references`` fitted on the same members and non-members;
    ``online`` needs references fitted online (each candidate IN half of them)."""
    n_models = getattr(references, "n_models_", references.n_models)
    require(n_models >= 2, f"LiRA: needs at least 2 reference models, got {n_models}")
    require(not online or references.online, "LiRA online: the reference models were fitted offline")
    y = torch.cat([members.y, nonmembers.y])
    phi = logit_confidence(references.target(model, members, nonmembers), y)
    signals = logit_confidence(references.logits_, y)
    mu_out, s_out = _gaussian(signals, ~references.keeps_)
    if online:
        mu_in, s_in = _gaussian(signals, references.keeps_)
        scores = (norm.logpdf(phi, mu_in, s_in) - norm.logpdf(phi, mu_out, s_out)).mean(1)
    else:
        scores = (-norm.logsf((phi - mu_out) / s_out)).mean(1)
    n = len(members)
    mode = "online" if online else "offline"
    return membership_result(f"LiRA ({mode}, {n_models} reference models)", scores[:n], scores[n:])
