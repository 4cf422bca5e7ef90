"""Membership inference: was this example in the model's training set?

* Loss threshold (Yeom et al. 2018, "Privacy Risk in Machine Learning", Section 3.2): declare
  "member" when the example's loss is below ``tau``; sweeping ``tau`` gives a ROC curve, and
  the membership advantage is ``max(TPR - FPR)`` (Yeom Def. 4); ``tau`` = mean training loss
  is Yeom's own choice.
* Shadow models (Shokri et al. 2017, "Membership Inference Attacks against ML Models"):
  train shadow models like the target on data from the same distribution, label their
  outputs on their own training / held-out data as in / out, and fit an attack classifier
  on those outputs. Following Salem et al. 2019 (ML-Leaks), one attack model on the sorted
  posteriors (plus the true-label probability) replaces Shokri's per-class models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trusttango import plotting
from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.torchutil import batched_forward
from trusttango.train import TrainConfig, fit

LOW_FPRS = (0.001, 0.01)  # Carlini et al. 2022 report TPR at 0.1 % and 1 % FPR


@dataclass
class MembershipResult:
    """Scores (higher = more likely a member) for members then non-members, and the ROC."""

    method: str
    scores: np.ndarray
    is_member: np.ndarray
    auc: float
    advantage: float  # max over thresholds of TPR - FPR (Yeom Def. 4)
    fpr: np.ndarray
    tpr: np.ndarray

    @property
    def n_members(self) -> int:
        return int(self.is_member.sum())

    @property
    def n_nonmembers(self) -> int:
        return len(self.is_member) - self.n_members

    def tpr_at(self, fpr: float) -> float:
        """The highest true-positive rate at a false-positive rate of at most ``fpr`` (no
        interpolation between ROC points: with ``n`` non-members, FPR moves in steps of ``1/n``,
        so ``fpr < 1/n`` reads the ROC at zero false positives)."""
        return float(self.tpr[self.fpr <= fpr].max(initial=0.0))

    def interpretation(self) -> str:
        level = "no measurable" if self.auc < 0.55 else "some" if self.auc < 0.65 else "clear"
        low = ", ".join(f"TPR {self.tpr_at(f):.3f} at FPR {f:.1%}" for f in LOW_FPRS)
        figures = f"{low}; AUC {self.auc:.3f}, advantage {self.advantage:.3f}"
        return f"{self.method}: {figures} -> {level} membership leakage (AUC 0.5: none)"

    def summary(self) -> dict[str, object]:
        """The JSON-able headline: method, TPR at the low FPRs, AUC, advantage and the number of
        members / non-members."""
        low = {f"tpr_at_fpr_{f:g}": self.tpr_at(f) for f in LOW_FPRS}
        return {"method": self.method, **low, "auc": self.auc, "advantage": self.advantage,
                "members": self.n_members, "nonmembers": self.n_nonmembers}  # fmt: skip


def membership_result(method: str, member_scores: np.ndarray, nonmember_scores: np.ndarray) -> MembershipResult:
    """The ROC, AUC and advantage of ``method``'s scores (higher: more likely a member)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores = np.concatenate([member_scores, nonmember_scores])
    truth = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    fpr, tpr, _ = roc_curve(truth, scores)
    return MembershipResult(
        method, scores, truth, float(roc_auc_score(truth, scores)), float((tpr - fpr).max()), fpr, tpr
    )


def _outputs(model: nn.Module, data: LabelledDataset, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities and per-example cross-entropy losses of ``model`` on ``data``."""
    logits = batched_forward(model, data.x, batch_size)
    return logits.softmax(1), F.cross_entropy(logits, data.y, reduction="none")


def loss_threshold_attack(model: nn.Module, members: LabelledDataset, nonmembers: LabelledDataset) -> MembershipResult:
    """Yeom et al.'s attack: score = -loss (a low loss means "seen in training")."""
    require(len(members) > 0 and len(nonmembers) > 0, "membership: members and non-members must both be non-empty")
    _, loss_in = _outputs(model, members)
    _, loss_out = _outputs(model, nonmembers)
    return membership_result("loss threshold (Yeom)", -loss_in.numpy(), -loss_out.numpy())


def attack_features(probs: torch.Tensor, labels: torch.Tensor, top: int = 3) -> np.ndarray:
    """Per example: the ``top`` largest posteriors (sorted), the true-label probability and its log."""
    p_true = probs.gather(1, labels.view(-1, 1))
    top_p = probs.sort(1, descending=True).values[:, : min(top, probs.shape[1])]
    return torch.cat([top_p, p_true, p_true.clamp_min(1e-12).log()], 1).numpy()


def _features(model: nn.Module, data: LabelledDataset) -> np.ndarray:
    return attack_features(_outputs(model, data)[0], data.y)


def shadow_attack(
    model: nn.Module,
    members: LabelledDataset,
    nonmembers: LabelledDataset,
    shadow_data: LabelledDataset,
    make_shadow: Callable[[], nn.Module],
    train_config: TrainConfig,
    n_shadows: int = 2,
    seed: int = 0,
) -> MembershipResult:
    """Shokri et al.'s attack: ``n_shadows`` models from ``make_shadow()`` are each trained with
    ``train_config`` on a random half of ``shadow_data`` (disjoint from the target's data); an
    attack classifier learns in / out from their outputs, then scores the target's examples."""
    require(n_shadows >= 1, f"n_shadows must be >= 1, got {n_shadows}")
    require(len(shadow_data) >= 4, f"shadow_data: need at least 4 examples, got {len(shadow_data)}")
    from sklearn.ensemble import GradientBoostingClassifier

    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for i in range(n_shadows):
        order = rng.permutation(len(shadow_data))
        inside, outside = shadow_data.subset(order[: len(order) // 2]), shadow_data.subset(order[len(order) // 2 :])
        shadow = make_shadow()
        fit(shadow, inside, None, replace(train_config, seed=seed + i, progress=False))
        feats += [_features(shadow, inside), _features(shadow, outside)]
        labels += [np.ones(len(inside)), np.zeros(len(outside))]
    attack = GradientBoostingClassifier(random_state=seed).fit(np.concatenate(feats), np.concatenate(labels))
    score_in = attack.predict_proba(_features(model, members))[:, 1]
    score_out = attack.predict_proba(_features(model, nonmembers))[:, 1]
    return membership_result(f"shadow models (Shokri, {n_shadows} shadows)", score_in, score_out)


def plot_roc(results: list[MembershipResult], path: str | Path, log: bool = False) -> Path:
    """ROC curves of membership attacks (with the chance diagonal) as a PNG; ``log=True`` on
    log-log axes from the smallest FPR the non-members can show (Carlini et al. 2022, Fig. 1)."""
    curves = {r.method: (r.fpr, r.tpr, r.auc) for r in results}
    floor = min(1 / max(r.n_nonmembers, 1) for r in results)
    return plotting.plot_roc(curves, path, title="Membership inference ROC", log=log, floor=floor)
