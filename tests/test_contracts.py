"""Contract tests over every registered method, in the spirit of scikit-learn's
``check_estimator``: each attribution method (:data:`trusttango.explain.METHODS`) and each
attack (:data:`trusttango.robust.attacks.ATTACKS`) runs on
user models with BatchNorm, dropout and in-place ReLU, and on a torchvision ResNet-18 (whose
blocks call one ReLU module twice), on the CPU; it leaves every submodule's train/eval flag,
the weights and the BatchNorm statistics as it found them; and it refuses bad input with an
:class:`~trusttango.errors.InputError`; attacks keep their examples in the input range [0, 1]
and within their budget."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

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


MODELS = {"user_cnn": user_cnn, "resnet18": resnet18}


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
