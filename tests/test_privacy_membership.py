"""Membership inference at low false-positive rates: LiRA (Carlini et al. 2022) and RMIA
(Zarifzadeh et al. 2024) against the loss-threshold attack on the same members and
non-members, on a deliberately overfit Fashion-MNIST MLP and on a DP-SGD one at epsilon 1;
the empirical epsilon lower bound checked against an independent Clopper-Pearson interval."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from torch import nn

from trusttango.cli import main
from trusttango.errors import InputError
from trusttango.privacy.audits import (
    ReferenceModels,
    empirical_epsilon,
    lira_attack,
    loss_threshold_attack,
    plot_roc,
    rmia_attack,
)
from trusttango.privacy.audits.lira import logit_confidence
from trusttango.privacy.audits.membership import membership_result
from trusttango.privacy.audits.reference import queries
from trusttango.privacy.dp import DPSGD
from trusttango.train import TrainConfig, fit

OVERFIT = TrainConfig(epochs=40, batch_size=64, lr=1e-3, weight_decay=0.0, schedule="constant", progress=False)
DP = TrainConfig(epochs=8, batch_size=64, lr=2e-3, weight_decay=0.0, schedule="constant", progress=False)


def _mlp() -> nn.Module:
    """The user's own module (not a trusttango model): an MLP that memorises a small set."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


def _candidates(fmnist, n: int):
    """``n`` members (the target's whole training set, as in Carlini et al.'s design, where the
    online reference models train on as many examples as the target), ``n`` non-members and a
    population of ``2n``, all real Fashion-MNIST images."""
    members = fmnist.train.subset(np.random.default_rng(1).permutation(len(fmnist.train))[:n])
    order = np.random.default_rng(0).permutation(len(fmnist.test))
    return members, fmnist.test.subset(order[:n]), fmnist.test.subset(order[n : 3 * n])


@pytest.fixture(scope="module")
def overfit(fmnist):
    members, nonmembers, population = _candidates(fmnist, 1000)
    model = _mlp()
    fit(model, members, None, OVERFIT)
    references = ReferenceModels(_mlp, OVERFIT, n_models=8, online=True).fit(members, nonmembers, population)
    return model.eval(), members, nonmembers, population, references


def test_lira_and_rmia_find_many_times_the_loss_attacks_members_at_low_fpr(overfit, tmp_path):
    """At 1 % FPR each of LiRA and RMIA (online and offline) finds at least 3x the members the
    loss threshold finds on the same examples, and at least 3x chance (the FPR itself)."""
    model, members, nonmembers, _, references = overfit
    loss = loss_threshold_attack(model, members, nonmembers)
    attacks = [lira_attack(model, members, nonmembers, references, online=True),
               lira_attack(model, members, nonmembers, references, online=False),
               rmia_attack(model, members, nonmembers, references, online=True),
               rmia_attack(model, members, nonmembers, references, online=False)]  # fmt: skip
    floor = 3 * max(loss.tpr_at(0.01), 0.01)
    for result in attacks:
        assert result.tpr_at(0.01) >= floor, (result.interpretation(), loss.interpretation())
        assert result.auc > loss.auc - 0.02, (result.interpretation(), loss.interpretation())
    # the same attacks with the membership labels shuffled are at chance: they find membership
    shuffled = np.random.default_rng(0).permutation(len(members) + len(nonmembers))
    fake = membership_result("shuffled", *np.split(attacks[0].scores[shuffled], [len(members)]))
    assert abs(fake.auc - 0.5) < 0.05 and fake.tpr_at(0.01) < 0.03
    png = plot_roc([loss, *attacks], tmp_path / "roc.png", log=True)
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_offline_rmia_with_one_reference_model_beats_the_loss_attack(overfit):
    """RMIA's low-cost point: offline, one reference model trained on half the population."""
    model, members, nonmembers, population, _ = overfit
    loss = loss_threshold_attack(model, members, nonmembers)
    references = ReferenceModels(_mlp, OVERFIT, n_models=1, online=False).fit(members, nonmembers, population)
    assert not references.keeps_.any() and 0.4 < references.population_keeps_.mean() < 0.6
    rmia = rmia_attack(model, members, nonmembers, references)
    assert rmia.tpr_at(0.01) >= 3 * max(loss.tpr_at(0.01), 0.01), (rmia.interpretation(), loss.interpretation())


