"""The AutoAttack ensemble (Croce & Hein 2020) on trained models: a standard and an adversarially
trained small CNN on Fashion-MNIST (trained here at reduced size). Per example the first attack
that succeeds is kept; the figure agrees with torchattacks' AutoAttack run with the same
iterations; each component agrees with its torchattacks counterpart; the ensemble never reports
more robustness than PGD-20 with 5 restarts; the AutoAttack-style flags fire on a randomised
model, on probabilities and on gradient masking."""

from __future__ import annotations

import time

import pytest
import torch
from conftest import FULL
from torch import nn

from trusttango.errors import InputError
from trusttango.models import build_model, config_for
from trusttango.robust import APGD, APGDT, FABT, PGD, AdversarialTraining, AutoAttack, Square
from trusttango.robust.base import OutOfTime
from trusttango.train import TrainConfig, fit

EPS = 0.1  # Fashion-MNIST's L-inf budget (Wong & Kolter 2018)
# torchattacks' AutoAttack iterations, Square shortened alike on both sides (CI: 300 queries; TRUSTTANGO_FULL=1: 1,000)
SAME = {"steps": 10, "queries": 1000 if FULL else 300}


@pytest.fixture(scope="module")
def adversarial(fmnist_small):
    """The default small CNN, adversarially trained (FGSM with random start, Wong et al. 2020) at eps 0.1."""
    model = build_model(config_for(fmnist_small.train.input_shape, 10), seed=0)
    hooks = [AdversarialTraining(eps=EPS, method="fgsm", ratio=0.5)]
    fit(model, fmnist_small.train, fmnist_small.val, TrainConfig(epochs=4, progress=False), hooks=hooks)
    return model.eval()


@pytest.fixture(scope="module")
def images(fmnist_small):
    return fmnist_small.test.x[:200], fmnist_small.test.y[:200]


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _torchattacks_standard(model: nn.Module, eps: float):
    """torchattacks' ``AutoAttack(version="standard")``: its four attacks, Square with our query count."""
    import torchattacks

    return torchattacks.MultiAttack([
        torchattacks.APGD(model, eps=eps, steps=SAME["steps"], loss="ce", n_restarts=1, seed=0),
        torchattacks.APGDT(model, eps=eps, steps=SAME["steps"], n_classes=10, n_restarts=1, seed=0),
        torchattacks.FAB(model, eps=eps, steps=SAME["steps"], multi_targeted=True, n_classes=10, n_restarts=1, seed=0),
        torchattacks.Square(model, eps=eps, n_queries=SAME["queries"], n_restarts=1, seed=0),
    ])  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("which", ["standard", "adversarial"])
def test_ensemble_matches_torchattacks_and_never_overstates(which, fmnist_model, adversarial, images):
    """At L-inf 0.1 on 200 test images: robust accuracy within 1 point of torchattacks' ensemble
    with the same iterations; no higher than PGD-20 with 5 restarts; per example the first
    success kept (the flips are real, inside the ball, and the table adds up)."""
    model = fmnist_model if which == "standard" else adversarial
    x, y = images
    attack = AutoAttack(model, eps=EPS, **SAME)
    torch.manual_seed(0)
    x_adv = attack(x, y)
    report = attack.report_
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        still = model(x_adv).argmax(1) == y
    assert torch.equal(still, report.robust) and report.robust_accuracy == pytest.approx(float(still.float().mean()))
    clean = round(report.clean_accuracy * len(x))
    assert clean == round(_accuracy(model, x, y) * len(x))
    assert sum(row.broken for row in report.rows) == clean - int(report.robust.sum())
    assert [row.attack for row in report.rows] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    for row in report.rows:
        assert sum(name == row.attack for name in report.broken_by) == row.broken
    with torch.random.fork_rng():
        torch.manual_seed(0)
        theirs = _accuracy(model, _torchattacks_standard(model, EPS)(x, y), y)
    torch.manual_seed(0)
    pgd = _accuracy(model, PGD(model, eps=EPS, steps=20, restarts=5)(x, y), y)
    assert abs(report.robust_accuracy - theirs) <= 0.01 + 1e-9, (report.robust_accuracy, theirs)
    assert report.robust_accuracy <= pgd, (report.robust_accuracy, pgd)
    if which == "adversarial":  # a model the figure is informative for
        assert report.robust_accuracy > 0.2


@pytest.mark.slow
def test_each_component_matches_torchattacks(adversarial, images):
    """On the adversarially trained model, each attack alone (same iterations, eps and images)
    breaks as many examples as its torchattacks counterpart, within 2 points."""
    import torchattacks

    x, y = images
    ours = {
        "apgd-ce": APGD(adversarial, eps=EPS, steps=10), "apgd-t": APGDT(adversarial, eps=EPS, steps=10),
        "fab-t": FABT(adversarial, eps=EPS, steps=10), "square": Square(adversarial, eps=EPS, queries=SAME["queries"]),
    }  # fmt: skip
    theirs = dict(zip(ours, _torchattacks_standard(adversarial, EPS).attacks, strict=True))
    for name, attack in ours.items():
        torch.manual_seed(0)
        mine = _accuracy(adversarial, attack(x, y), y)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            reference = _accuracy(adversarial, theirs[name](x, y), y)
        assert abs(mine - reference) <= 0.02 + 1e-9, (name, mine, reference)
    assert isinstance(theirs["square"], torchattacks.Square)


