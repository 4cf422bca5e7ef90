"""Unified model: every backbone builds and trains; config and files round-trip."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from trusttango.errors import InputError
from trusttango.models import ModelConfig, build_model, config_for, load_model, save_model
from trusttango.models.folding import FoldedBatchNorm
from trusttango.models.io import SavedModel


@pytest.mark.parametrize("backbone", ["small_cnn", "mobilenet_v2", "efficientnet_b0", "resnet18"])
def test_backbones_forward_backward(backbone):
    cfg = config_for((1, 28, 28), 10, backbone=backbone, augment="flip_shift")
    model = build_model(cfg)
    x = torch.rand(4, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (4, 10)
    logits.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert model.features(x).shape == (4, cfg.bottleneck)


def test_tabular_model_and_colour_input():
    tab = build_model(config_for((7,), 2, modality="tabular"))
    assert tab.config.backbone == "mlp" and tab(torch.rand(5, 7)).shape == (5, 2)
    rgb = build_model(config_for((3, 32, 32), 5, backbone="mobilenet_v2", norm="group", activation="half_huber"))
    assert rgb(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in rgb.modules())


def test_same_seed_same_weights_and_wrong_shape_error():
    cfg = config_for((1, 8, 8), 10, depth=2)
    a, b = build_model(cfg, seed=3), build_model(cfg, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=False))
    with pytest.raises(InputError, match=r"expects inputs shaped \(N, 1, 8, 8\)"):
        a(torch.rand(2, 1, 9, 9))


def test_unknown_options_are_clear():
    with pytest.raises(InputError, match="unknown backbone 'vgg99'"):
        build_model(config_for((1, 28, 28), 10, backbone="vgg99"))
    with pytest.raises(InputError, match="unknown model option 'colour'"):
        config_for((1, 28, 28), 10, colour=True)
    with pytest.raises(InputError, match="unknown field"):
        ModelConfig.from_dict({"num_classes": 3, "nope": 1})


def test_save_load_round_trip(tmp_path, digits, digits_model):
    saved = SavedModel(digits_model, digits_model.config, digits.class_names, {"seed": 0, "metrics": {"a": 1}})
    save_model(saved, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = digits.test.x[:64]
    assert torch.equal(loaded.model(x), digits_model.eval()(x))
    assert loaded.class_names == digits.class_names and loaded.meta["metrics"] == {"a": 1}
    assert "torch" in loaded.meta["versions"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]


def test_corrupt_and_mismatched_model_files(tmp_path, digits, digits_model):
    save_model(SavedModel(digits_model, digits_model.config, digits.class_names), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="corrupt weights"):
        load_model(tmp_path / "m")
    save_model(SavedModel(digits_model, digits_model.config, digits.class_names), tmp_path / "m2")
    doc = json.loads((tmp_path / "m2" / "config.json").read_text())
    doc["model"]["bottleneck"] = 64
    (tmp_path / "m2" / "config.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="shape"):
        load_model(tmp_path / "m2")
    (tmp_path / "m2" / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="corrupt JSON"):
        load_model(tmp_path / "m2")
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "absent")


def _trained_bn_model(backbone: str = "small_cnn") -> torch.nn.Module:
    """A model whose BatchNorm statistics are not the identity (a few training-mode forwards)."""
    model = build_model(config_for((1, 28, 28), 10, backbone=backbone), seed=0).train()
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 1, 28, 28) * 2)
    return model.eval()


@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18"])
def test_folded_batchnorm_is_the_same_function_with_fewer_norms(backbone):
    model = _trained_bn_model(backbone)
    view = FoldedBatchNorm(model)()
    norms = lambda m: sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())  # noqa: E731
    assert norms(view) < norms(model)  # something folded
    x = torch.rand(8, 1, 28, 28, requires_grad=True)
    out, out_view = model(x), view(x)
    assert torch.allclose(out, out_view, atol=1e-4)
    g = torch.autograd.grad(out[:, 3].sum(), x)[0]
    g_view = torch.autograd.grad(out_view[:, 3].sum(), x)[0]
    # relative to the whole map: float rounding (~1e-6 here) may flip a ReLU whose input is ~0 in a
    # deep network, which moves single pixels; a wrong scale or shift in the fold moves the whole map
    assert float((g - g_view).norm() / g.norm()) < 1e-4


def test_folded_batchnorm_follows_training_and_shares_other_parameters():
    model = _trained_bn_model()
    folded = FoldedBatchNorm(model)
    view = folded()
    x = torch.rand(8, 1, 28, 28)
    torch.optim.SGD(model.parameters(), lr=0.5).zero_grad()
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x * 3), torch.arange(8))  # also moves BN statistics
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    model.eval()
    assert folded() is view  # same view, refolded in place of a rebuild
    assert torch.allclose(model(x), view(x), atol=1e-4)
    assert view.head.weight is model.head.weight  # unfolded layers are shared, not copied


def test_folded_batchnorm_leaves_hooked_or_norm_free_models_alone():
    model = _trained_bn_model()
    handle = model.head.register_forward_hook(lambda *a: None)
    assert FoldedBatchNorm(model)() is model  # a hook must see the layers it was put on
    handle.remove()
    plain = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten())
    assert FoldedBatchNorm(plain)() is plain


def test_folded_batchnorm_does_not_fold_batch_statistics():
    model = _trained_bn_model().train()  # training mode: BatchNorm normalises by the batch's own statistics
    assert FoldedBatchNorm(model)() is model


def _corrupt_config(directory, change) -> None:
    path = directory / "config.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["model"].update(num_classes="10"), r"config.json: model.num_classes: .*integer, got \"10\""),
        (lambda d: d.pop("model"), r"config.json: model: Field required"),
        (lambda d: d.pop("class_names"), r"config.json: class_names: Field required"),
        (lambda d: d.update(class_names=["a", "b", "c"]), r"config.json: class_names: 3 names for a model of 10"),
        (lambda d: d["model"].update(input_shape=[1, "8", 8]), r"config.json: model.input_shape.1: .*integer"),
        (lambda d: d["model"].update(colour=True), r"config.json: model.colour: unknown field"),
    ],
    ids=["type", "no-model", "no-names", "names-count", "shape-item", "unknown"],
)
def test_a_bad_config_json_names_file_and_field(tmp_path, change, message):
    cfg = config_for((1, 8, 8), 10, depth=2)
    save_model(SavedModel(build_model(cfg, seed=0), cfg, [str(i) for i in range(10)]), tmp_path)
    _corrupt_config(tmp_path, change)
    with pytest.raises(InputError, match=message):
        load_model(tmp_path)


def test_non_finite_weights_are_refused(tmp_path):
    cfg = config_for((1, 8, 8), 10, depth=2)
    save_model(SavedModel(build_model(cfg, seed=0), cfg, [str(i) for i in range(10)]), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    name = next(k for k, v in state.items() if v.is_floating_point() and k.endswith("weight"))
    state[name].view(-1)[0] = float("nan")
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(InputError, match=f"model.safetensors: tensor '{re.escape(name)}' holds NaN"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depth": 50}, r"depth must lie in \[1, 8\] \(MAX_DEPTH\), got 50"),
        ({"width": 0.0}, r"width must lie in \(0, 4\] \(MAX_WIDTH\), got 0"),
        ({"width": 1000.0}, r"width must lie in \(0, 4\]"),
        ({"input_size": 100_000}, r"input_size must be <= 1024 \(MAX_INPUT_SIZE\)"),
        ({"bottleneck": 10**7}, r"bottleneck must lie in \[1, 8192\]"),
        ({"dropout": 1.0}, r"dropout must lie in \[0, 1\)"),
        ({"depth": 5, "input_size": 8}, r"small_cnn halves its input 4 times at depth 5: input_size must be >= 16"),
    ],
    ids=["depth", "width-zero", "width-huge", "input-size", "bottleneck", "dropout", "pooling"],
)
def test_size_options_are_bounded_before_allocation(options, message):
    with pytest.raises(InputError, match=message):
        build_model(config_for((1, 8, 8), 10, **options), seed=0)
    build_model(config_for((1, 8, 8), 10, depth=4, input_size=8), seed=0)  # the deepest that fits 8x8
