"""The CUDA path (issues 30 and 31): training, every attack, the AutoAttack ensemble, every
attribution method, every detector and the audit run where the model lives, take inputs from the
CPU as a user passes them, and agree with the same computation on the CPU.

The device is CUDA where present, else the CPU (then each computation runs once and every
agreement is exact: the file keeps its tests alive on machines without a GPU);
``TRUSTTANGO_TEST_DEVICE`` names another (``cuda`` without a CUDA device: skipped, a platform reason)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable

import numpy as np
import pytest
import torch

from trusttango import AuditConfig, audit
from trusttango.data import Splits
from trusttango.detect import DETECTORS
from trusttango.explain import METHODS
from trusttango.models import build_model, config_for
from trusttango.robust import ATTACKS, AutoAttack, make_attack
from trusttango.train import TrainConfig, fit

DEVICE = torch.device(os.environ.get("TRUSTTANGO_TEST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu"))
PLACES = list(dict.fromkeys([DEVICE, torch.device("cpu")]))  # the device, then the CPU to compare with
pytestmark = pytest.mark.skipif(
    DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="platform: TRUSTTANGO_TEST_DEVICE=cuda, no CUDA"
)


def _on(device: torch.device, model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).to(device).eval()


def _same_device(tensor: torch.Tensor) -> bool:
    return tensor.device.type == DEVICE.type


def _agrees(run: Callable[[torch.device], np.ndarray]) -> None:
    """``run(DEVICE)`` equals ``run(cpu)`` (seeded alike) where the computation draws no random
    numbers; where it does (SmoothGrad's noise, MC dropout), the device draws from its own
    generator, so its result may be no farther from the CPU's than the CPU's own with another seed
    (times 3). The CPU run with seed 1 tells which case holds."""
    results = {}
    for seed, device in ((0, DEVICE), (0, torch.device("cpu")), (1, torch.device("cpu"))):
        torch.manual_seed(seed)
        results[seed, device.type] = np.asarray(run(device))
    ours, cpu, other = results[0, DEVICE.type], results[0, "cpu"], results[1, "cpu"]
    assert np.isfinite(ours).all()
    if np.array_equal(cpu, other):
        np.testing.assert_allclose(ours, cpu, rtol=1e-3, atol=1e-4)
    else:
        assert np.linalg.norm(ours - cpu) <= 3 * np.linalg.norm(other - cpu), "farther from the CPU than its noise"


def test_training_runs_on_the_device_and_learns(digits: Splits) -> None:
    """The one training loop puts the model on ``device`` and learns there as on the CPU."""
    model = build_model(config_for(digits.train.input_shape, 10, depth=2), seed=0)
    fit(
        model,
        digits.train,
        digits.val,
        TrainConfig(epochs=3, batch_size=64, lr=3e-3, device=str(DEVICE), progress=False),
    )
    assert all(_same_device(p) for p in model.parameters())
    with torch.no_grad():
        accuracy = float((model.eval()(digits.test.x.to(DEVICE)).argmax(1).cpu() == digits.test.y).float().mean())
    assert accuracy > 0.85, accuracy


@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_runs_where_the_model_lives(name: str, digits: Splits, digits_model) -> None:
    """CPU inputs in, examples on the model's device out; the flips are real (the model's own
    prediction there), inside the ball, and as many as on the CPU within 10 points."""
    x, y = digits.test.x[:64], digits.test.y[:64]
    with torch.no_grad():
        correct = digits_model(x).argmax(1) == y
    rates = {}
    for device in PLACES:
        model = _on(device, digits_model)
        torch.manual_seed(0)
        result = make_attack(name, model, eps=0.2).run(x[correct], y[correct])
        assert result.x_adv.device.type == result.success.device.type == device.type
        with torch.no_grad():
            flipped = model(result.x_adv).argmax(1).cpu() != y[correct]
        assert torch.equal(flipped, result.success.cpu()) and result.success_rate > 0.5
        if not ATTACKS[name].minimum_norm:
            assert float((result.x_adv.cpu() - x[correct]).abs().max()) <= 0.2 + 1e-5
        rates[device.type] = result.success_rate
    assert abs(rates[DEVICE.type] - rates["cpu"]) <= 0.1, rates


def test_the_ensemble_on_the_device_agrees_with_the_cpu(fmnist_small: Splits, fmnist_model) -> None:
    """The AutoAttack ensemble (reduced iterations) on 200 Fashion-MNIST test images at L-inf
    0.03: robust accuracy on the device within 2 points of the CPU's, the clean accuracy equal."""
    x, y = fmnist_small.test.x[:200], fmnist_small.test.y[:200]
    reports = {}
    for device in PLACES:
        attack = AutoAttack(_on(device, fmnist_model), eps=0.03, steps=10, queries=300)
        torch.manual_seed(0)
        x_adv = attack(x, y)
        assert x_adv.device.type == device.type and float((x_adv.cpu() - x).abs().max()) <= 0.03 + 1e-6
        reports[device.type] = attack.report_
    ours, cpu = reports[DEVICE.type], reports["cpu"]
    assert ours.clean_accuracy == pytest.approx(cpu.clean_accuracy, abs=0.005)
    assert abs(ours.robust_accuracy - cpu.robust_accuracy) <= 0.02, (ours.robust_accuracy, cpu.robust_accuracy)
    assert 0.05 < cpu.robust_accuracy < cpu.clean_accuracy  # a budget where the figure is informative


@pytest.mark.parametrize("name", METHODS)
def test_every_attribution_method_runs_where_the_model_lives(name: str, digits: Splits, digits_model) -> None:
    """Maps on the model's device, finite, and as the CPU's (see :func:`_agrees`)."""
    x = digits.test.x[:4]
    options = {"meaningful": {"steps": 4}}.get(name, {})

    def run(device: torch.device) -> np.ndarray:
        maps = METHODS[name](_on(device, digits_model), **options).attribute(x, target=digits.test.y[:4])
        assert maps.device.type == device.type
        return maps.cpu().numpy()

    _agrees(run)


@pytest.mark.parametrize("name", DETECTORS)
def test_every_detector_fits_and_scores_where_the_model_lives(name: str, digits: Splits, digits_model) -> None:
    """Fitted on clean vs FGSM examples on the device, scores as on the CPU (see :func:`_agrees`)."""
    x, y = digits.val.x[:60], digits.val.y[:60]
    reference = (digits.train.x[:60], digits.train.y[:60]) if name == "density" else ()
    options = {"bins": 32} if name == "entropy" else {"mc_samples": 3} if name == "density" else {}

    def run(device: torch.device) -> np.ndarray:
        model = _on(device, digits_model)
        adv = make_attack("fgsm", model, eps=0.2).run(x, y).x_adv.cpu()
        return DETECTORS[name](model, *reference, **options).fit(x, adv).score(torch.cat([x, adv]))

    _agrees(run)


def test_the_audit_runs_on_the_device_and_says_so(digits: Splits, digits_model) -> None:
    """The Python API on a model that lives on the device: every stage runs, the model stays
    there, the report's provenance names the device, and the verdicts equal the CPU's."""
    config = AuditConfig(budget=120, n_explain=4, n_attack=40, n_membership=200, robust_preset="fast")
    verdicts = {}
    for device in PLACES:
        model = _on(device, digits_model)
        result = audit(model, digits, config=config)
        assert all(p.device.type == device.type for p in model.parameters())
        assert result.record["provenance"]["device"].startswith(device.type)
        verdicts[device.type] = {s.key: s.verdict for s in result.sections}
    assert verdicts[DEVICE.type] == verdicts["cpu"], verdicts
