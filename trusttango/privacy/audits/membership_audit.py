"""One membership audit of a trained model, as the CLI and the report run it: members from its
training split, non-members and a population from a held-out split, the chosen attack beside
the loss threshold on the same examples, and the epsilon the attack proves at a delta."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from trusttango.data.base import LabelledDataset
from trusttango.errors import require
from trusttango.privacy.audits.lira import lira_attack
from trusttango.privacy.audits.lower_bound import EpsilonLowerBound, empirical_epsilon
from trusttango.privacy.audits.membership import MembershipResult, loss_threshold_attack
from trusttango.privacy.audits.recipe import Recipe
from trusttango.privacy.audits.reference import ReferenceModels
from trusttango.privacy.audits.rmia import rmia_attack

ATTACK_NAMES = ("rmia", "lira", "loss")


@dataclass
class Candidates:
    """Members (from the training split), non-members and a population (from a held-out one)."""

    members: LabelledDataset
    nonmembers: LabelledDataset
    population: LabelledDataset


def check_attack(attack: str, reference_models: int, online: bool) -> None:
    """Refuse an unknown attack or a reference count it cannot use, in one line, before any work."""
    require(attack in ATTACK_NAMES, f"unknown membership attack {attack!r}; choose one of {', '.join(ATTACK_NAMES)}")
    if attack == "loss":
        return
    least = 2 if attack == "lira" else 1
    require(reference_models >= least,
            f"--reference-models: {attack} needs at least {least}, got {reference_models}")  # fmt: skip
    require(not online or reference_models % 2 == 0,
            f"--reference-models: online needs an even number (half IN, half OUT), got {reference_models}")  # fmt: skip


def candidates(
    train: LabelledDataset, held_out: LabelledDataset, n: int, members: list[int] | None = None, seed: int = 0
) -> Candidates:
    """``members`` (indices into ``train``; default ``n`` at random), as many non-members from
    ``held_out`` as fit in half of it, and the rest of ``held_out`` as the population."""
    rng = np.random.default_rng(seed)
    if members is None:
        members = list(rng.choice(len(train), min(n, len(train), len(held_out) // 2), replace=False))
    outside = [i for i in members if not 0 <= i < len(train)]
    require(not outside, f"members: index {outside[:1]} is not in the training data ({len(train)} examples)")
    require(len(set(members)) == len(members), "members: an index is listed twice")
    order = rng.permutation(len(held_out))
    k = min(len(members), len(held_out) // 2)
    require(k >= 1, f"{held_out.name}: too few held-out examples for non-members and a population")
    population = held_out.subset(np.sort(order[k:]))
    require(len(population) >= len(members),
            f"population: {len(population)} held-out examples, fewer than the {len(members)} members; "
            "test fewer members")  # fmt: skip
    return Candidates(train.subset(np.sort(members)), held_out.subset(np.sort(order[:k])), population)


@dataclass
class MembershipAudit:
    """The attack's result, the loss threshold's on the same examples, and the epsilon bound."""

    result: MembershipResult
    baseline: MembershipResult
    bound: EpsilonLowerBound
    reference_models: int
    online: bool
    population: int
    notes: list[str]

    def summary(self) -> dict[str, object]:
        bound = {"lower": self.bound.lower, "point": None if np.isinf(self.bound.point) else self.bound.point,
                 "delta": self.bound.delta, "confidence": self.bound.confidence}  # fmt: skip
        return {**self.result.summary(), "baseline": self.baseline.summary(), "empirical_epsilon": bound,
                "reference_models": self.reference_models, "online": self.online, "population": self.population,
                "reference_recipe": self.notes}  # fmt: skip


def run_membership(
    model: nn.Module,
    found: Candidates,
    attack: str,
    recipe: Recipe | None,
    reference_models: int = 2,
    online: bool = False,
    delta: float = 1e-5,
    seed: int = 0,
) -> MembershipAudit:
    """Run ``attack`` (``rmia``, ``lira`` or ``loss``) on ``found``; reference models follow ``recipe``."""
    check_attack(attack, reference_models, online)
    baseline = loss_threshold_attack(model, found.members, found.nonmembers)
    result, notes = baseline, []
    if attack != "loss":
        require(recipe is not None, f"{attack}: needs how the model was trained (a recipe) for its reference models")
        refs = ReferenceModels(recipe.make_model, recipe.train_config, reference_models, online, recipe.hooks,
                               recipe.shift, recipe.flip, seed)  # fmt: skip
        refs.fit(found.members, found.nonmembers, found.population)
        run = lira_attack if attack == "lira" else rmia_attack
        result, notes = run(model, found.members, found.nonmembers, refs, online=online), recipe.notes
    bound = empirical_epsilon(result, delta)
    count = 0 if attack == "loss" else reference_models
    return MembershipAudit(result, baseline, bound, count, online, len(found.population), notes)
