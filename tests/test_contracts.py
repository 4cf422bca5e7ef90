"""Contract tests over every registered method, in the spirit of scikit-learn's
``check_estimator``: each attribution method (:data:`trusttango.explain.METHODS`), each
attack (:data:`trusttango.robust.attacks.ATTACKS`) and each detector
(:data:`trusttango.detect.DETECTORS`) runs on user models with BatchNorm, dropout and in-place
ReLU, and on a torchvision ResNet-18 (whose blocks call one ReLU module twice; detectors also on
MobileNetV2, in-place ReLU6), on the CPU; it leaves every submodule's train/eval flag, the
weights and the BatchNorm statistics as it found them; and it refuses bad input with an
:class:`~trusttango.errors.InputError`; attacks keep their examples in the input range [0, 1]
and within their budget."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from trusttango.detect import DETECTORS, load_detector
from trusttango.errors import InputError
from trusttango.explain import METHODS
from trusttango.robust.attacks import ATTACKS, make_attack

OPTIONS = {"meaningful": {"steps": 4}}  # a contract, not a quality check: a few optimisation steps


def user_cnn() -> nn.Module:
    """A user's own CNN: BatchNorm, dropout, in-place ReLUs, no trusttango base class."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def mobilenet_v2() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v2(num_classes=10)


MODELS = {"user_cnn": user_cnn, "resnet18": resnet18}
DETECTOR_MODELS = {**MODELS, "mobilenet_v2": mobilenet_v2}  # detectors read every ReLU / ReLU6 call


def mixed_mode(model: nn.Module) -> dict[str, bool]:
    """Put the model in training mode with its dropout in eval mode (a state a user can
    have, e.g. while fine-tuning); return every submodule's flag."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    return {name: m.training for name, m in model.named_modules()}


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer (BatchNorm running statistics included), copied."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, flags: dict[str, bool], before: dict[str, torch.Tensor]) -> None:
    assert {name: m.training for name, m in model.named_modules()} == flags, "train/eval flags changed"
    after = model.state_dict()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not changed, f"weights or statistics changed: {changed[:3]}"


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name", METHODS)
def test_attribution_contract(name: str, model_name: str, batch: torch.Tensor) -> None:
    model = MODELS[model_name]()
    flags, before = mixed_mode(model), state(model)
    maps = METHODS[name](model, **OPTIONS.get(name, {})).attribute(batch, target=3)
    channels = 1 if name == "gradcam" else 3
    assert maps.shape == (2, channels, 32, 32) and maps.device.type == "cpu"
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0
    assert_untouched(model, flags, before)


@pytest.mark.parametrize("name", METHODS)
def test_attribution_refuses_bad_input(name: str, batch: torch.Tensor) -> None:
    model = user_cnn()
    flags, before = mixed_mode(model), state(model)
    method = METHODS[name](model, **OPTIONS.get(name, {}))
    nan = batch.clone()
    nan[0, 0, 0, 0] = float("nan")
    for bad, target in [(nan, None), (batch[0], None), (batch.numpy(), None), (batch, 10), (batch, -1)]:
        with pytest.raises(InputError):
            method.attribute(bad, target=target)
    assert_untouched(model, flags, before)


ATTACK_SETTINGS = {"eps": 0.05, "steps": 5}  # one set of options; each attack takes those it has


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("name", ATTACKS)
def test_attack_contract(name: str, model_name: str, batch: torch.Tensor) -> None:
    model = MODELS[model_name]()
    flags, before = mixed_mode(model), state(model)
    attack = make_attack(name, model, **ATTACK_SETTINGS)
    y = torch.tensor([1, 2])
    result = attack.run(batch, y)
    x_adv = result.x_adv
    assert x_adv.shape == batch.shape and x_adv.device.type == "cpu" and torch.isfinite(x_adv).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0, "adversarial examples leave the input range [0, 1]"
    if not attack.minimum_norm:
        assert float((x_adv - batch).abs().max()) <= ATTACK_SETTINGS["eps"] + 1e-6, "L-inf budget exceeded"
    assert_untouched(model, flags, before)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_refuses_bad_input(name: str, batch: torch.Tensor) -> None:
    model = user_cnn()
    flags, before = mixed_mode(model), state(model)
    attack = make_attack(name, model, **ATTACK_SETTINGS)
    nan = batch.clone()
    nan[0, 0, 0, 0] = float("nan")
    y = torch.tensor([1, 2])
    for bad, labels in [(nan, y), (batch + 1.0, y), (batch, y[:1]), (batch[:0], y[:0])]:
        with pytest.raises(InputError):
            attack.run(bad, labels)
    assert_untouched(model, flags, before)


def hooks(model: nn.Module) -> int:
    """Every forward / backward (pre-)hook registered on any submodule."""
    kinds = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, kind)) for m in model.modules() for kind in kinds)


def make_detector(name: str, model: nn.Module, batch: torch.Tensor, layer: str = "auto"):
    """Each detector with what it needs: the density detector a labelled reference set, the
    entropy detector its response ``layer`` (``"all"``: every ReLU / ReLU6 call)."""
    if name == "density":
        return DETECTORS[name](model, batch, torch.tensor([1, 2]), mc_samples=3)
    return DETECTORS[name](model, **({"bins": 32, "layer": layer} if name == "entropy" else {}))


@pytest.fixture(scope="module")
def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth "clean" images and their noisy copies (a contract, not a quality check)."""
    gen = torch.Generator().manual_seed(1)
    clean = torch.nn.functional.avg_pool2d(torch.rand(6, 3, 32, 32, generator=gen), 3, 1, 1)
    return clean, (clean + 0.3 * torch.rand(6, 3, 32, 32, generator=gen)).clamp(0, 1)