@pytest.mark.slow
def test_a_dp_model_at_epsilon_1_is_near_chance_and_the_bound_stays_below_the_claim(fmnist):
    """DP-SGD at epsilon 1 (target and reference models alike): every attack is near chance and
    the empirical lower bound it implies stays below the claimed epsilon."""
    members, nonmembers, population = _candidates(fmnist, 500)
    model, hook = _mlp(), DPSGD(epsilon=1.0, delta=1e-5)
    fit(model, members, None, DP, hooks=[hook])
    claimed = hook.meta()["privacy"]["epsilon"]
    assert claimed <= 1.0 + 1e-6
    references = ReferenceModels(_mlp, DP, n_models=4, online=True, hooks=lambda: [DPSGD(epsilon=1.0, delta=1e-5)])
    references.fit(members, nonmembers, population)
    model.eval()
    results = [loss_threshold_attack(model, members, nonmembers),
               lira_attack(model, members, nonmembers, references, online=True),
               rmia_attack(model, members, nonmembers, references, online=True),
               rmia_attack(model, members, nonmembers, references, online=False)]  # fmt: skip
    for result in results:
        # AUC's standard deviation at chance with 500 + 500 examples is about 0.018
        assert abs(result.auc - 0.5) < 0.06 and result.tpr_at(0.01) < 0.04, result.interpretation()
        bound = empirical_epsilon(result, delta=1e-5)
        assert bound.lower < claimed, bound
        assert "below the claimed epsilon" in bound.against(claimed)


def test_logit_confidence_is_log_odds_and_finite_where_p_rounds_to_one():
    logits = torch.tensor([[[2.0, 0.5, -1.0]], [[50.0, -50.0, 0.0]]])
    y = torch.tensor([0, 0])
    phi = logit_confidence(logits, y)
    p = logits[0, 0].double().softmax(0)[0]
    assert phi.shape == (2, 1) and math.isclose(phi[0, 0], math.log(p / (1 - p)), rel_tol=1e-6)
    assert math.isclose(phi[1, 0], 50.0, abs_tol=1e-4)  # softmax gives p = 1.0 exactly in float32


def test_queries_move_and_mirror_images_only():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    found = queries(x, shift=1, flip=True)
    assert len(found) == 10 and torch.equal(found[0], x) and torch.equal(found[5], x.flip(-1))
    down = found[1]  # moved down one pixel: the first row is padding
    assert torch.equal(down[..., 1:, :], x[..., :-1, :]) and not down[..., 0, :].any()
    assert len(queries(torch.zeros(3, 5), shift=1, flip=True)) == 1


def test_tpr_at_a_low_fpr_reads_the_roc_without_interpolation():
    members, nonmembers = np.arange(100, 200, dtype=float), np.arange(0, 101, dtype=float)
    result = membership_result("ordered", members, nonmembers)  # one non-member (100) ties a member
    assert result.tpr_at(0.0) == 0.99 and result.tpr_at(0.01) == 1.0


