"""The audit's verdicts at their boundaries: a verdict never says more than its evidence
(:mod:`trusttango.report.verdicts`), and an audit of an inaccurate model says so."""

from __future__ import annotations

import numpy as np
import pytest

from trusttango.errors import InputError
from trusttango.models import build_model, config_for
from trusttango.models.io import SavedModel
from trusttango.report.audit import AuditConfig, Context, insight, privacy, robustness
from trusttango.report.budget import Budget
from trusttango.report.verdicts import (
    FAIL,
    NATURAL_IMAGES,
    NOT_ESTABLISHED,
    NOT_MEANINGFUL,
    PASS,
    WARN,
    accuracy_verdict,
    at_or_below,
    detection_verdict,
    graded,
    insight_verdict,
    privacy_verdict,
    robustness_verdict,
    threat_model,
)

FMNIST = threat_model("fashion-mnist")


@pytest.mark.parametrize(
    "value,higher,expected",
    [(0.5, True, PASS), (0.4999, True, WARN), (0.45, True, WARN), (0.4499, True, FAIL),
     (0.6, False, PASS), (0.6001, False, WARN), (0.66, False, WARN), (0.6601, False, FAIL)],
)  # fmt: skip
def test_graded_boundaries(value, higher, expected):
    threshold = 0.5 if higher else 0.6
    assert graded(value, threshold, higher) == expected


def test_accuracy_verdict_at_its_threshold():
    assert accuracy_verdict(0.85, 0.85).verdict == PASS and accuracy_verdict(0.7, 0.85).verdict == FAIL


def test_robustness_verdict_states_budget_source_and_attack():
    passed = robustness_verdict(0.5, FMNIST, 0.5, accurate=True)
    assert passed.verdict == PASS and "eps 0.1" in passed.rule and "Wong & Kolter 2018" in passed.rule
    assert "AutoAttack (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020)" in passed.rule
    assert robustness_verdict(0.0, FMNIST, 0.5, accurate=True).verdict == FAIL  # an undefended model
    assert robustness_verdict(0.9, FMNIST, 0.5, accurate=False).verdict == NOT_MEANINGFUL


def test_threat_models_per_dataset_and_user_override():
    assert threat_model("mnist-5k").eps == 0.3 and threat_model("digits").eps == 0.1
    assert threat_model("my-xrays/") == NATURAL_IMAGES and NATURAL_IMAGES.eps == pytest.approx(8 / 255)
    assert threat_model("fashion-mnist", 0.05).source == "set by the user"
    for bad in (0.0, -0.1, 2.0, float("nan")):
        with pytest.raises(InputError, match="robust_eps"):
            threat_model("digits", bad)
    l2 = threat_model("digits", norm="l2")  # no published L2 budget for the data: RobustBench's, said so
    assert (l2.eps, l2.norm) == (0.5, "l2") and "RobustBench" in l2.source
    assert threat_model("digits", 2.0, "l2").eps == 2.0  # L2 budgets may exceed 1
    with pytest.raises(InputError, match="norm"):
        threat_model("digits", norm="l1")


def test_detection_is_not_established_without_an_adaptive_attack():
    assert detection_verdict(adaptive=False, auc=0.999).verdict == NOT_ESTABLISHED
    assert detection_verdict(adaptive=True, auc=0.95, threshold=0.9).verdict == PASS
    assert detection_verdict(adaptive=True, auc=0.5, threshold=0.9).verdict == FAIL


def test_privacy_passes_only_on_a_dp_bound():
    assert privacy_verdict(0.51, 0.6, None, 10.0, accurate=True).verdict == NOT_ESTABLISHED  # average case only
    assert privacy_verdict(0.61, 0.6, None, 10.0, accurate=True).verdict == FAIL  # a leak shown
    assert privacy_verdict(0.61, 0.6, 3.0, 10.0, accurate=True).verdict == FAIL
    assert privacy_verdict(0.5, 0.6, 10.0, 10.0, accurate=True).verdict == PASS
    assert privacy_verdict(0.5, 0.6, 10.01, 10.0, accurate=True).verdict == FAIL
    assert privacy_verdict(0.5, 0.6, 1.0, 10.0, accurate=False).verdict == NOT_MEANINGFUL
    # an attack's proven epsilon above the claim fails the claim; at or below it, the claim stands
    assert privacy_verdict(0.5, 0.6, 1.0, 10.0, accurate=True, proven_epsilon=1.01).verdict == FAIL
    assert privacy_verdict(0.5, 0.6, 1.0, 10.0, accurate=True, proven_epsilon=1.0).verdict == PASS
    assert privacy_verdict(0.5, 0.6, None, 10.0, accurate=True, proven_epsilon=5.0).verdict == NOT_ESTABLISHED


def test_insight_verdict():
    assert insight_verdict(0.49, True).verdict == PASS and insight_verdict(0.5, True).verdict == WARN
    assert insight_verdict(0.1, False).verdict == NOT_MEANINGFUL


def test_an_inaccurate_model_gets_not_meaningful(tmp_path, digits):
    """A barely trained digits model (as a new user might audit): robustness, insight and privacy
    say "not meaningful", never "pass"."""
    model = build_model(config_for(digits.train.input_shape, 10, depth=2), seed=0).eval()
    cfg = AuditConfig(data="digits", out=tmp_path, n_explain=4, n_attack=40, n_membership=100)
    ctx = Context(cfg, digits, tmp_path, Budget(0.0))
    ctx.saved = SavedModel(model, model.config, digits.class_names, {})
    ctx.record["evaluation"] = {"accuracy": float(np.mean(
        model(digits.test.x).argmax(1).numpy() == digits.test.y.numpy()))}  # fmt: skip
    assert ctx.record["evaluation"]["accuracy"] < 0.5 and not ctx.accurate
    for stage in (robustness, insight, privacy):
        section = stage(ctx)
        assert section.verdict == NOT_MEANINGFUL and "accuracy threshold" in section.threshold, stage.__name__


def test_the_ci_gate_ranks_verdicts():
    """``--fail-on fail`` stops on fail and not meaningful; ``warn`` also on missing evidence; n/a never."""
    gate = {level: [v for v in (PASS, WARN, NOT_ESTABLISHED, FAIL, NOT_MEANINGFUL, "n/a") if at_or_below(v, level)]
            for level in (FAIL, WARN)}  # fmt: skip
    assert gate[FAIL] == [FAIL, NOT_MEANINGFUL]
    assert gate[WARN] == [WARN, NOT_ESTABLISHED, FAIL, NOT_MEANINGFUL]