@pytest.mark.parametrize("model_name", DETECTOR_MODELS)
@pytest.mark.parametrize("name", DETECTORS)
def test_detector_contract(name: str, model_name: str, pairs, batch: torch.Tensor, tmp_path) -> None:
    """Fits and scores; leaves flags, weights and hooks as it found them; saves and loads to the
    same scores (dropout sampling seeded alike)."""
    model = DETECTOR_MODELS[model_name]()
    clean, noisy = pairs
    flags, before, attached = mixed_mode(model), state(model), hooks(model)
    detector = make_detector(name, model, batch, layer="all").fit(clean, noisy)
    torch.manual_seed(0)
    scores = detector.score(torch.cat([clean, noisy]))
    assert scores.shape == (12,) and np.isfinite(scores).all()
    assert detector.predict(clean).dtype == bool
    assert_untouched(model, flags, before)
    assert hooks(model) == attached, "hooks left behind"
    loaded = load_detector(detector.save(tmp_path / name), model)
    assert type(loaded) is type(detector)
    torch.manual_seed(0)
    np.testing.assert_allclose(loaded.score(torch.cat([clean, noisy])), scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_refuses_bad_input(name: str, pairs, batch: torch.Tensor, tmp_path) -> None:
    """NaN or wrongly shaped inputs, another model, a file with a missing or mistyped field."""
    model = user_cnn()
    clean, noisy = pairs
    detector = make_detector(name, model, batch).fit(clean, noisy)
    nan = clean.clone()
    nan[0, 0, 0, 0] = float("nan")
    for bad in (nan, clean[0], clean[:, :, :16, :16]):
        with pytest.raises(InputError):
            detector.score(bad)
    folder = detector.save(tmp_path / name)
    other = user_cnn()
    with torch.no_grad():
        other[0].weight.add_(0.1)
    with pytest.raises(InputError, match="different model"):
        load_detector(folder, other).score(clean)
    document = json.loads((folder / "detector.json").read_text())
    for broken, message in [({**document, "fit": {**document["fit"], "threshold": "high"}}, "fit.threshold"),
                            ({k: v for k, v in document.items() if k != "settings"}, "settings"),
                            ({**document, "detector": "magic"}, "unknown detector 'magic'")]:  # fmt: skip
        (folder / "detector.json").write_text(json.dumps(broken))
        with pytest.raises(InputError, match=message):
            load_detector(folder, model)


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_flips_a_trained_model(name: str, digits, digits_model) -> None:
    """On correctly classified digits, every attack changes most predictions (L-inf 0.2 for
    the norm-bounded ones), and the flips it reports are real: the model's own prediction on
    the returned example differs from the label exactly where success is claimed."""
    x, y = digits.test.x[:64], digits.test.y[:64]
    with torch.no_grad():
        correct = digits_model(x).argmax(1) == y
    result = make_attack(name, digits_model, eps=0.2).run(x[correct], y[correct])  # each attack's own steps
    with torch.no_grad():
        flipped = digits_model(result.x_adv).argmax(1) != y[correct]
    assert torch.equal(flipped, result.success) and result.success_rate > 0.5, result.success_rate