def test_empirical_epsilon_matches_an_independent_clopper_pearson_bound():
    """All members above all but ``k`` non-members: at the ROC point TPR 1, FPR k/n no epsilon
    explains the rates (point estimate infinite); the bound there is the larger of
    log(TPR_low / FPR_high) and log((1 - FPR_high) / (1 - TPR_low)) from scipy's exact binomial
    interval (binomtest), with the error rate split over the ROC points and both limits."""
    n, k = 1000, 3
    members = np.linspace(10, 11, n)
    nonmembers = np.concatenate([np.linspace(0, 1, n - k), np.full(k, 20.0)])
    result = membership_result("separating", members, nonmembers)
    bound = empirical_epsilon(result, delta=0.0, confidence=0.95)
    level = 1 - (1 - 0.95) / (2 * len(result.tpr)) * 2  # a two-sided interval's one tail
    fpr_high = binomtest(k, n).proportion_ci(level, method="exact").high
    tpr_low = binomtest(n, n).proportion_ci(level, method="exact").low
    expected = max(math.log(tpr_low / fpr_high), math.log((1 - fpr_high) / (1 - tpr_low)))
    assert math.isclose(bound.lower, expected, rel_tol=1e-6) and bound.point == math.inf
    assert "ABOVE the claimed epsilon" in bound.against(1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, x, r: rmia_attack(m, *x, ReferenceModels(_mlp, OVERFIT, n_models=0)), "at least 1 reference"),
        (lambda m, x, r: lira_attack(m, *x, ReferenceModels(_mlp, OVERFIT, n_models=1)), "at least 2 reference"),
        (lambda m, x, r: ReferenceModels(_mlp, OVERFIT, n_models=0).fit(*x, r), "expected >= 1"),
        (lambda m, x, r: ReferenceModels(_mlp, OVERFIT, n_models=3).fit(*x, r), "online needs an even number"),
        (
            lambda m, x, r: ReferenceModels(_mlp, OVERFIT, n_models=2).fit(*x, r.subset(np.arange(5))),
            "fewer than the 20 members",
        ),
        (lambda m, x, r: rmia_attack(m, *x, ReferenceModels(_mlp, OVERFIT, n_models=2)), "call fit() first"),
    ],
    ids=["rmia-0", "lira-1", "fit-0", "online-odd", "small-population", "unfitted"],
)
def test_bad_reference_settings_are_refused_in_one_line(fmnist, call, message):
    members, nonmembers, population = _candidates(fmnist, 20)
    with pytest.raises(InputError, match=re.escape(message)):
        call(_mlp(), (members, nonmembers), population)


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory) -> Path:
    """A digits CNN trained by the CLI, so its config.json records how it was trained."""
    out = tmp_path_factory.mktemp("membership") / "model"
    args = ["train", "--data", "digits", "--epochs", "5", "--depth", "2", "--width", "0.25", "--out", str(out)]
    proc = subprocess.run([sys.executable, "-m", "trusttango.cli", *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _membership(args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """``trusttango membership ARGS`` in this process (the console's stderr captured)."""
    monkeypatch.setattr(sys, "argv", ["trusttango", "membership", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    return stop.value.code, capsys.readouterr().err


@pytest.mark.parametrize("attack, extra", [("rmia", []), ("lira", ["--online", "--reference-models", "2"])])
def test_membership_cli_runs_each_attack_beside_the_loss_threshold(cli_model, tmp_path, attack, extra, capsys,
                                                                   monkeypatch):  # fmt: skip
    out = tmp_path / "mi"
    code, err = _membership([str(cli_model), "--attack", attack, *extra, "--out", str(out)], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    record = json.loads((out / "membership.json").read_text())
    assert record["method"].startswith(attack.upper() if attack == "rmia" else "LiRA")
    assert record["baseline"]["method"] == "loss threshold (Yeom)"
    assert record["members"] == record["nonmembers"] == record["baseline"]["members"] == 179  # half of 359 test
    assert record["population"] == 180 and record["reference_models"] == 2
    assert 0 <= record["tpr_at_fpr_0.01"] <= 1 and 0 <= record["empirical_epsilon"]["lower"]
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG" and "TPR" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--attack", "shadow"], "unknown membership attack 'shadow'"),
        (["--attack", "rmia", "--reference-models", "0"], "rmia needs at least 1"),
        (["--attack", "lira", "--reference-models", "1"], "lira needs at least 2"),
        (["--attack", "lira", "--online", "--reference-models", "3"], "online needs an even number"),
        (["--members", "{t}/outside.txt"], "is not in the training data (1258 examples)"),
        (["--members", "{t}/many.txt"], "fewer than the 300 members"),
        (["--members", "{t}/words.txt"], "is not a non-negative integer index"),
    ],
    ids=["unknown", "rmia-0", "lira-1", "online-odd", "outside", "population", "not-an-index"],
)
def test_membership_cli_refuses_bad_input_in_one_line(cli_model, tmp_path, extra, message, capsys, monkeypatch):
    (tmp_path / "outside.txt").write_text("3\n5000\n")
    (tmp_path / "many.txt").write_text("\n".join(map(str, range(300))))
    (tmp_path / "words.txt").write_text("3\nseven\n")
    out = tmp_path / "mi"
    args = [str(cli_model), *[e.format(t=tmp_path) for e in extra], "--out", str(out)]
    code, err = _membership(args, capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and message in lines[-1] and "Traceback" not in err, err
    assert not out.exists()