class _Randomised(nn.Module):
    """Dropout that stays on in eval mode (a randomised defence)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(nn.functional.dropout(x, 0.3, training=True))


class _Probabilities(_Randomised):
    def forward(self, x):
        return self.net(x).softmax(1)


class _Quantised(_Randomised):
    """Inputs rounded to 4 grey levels first: input gradients are zero almost everywhere."""

    def forward(self, x):
        return self.net(torch.round(x * 3) / 3)


def test_flags_fire_where_autoattack_would(digits, digits_model):
    """A randomised model, probabilities instead of logits, and a model whose input gradients
    vanish (Square then breaks what the gradient attacks could not) are each flagged; a plain
    trained model is not."""
    x, y = digits.test.x[:40], digits.test.y[:40]
    fast = {"eps": 0.2, "steps": 5, "queries": 300}

    def flags(model):
        torch.manual_seed(0)
        return " ".join(AutoAttack(model, **fast).evaluate(x, y).flags)

    assert flags(digits_model) == ""
    assert "randomised" in flags(_Randomised(digits_model).eval())
    assert "probabilities" in flags(_Probabilities(digits_model).eval())
    masked = flags(_Quantised(digits_model).eval())
    assert "zero input gradients on" in masked and "Square broke" in masked, masked


def test_a_deadline_stops_the_ensemble_and_leaves_the_model_as_it_was(digits, digits_model):
    """Past its deadline the ensemble raises OutOfTime instead of returning a partial (weaker)
    attack's points; the model's flags are restored. 10^6 Square queries cannot finish in 1 s."""
    x, y = digits.test.x[:20], digits.test.y[:20]
    attack = AutoAttack(digits_model, eps=0.02, queries=10**6)
    attack.deadline = time.perf_counter() + 1.0
    digits_model.train()
    with pytest.raises(OutOfTime):
        attack(x, y)
    assert digits_model.training and attack.report_ is None
    digits_model.eval()


@pytest.mark.parametrize("make", [lambda m: APGD(m, eps=0.05, steps=10), lambda m: FABT(m, eps=0.05, steps=10)],
                         ids=["apgd", "fab-t"])  # fmt: skip
def test_keeping_broken_examples_in_the_batch_breaks_the_same_ones(digits, digits_model, make):
    """``drop_broken = False`` (torchattacks' computation: every example iterated to the end)
    breaks exactly the examples the early-exit run breaks from the same seed, and every point it
    returns for them is still adversarial and inside the ball."""
    x, y = digits.test.x[:64], digits.test.y[:64]
    found = {}
    for drop in (True, False):
        attack = make(digits_model)
        attack.drop_broken = drop
        torch.manual_seed(0)
        x_adv = attack(x, y)
        with torch.no_grad():
            found[drop] = digits_model(x_adv).argmax(1) != y
        assert float((x_adv - x).abs().max()) <= 0.05 + 1e-6
    assert torch.equal(found[True], found[False]) and 0 < int(found[True].sum()) < len(y)


def test_bad_settings_are_refused(digits_model):
    for bad in ({"preset": "quick"}, {"eps": -0.1}, {"eps": float("nan")}, {"steps": 0}, {"norm": "l1"}):
        with pytest.raises(InputError):
            AutoAttack(digits_model, **bad)


@pytest.mark.slow
def test_the_audit_fails_the_standard_model_and_not_the_adversarially_trained_one(
    tmp_path, fmnist_small, fmnist_model, adversarial
):
    """The audit's robustness stage on the two models at Fashion-MNIST's stated budget (L-inf
    0.1): the undefended CNN fails; the adversarially trained one keeps more than the threshold's
    warn margin (0.45) and gets a better verdict, under the same ensemble and threshold."""
    from trusttango.models.io import SavedModel
    from trusttango.report.audit import AuditConfig, Context, Thresholds, robustness
    from trusttango.report.budget import Budget

    sections = {}
    for name, model in (("standard", fmnist_model), ("adversarial", adversarial)):
        cfg = AuditConfig(data="fashion-mnist", out=tmp_path / name, n_attack=60, robust_preset="fast",
                          thresholds=Thresholds(accuracy=0.7))  # fmt: skip
        saved = SavedModel(model, model.config, fmnist_small.class_names, {})
        ctx = Context(cfg, fmnist_small, tmp_path / name, Budget(600.0), saved=saved)
        ctx.record["evaluation"] = {"accuracy": _accuracy(model, fmnist_small.test.x, fmnist_small.test.y)}
        torch.manual_seed(0)
        sections[name] = (robustness(ctx), ctx.record["robustness"])
    (standard, s_record), (defended, d_record) = sections["standard"], sections["adversarial"]
    assert s_record["eps"] == d_record["eps"] == EPS and s_record["n"]["autoattack"] == 60
    assert standard.verdict == "fail" and s_record["robust_accuracy"] < 0.45
    assert defended.verdict in {"pass", "warn"} and d_record["robust_accuracy"] >= 0.45, d_record["robust_accuracy"]
    assert standard.threshold == defended.threshold and "AutoAttack (fast" in standard.threshold
