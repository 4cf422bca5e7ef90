"""The audit of the user's own model: a torchvision ResNet-18 trained in plain PyTorch, a user
``nn.Sequential`` from a file, a model with its own normalisation layer, the same model as ONNX;
and every bad input refused in one line, nothing written, nothing unpickled run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from trusttango.cli import main
from trusttango.data import load_data
from trusttango.errors import InputError
from trusttango.models.external import ModelSource, ModelSpec
from trusttango.report.audit import AuditConfig, run_audit
from trusttango.report.result import AuditResult
from trusttango.report.verdicts import black_box_robustness_verdict, threat_model

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's pixel mean and std, the user's own normalisation
SMALL = {"n_explain": 4, "n_attack": 40, "n_membership": 200, "budget": 60}
USER_NET = """
from torch import nn

def build():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )

class Normalised(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = build()

    def forward(self, x):
        return self.net((x - 0.2860) / 0.3530)

not_callable = 3

def flat():
    return nn.Flatten()

def not_a_module():
    return "a string"
"""


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, fmnist_small) -> Path:
    """2,500 real Fashion-MNIST images as the user's own .npz (uint8 pixels)."""
    path = tmp_path_factory.mktemp("data") / "fashion.npz"
    x = (fmnist_small.train.x[:2500, 0] * 255).round().to(torch.uint8).numpy()
    np.savez(path, x=x, y=fmnist_small.train.y[:2500].numpy(), class_names=np.array(fmnist_small.class_names))
    return path


def _train_plain(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, normalise: bool) -> nn.Module:
    """The user's own loop: plain PyTorch, Adam, their own normalisation (not trusttango's)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for _ in range(epochs):
        for i in torch.randperm(len(x)).split(64):
            inputs = (x[i] - MEAN) / STD if normalise else x[i]
            opt.zero_grad()
            nn.functional.cross_entropy(net(inputs), y[i]).backward()
            opt.step()
    return net.eval()


def _correct(net: nn.Module, x: torch.Tensor, y: torch.Tensor, normalise: bool) -> np.ndarray:
    """Which test examples the user's model gets right, measured by the user, outside trusttango."""
    with torch.no_grad():
        return (net((x - MEAN) / STD if normalise else x).argmax(1) == y).numpy()


def _expected_accuracy(audit: dict | AuditResult, correct: np.ndarray, seed: int = 0) -> float:
    """The user's own accuracy on exactly the examples the audit (audit.json or the Python result)
    says it evaluated: the whole test set, or (a busy machine, a small budget) the stated seeded
    part of it, which the report names."""
    if isinstance(audit, AuditResult):
        audit = {**audit.record, "sections": [s.to_dict() for s in audit.sections]}
    evaluation = audit["results"]["evaluation"]
    n, n_test = evaluation["n"], evaluation["n_test"]
    assert n_test == len(correct) and 100 <= n <= n_test
    if n == n_test:
        return float(correct.mean())
    section = next(s for s in audit["sections"] if s["key"] == "evaluation")
    assert f"Evaluated on {n} of {n_test}" in section["text"]
    return float(correct[np.sort(np.random.default_rng(seed).permutation(n_test)[:n])].mean())


@pytest.fixture(scope="module")
def user(tmp_path_factory, data_file) -> dict:
    """The user's files: net.py, its weights (safetensors and .pt), a ResNet-18 and an ONNX export."""
    import torchvision

    root = tmp_path_factory.mktemp("user")
    (root / "net.py").write_text(USER_NET)
    splits = load_data(str(data_file), seed=0)
    sys.path.insert(0, str(root))
    try:
        import net as user_net  # the user's module, as they would import it
    finally:
        sys.path.remove(str(root))
    small = _train_plain(user_net.build(), splits.train.x, splits.train.y, epochs=3, normalise=True)
    save_file(small.state_dict(), root / "small.safetensors")
    torch.save(small.state_dict(), root / "small.pt")
    resnet = torchvision.models.resnet18(num_classes=10)
    resnet.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # the usual grey-image adaptation
    resnet = _train_plain(resnet, splits.train.x, splits.train.y, epochs=2, normalise=True)
    save_file({k: v.contiguous() for k, v in resnet.state_dict().items()}, root / "resnet.safetensors")
    torch.onnx.export(small, (splits.test.x[:2],), root / "small.onnx", dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})  # fmt: skip
    torch.onnx.export(small, (splits.test.x[:2],), root / "dynamo.onnx", dynamo=True, input_names=["x"],
                      dynamic_shapes=({0: torch.export.Dim("n")},))  # fmt: skip
    test = splits.test
    return {
        "root": root, "splits": splits,
        "small": _correct(small, test.x, test.y, True), "resnet": _correct(resnet, test.x, test.y, True),
    }  # fmt: skip


def _record(out: Path) -> dict:
    return json.loads((out / "audit.json").read_text())


def test_resnet18_from_the_cli(user, data_file, tmp_path):
    """A torchvision ResNet-18 adapted to 1-channel 28x28, trained in plain PyTorch, audited by flags:
    the audit's accuracy is the one the user measures themselves, attacks really break it."""
    root = user["root"]
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-m", "trusttango.cli", "audit", "--arch", "resnet18", "--in-channels", "1",
         "--weights", str(root / "resnet.safetensors"), "--mean", str(MEAN), "--std", str(STD),
         "--data", str(data_file), "--out", str(out), "--budget", "60", "--seed", "0", "--members", "train",
         "--robust-preset", "fast"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = _record(out)
    assert record["results"]["evaluation"]["accuracy"] == pytest.approx(_expected_accuracy(record, user["resnet"]))
    assert user["resnet"].mean() > 0.6  # a genuinely trained model
    spec = ModelSpec.read(out / "model_spec.json")
    assert spec.mean == [MEAN] and spec.std == [STD] and spec.source["model"] == "resnet18"
    assert spec.class_names[0] == "T-shirt/top" and spec.input_shape == (1, 28, 28)
    robust = record["results"]["robustness"]
    if robust["robust_accuracy"] is None:  # a busy machine: not even 2 images of the ensemble in the share
        section = next(s for s in record["sections"] if s["key"] == "robustness")
        assert section["headline"] == "not measured (budget)" and "--budget" in section["text"]
    else:
        assert robust["robust_accuracy"] < record["results"]["evaluation"]["accuracy"]  # attacks break it
    genesis = record["sections"][0]
    assert genesis["skipped"] and "resnet18" in genesis["text"]
    assert 0 <= record["results"]["privacy"]["membership_auc"] <= 1  # members declared: tested


def test_user_code_and_onnx_audited_alike(user, data_file, tmp_path):
    """The user's nn.Sequential from their file with their weights, and the same network exported to
    ONNX: both give the accuracy the user measured; the ONNX conversion agrees with onnxruntime."""
    root = user["root"]
    common = {"mean": [MEAN], "std": [STD]}
    by_code = ModelSource(code=f"{root / 'net.py'}:build", weights=root / "small.pt", **common)
    by_onnx = ModelSource(onnx=root / "small.onnx", **common)
    results = {}
    for name, source in (("code", by_code), ("onnx", by_onnx)):
        cfg = AuditConfig(data=str(data_file), out=tmp_path / name, model_source=source, seed=0, **SMALL,
                          robust_preset="fast")  # fmt: skip
        run_audit(cfg, progress=False)
        record = _record(tmp_path / name)
        results[name] = record["results"]
        privacy = next(s for s in record["sections"] if s["key"] == "privacy")
        assert "--members train" in privacy["skipped"] and "privacy" not in results[name]  # nothing guessed
    for name in results:
        record = _record(tmp_path / name)
        assert results[name]["evaluation"]["accuracy"] == pytest.approx(_expected_accuracy(record, user["small"])), name
    code, onnx = results["code"]["robustness"], results["onnx"]["robustness"]
    assert code["n"]["autoattack"] == onnx["n"]["autoattack"] == SMALL["n_attack"]  # the same images, all of them
    assert code["robust_accuracy"] == pytest.approx(onnx["robust_accuracy"], abs=0.05)
    # the same network: attacks through the converted graph find what they find on the original
    spec = ModelSpec.read(tmp_path / "onnx" / "model_spec.json")
    assert 0 <= spec.source["onnx_max_logit_difference"] < 1e-4


def test_a_model_with_its_own_normalisation(user):
    """A model that normalises inside is given pixels as they are: same predictions as the
    Sequential given normalised pixels; declaring mean/std as well would normalise twice."""
    root, test = user["root"], user["splits"].test
    inside = ModelSource(code=f"{root / 'net.py'}:Normalised", weights=None).load(test)
    outside = ModelSource(code=f"{root / 'net.py'}:build", weights=root / "small.safetensors", mean=[MEAN],
                          std=[STD]).load(test)  # fmt: skip
    inside.model.net.net.load_state_dict(outside.model.net.state_dict())
    with torch.no_grad():
        assert torch.allclose(inside.model(test.x[:200]), outside.model(test.x[:200]), atol=1e-5)
        twice = ModelSource(code=f"{root / 'net.py'}:Normalised", mean=[MEAN], std=[STD]).load(test).model
        twice.net.load_state_dict(inside.model.net.state_dict())
        assert not torch.allclose(twice(test.x[:200]), inside.model(test.x[:200]), atol=1e-2)


def _cli(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["trusttango", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_models_are_one_line_and_write_nothing(user, data_file, tmp_path, monkeypatch, capsys):
    root = user["root"]
    marker = tmp_path / "payload-ran"
    torch.save({"conv.weight": torch.zeros(1), "x": _Payload(marker)}, tmp_path / "evil.pt")
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    net = str(root / "net.py")
    cases = {
        "tensor 'conv1.weight' has shape": ["--arch", "resnet18", "--weights", str(root / "resnet.safetensors")],
        "tensor 'conv1.weight' missing": ["--arch", "resnet18", "--in-channels", "1", "--weights", f"{root}/small.pt"],
        "refused": ["--model-code", f"{net}:build", "--weights", str(tmp_path / "evil.pt")],
        "defines no 'missing'": ["--model-code", f"{net}:missing"],
        "is not callable": ["--model-code", f"{net}:not_callable"],
        "not an nn.Module": ["--model-code", f"{net}:not_a_module"],
        "output shaped (2, 784)": ["--model-code", f"{net}:flat"],
        "give exactly one": ["--arch", "resnet18", "--model-code", f"{net}:build"],
        "mean: expected 1 value": ["--model-code", f"{net}:build", "--mean", "0.1,0.2,0.3", "--std", "1,1,1"],
        "not a valid ONNX model": ["--onnx", str(tmp_path / "junk.onnx")],
        "--num-classes 5": ["--arch", "resnet18", "--in-channels", "1", "--num-classes", "5"],
    }  # fmt: skip
    for needle, args in cases.items():
        out = tmp_path / "out"
        code, err = _cli(["audit", *args, "--data", str(data_file), "--out", str(out)], monkeypatch, capsys)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (needle, err)
        assert needle in err, (needle, err)
        assert not out.exists(), needle
    assert not marker.exists()  # nothing in the pickle ran


def test_loading_refuses_a_spec_that_does_not_fit(user):
    test = user["splits"].test
    with pytest.raises(InputError, match="1 class names for 10 outputs"):
        ModelSpec.checked(input_shape=(1, 28, 28), num_classes=10, class_names=["a"])
    with pytest.raises(InputError, match="value range"):
        ModelSource(arch="resnet18", in_channels=1, value_range=(1.0, 0.0)).load(test)


def test_the_model_source_from_a_yaml_config(user, data_file, tmp_path):
    root = user["root"]
    path = tmp_path / "audit.yaml"
    path.write_text(
        f"data: {data_file}\nmodel_source:\n  code: {root / 'net.py'}:build\n  weights: {root / 'small.pt'}\n"
        f"  mean: [{MEAN}]\n  std: [{STD}]\n"
    )
    cfg = AuditConfig.from_yaml(path)
    test = user["splits"].test
    with torch.no_grad():
        predictions = cfg.model_source.load(test).model(test.x).argmax(1)
    assert np.array_equal((predictions == test.y).numpy(), user["small"])
    path.write_text(f"data: {data_file}\nmodel_source:\n  arch: resnet18\n  wieghts: w.pt\n")
    with pytest.raises(InputError, match="model_source.wieghts: unknown field"):
        AuditConfig.from_yaml(path)


def test_the_python_api_on_a_users_module(user, tmp_path):
    """``trusttango.audit`` on an nn.Module from a notebook: typed figures, the user's
    normalisation honoured, membership tested only where the members are declared, and the
    module's own train/eval flags given back."""
    import trusttango
    from trusttango.data import Splits

    root, splits = user["root"], user["splits"]
    sys.path.insert(0, str(root))
    try:
        import net as user_net
    finally:
        sys.path.remove(str(root))
    inside = user_net.Normalised()  # normalises inside: audited as it is, in pixel space
    inside.net.load_state_dict(torch.load(root / "small.pt", weights_only=True))
    inside.train()
    inside.net[0].eval()  # a flag of its own, which must come back as it was
    config = trusttango.AuditConfig(seed=0, members="train", **SMALL)
    result = trusttango.audit(inside, Splits(splits.train, splits.val, splits.test), config, out=tmp_path / "r")
    assert result.accuracy == pytest.approx(_expected_accuracy(result, user["small"]))
    assert result.report == tmp_path / "r" / "index.html" and result.report.exists()
    assert 0 <= result.robust_accuracy < result.accuracy and result.robust_eps == pytest.approx(
        8 / 255
    )  # a dataset of its own: the stated default
    assert result.membership_auc is not None and "privacy" not in result.skipped
    assert set(result.verdicts) == {
        "genesis",
        "evaluation",
        "insight",
        "robustness",
        "detection",
        "privacy",
        "fairness",
    }
    assert result.spec.source["kind"] == "python" and result.spec.source["model"] == "Normalised"
    assert inside.training and not inside.net[0].training and inside.net[1].training
    test_only = trusttango.audit(inside, splits.test, trusttango.AuditConfig(seed=0, **SMALL))
    assert test_only.report is None and test_only.accuracy == pytest.approx(result.accuracy, abs=1e-6)
    assert "training data" in test_only.skipped["privacy"] and test_only.membership_auc is None
    page = test_only.write(tmp_path / "later")
    assert json.loads((tmp_path / "later" / "audit.json").read_text())["results"]["evaluation"]["accuracy"] == (
        pytest.approx(result.accuracy, abs=1e-6)
    )
    assert page.exists() and (tmp_path / "later" / "model_spec.json").exists()


@pytest.mark.parametrize(
    "kind,layers", [("mlp", "no spatial layer"), ("tanh", "no ReLU")], ids=["no-spatial-layer", "no-relu"]
)
def test_stages_that_cannot_apply_say_why(kind, layers, digits, tmp_path):
    """A model without a spatial layer loses Grad-CAM, one without ReLUs guided backprop and the
    entropy detector (defined on guided backprop); each says why, the rest of the audit runs."""
    import trusttango

    if kind == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    else:
        net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(16 * 64, 10))
    net = _train_plain(net, digits.train.x, digits.train.y, epochs=20, normalise=False)
    result = trusttango.audit(net, digits, trusttango.AuditConfig(seed=0, **SMALL))
    insight = next(s for s in result.sections if s.key == "insight")
    assert not insight.skipped and result.accuracy > 0.85, layers
    methods = {row["method"] for row in result.record["results"]["insight"]}
    if kind == "mlp":
        assert "gradcam left out" in insight.text and "Conv2d" in insight.text and "gradcam" not in methods
        assert "guided" in methods and "detection" not in result.skipped
    else:
        assert "guided left out" in insight.text and "ReLU" in insight.text and "guided" not in methods
        assert "ReLU" in result.skipped["detection"] and result.detection_auc is None


def test_budget_shares_and_sizes():
    """Stages share the time left by weight; what one leaves unspent goes to the later ones."""
    from trusttango.report.budget import WEIGHTS, Budget, affordable, chunks

    budget = Budget(100.0, start=time.perf_counter())
    shares = {name: budget.seconds(name) for name in WEIGHTS}
    assert shares["fairness"] == pytest.approx(budget.left(), rel=1e-3)  # the last stage may use all that is left
    assert shares["robustness"] == pytest.approx(100 * 0.45 / (1 - 0.08 - 0.15), rel=1e-3)
    assert affordable(10.0, 0.5, 100) == 20 and affordable(10.0, 0.5, 10) == 10 and affordable(0.0, 1.0, 50, 5) == 5
    assert affordable(float("inf"), 1.0, 7) == 7
    assert [s.start for s in chunks(25, 10, deadline=float("inf"))] == [0, 10, 20]
    assert [s.start for s in chunks(25, 10, deadline=0.0)] == [0]  # past the deadline: the first chunk only
    assert Budget(0.0).seconds("evaluation") == 0.0


def test_a_small_budget_shrinks_the_samples_and_says_so(user):
    """A ResNet-18 under a 30 s budget: the stages attack, explain and test fewer examples than
    configured, and the report states how many (or, where the verdict's attack does not finish
    on 2 images, gives no figure and the budget to ask for); nothing is silently dropped."""
    import trusttango

    root = user["root"]
    source = ModelSource(arch="resnet18", in_channels=1, weights=root / "resnet.safetensors", mean=[MEAN], std=[STD])
    config = trusttango.AuditConfig(seed=0, budget=30, n_attack=200, n_explain=8, n_membership=1000, members="train")
    result = trusttango.audit(source, user["splits"], config)
    sizes = result.record["results"]["robustness"]["n"]
    robustness = next(s for s in result.sections if s.key == "robustness")
    if sizes["autoattack"] == 0:  # standard AutoAttack on a CPU ResNet: not even 2 images in the share
        assert robustness.headline == "not measured (budget)"
        accurate = result.verdicts["evaluation"] == "pass"
        assert robustness.verdict == ("not established" if accurate else "not meaningful")  # never a grade
        assert "--budget" in robustness.text and result.robust_accuracy is None
    else:
        assert sizes["autoattack"] < 200 and sizes["curves"] < 200 and sizes.get("ara", 0) < 100, sizes
        assert f"on {sizes['autoattack']} test images" in robustness.text and result.robust_accuracy is not None
    privacy = result.record["results"]["privacy"]["n"]
    assert 100 <= privacy["members"] <= 1000 and f"{privacy['members']} members" in result.sections[5].text
    assert result.accuracy == pytest.approx(_expected_accuracy(result, user["resnet"]))


def test_an_onnx_graph_that_cannot_be_converted_is_audited_as_a_black_box(user, tmp_path):
    """torch's dynamo exporter writes Reshape(allowzero=1), which onnx2torch cannot convert: the
    model runs in onnxruntime, the audit says so, and every stage either runs without gradients
    (Square, occlusion, membership) or says why it cannot; the robustness verdict never passes."""
    import trusttango

    source = ModelSource(onnx=user["root"] / "dynamo.onnx", mean=[MEAN], std=[STD])
    config = trusttango.AuditConfig(seed=0, members="train", **{**SMALL, "n_attack": 20})
    result = trusttango.audit(source, user["splits"], config, out=tmp_path / "r")
    assert "cannot be converted" in result.spec.source["black_box"] and "allowzero" in result.spec.source["black_box"]
    assert result.accuracy == pytest.approx(_expected_accuracy(result, user["small"]))  # onnxruntime
    robust = result.record["results"]["robustness"]
    assert robust["attack"]["name"] == "square" and result.robust_accuracy < result.accuracy
    assert result.verdicts["robustness"] != "pass" and "Square" in result.sections[3].text
    threat = threat_model("fashion-mnist")  # the rule itself: a score-based figure fails a model, never passes it
    assert black_box_robustness_verdict(0.9, threat, 0.5, accurate=True).verdict == "not established"
    assert black_box_robustness_verdict(0.1, threat, 0.5, accurate=True).verdict == "fail"
    assert "upper bound" in black_box_robustness_verdict(0.9, threat, 0.5, accurate=True).rule
    assert "gradients" in result.skipped["detection"]
    assert {row["method"] for row in result.record["results"]["insight"]} == {"occlusion"}
    assert result.verdicts["insight"] in {"not established", "not meaningful"}
    assert result.membership_auc is not None and "Black-box mode" in result.sections[0].text
    hashed = {Path(p).name for p in result.record["provenance"]["model_files"]}
    assert hashed == {"dynamo.onnx", "dynamo.onnx.data"}  # the exporter's external weights are hashed too


def _predictions(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def test_an_imported_model_is_read_by_every_command(user, data_file, tmp_path, monkeypatch, capsys):
    """``import-model`` writes the user's ResNet-18 as a model directory with its weights copied in:
    it predicts what the user's own loading predicts after their file is gone, and ``evaluate``,
    ``attack`` and ``explain`` read it, defaulting to the data it was imported with."""
    from trusttango.models import load_model

    root, test = user["root"], user["splits"].test
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes((root / "resnet.safetensors").read_bytes())
    flags = ["--arch", "resnet18", "--in-channels", "1", "--mean", str(MEAN), "--std", str(STD)]
    model = tmp_path / "resnet"
    code, err = _cli(["import-model", *flags, "--weights", str(weights), "--data", str(data_file), "--out", str(model)],
                     monkeypatch, capsys)  # fmt: skip
    assert code == 0, err
    direct = ModelSource(arch="resnet18", in_channels=1, weights=weights, mean=[MEAN], std=[STD]).load(test).model
    weights.unlink()  # the directory holds its own copy
    saved = load_model(model)
    assert saved.class_names == test.class_names and saved.config.source["model"] == "resnet18"
    assert torch.equal(_predictions(saved.model, test.x[:500]), _predictions(direct, test.x[:500]))
    code, err = _cli(["evaluate", str(model), "--out", str(tmp_path / "eval")], monkeypatch, capsys)
    assert code == 0 and "using " in err, err  # the data it was imported with
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(user["resnet"].mean())  # what the user measures, whole test split
    args = ["attack", str(model), "--attack", "pgd", "--eps", "0.1", "--n", "40", "--out", str(tmp_path / "atk")]
    assert _cli(args, monkeypatch, capsys)[0] == 0
    attack = json.loads((tmp_path / "atk" / "attack.json").read_text())
    assert attack["robust_accuracy"] < attack["clean_accuracy"] - 0.3  # PGD really breaks the undefended model
    args = ["explain", str(model), "--method", "gradcam,saliency", "--layer", "layer4", "--limit", "2"]  # its own name
    assert _cli([*args, "--out", str(tmp_path / "maps")], monkeypatch, capsys)[0] == 0
    assert len(list((tmp_path / "maps").glob("*.png"))) >= 2
    scores = json.loads((tmp_path / "maps" / "scores.json").read_text())
    assert len(scores) == 2 and "gradcam" in json.dumps(scores)


def test_imported_code_and_onnx_models(user, data_file, tmp_path, monkeypatch, capsys):
    """A --model-code directory runs the user's code again only when TRUSTTANGO_TRUST_CODE=1 says so
    (otherwise one line, exit 2); an ONNX directory needs no code and is audited like any MODEL,
    with membership left untested until the members are declared."""
    from trusttango.models import load_model
    from trusttango.report.provenance import provenance

    root, test = user["root"], user["splits"].test
    common = ["--mean", str(MEAN), "--std", str(STD), "--data", str(data_file)]
    by_code, by_onnx = tmp_path / "code", tmp_path / "onnx"
    code_args = ["--model-code", f"{root / 'net.py'}:build", "--weights", str(root / "small.pt")]
    assert _cli(["import-model", *code_args, *common, "--out", str(by_code)], monkeypatch, capsys)[0] == 0
    assert _cli(["import-model", "--onnx", str(root / "small.onnx"), *common, "--out", str(by_onnx)],
                monkeypatch, capsys)[0] == 0  # fmt: skip
    monkeypatch.delenv("TRUSTTANGO_TRUST_CODE", raising=False)
    code, err = _cli(["evaluate", str(by_code), "--out", str(tmp_path / "eval")], monkeypatch, capsys)
    assert code == 2 and "TRUSTTANGO_TRUST_CODE=1" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "eval").exists()
    files = provenance(AuditConfig(model=by_code), user["splits"], None)["model_files"]
    assert {Path(p).name for p in files} == {"config.json", "model.safetensors", "net.py"}  # the code is hashed too
    monkeypatch.setenv("TRUSTTANGO_TRUST_CODE", "1")
    from_code, from_onnx = load_model(by_code).model, load_model(by_onnx).model
    assert torch.equal(_predictions(from_code, test.x[:500]), _predictions(from_onnx, test.x[:500]))
    assert load_model(by_onnx).config.source["onnx_max_logit_difference"] < 1e-4  # checked at import
    membership = ["membership", str(by_onnx), "--attack", "loss", "--n", "200", "--out", str(tmp_path / "mia")]
    code, err = _cli(membership, monkeypatch, capsys)
    assert code == 2 and "members are not assumed; give --data" in err and not (tmp_path / "mia").exists(), err
    declared = tmp_path / "declared"  # the same model, its members declared once, when it is imported
    assert _cli(["import-model", "--onnx", str(root / "small.onnx"), *common, "--members", "train", "--out",
                 str(declared)], monkeypatch, capsys)[0] == 0  # fmt: skip
    membership[1] = str(declared)
    assert _cli(membership, monkeypatch, capsys)[0] == 0  # --data: the data it was imported with
    assert json.loads((tmp_path / "mia" / "membership.json").read_text())["members"] == 200
    out = tmp_path / "report"
    run_audit(AuditConfig(model=by_onnx, data=str(data_file), out=out, seed=0, **SMALL, robust_preset="fast"),
              progress=False)  # fmt: skip
    record = _record(out)
    assert record["results"]["evaluation"]["accuracy"] == pytest.approx(_expected_accuracy(record, user["small"]))
    privacy = next(s for s in record["sections"] if s["key"] == "privacy")
    assert "--members train" in privacy["skipped"]  # a brought model's members are never assumed
    import trusttango  # the Python API on the directory's path: members as declared, its files hashed

    declared_audit = trusttango.audit(declared, str(data_file), AuditConfig(seed=0, **SMALL, robust_preset="fast"))
    assert declared_audit.membership_auc is not None and 0 <= declared_audit.membership_auc <= 1
    hashed = {Path(p).name for p in declared_audit.record["provenance"]["model_files"]}
    assert hashed == {"config.json", "model.onnx"}
    assert ModelSpec.read(out / "model_spec.json").source["kind"] == "onnx"
    black_box = tmp_path / "dynamo"  # a graph onnx2torch cannot convert: copied, and run by onnxruntime when read
    assert _cli(["import-model", "--onnx", str(root / "dynamo.onnx"), *common, "--out", str(black_box)],
                monkeypatch, capsys)[0] == 0  # fmt: skip
    assert "allowzero" in load_model(black_box).meta["black_box"]
    for command in (["attack", str(black_box), "--attack", "pgd"], ["explain", str(black_box), "--method", "saliency"]):
        code, err = _cli([*command, "--out", str(tmp_path / "grad")], monkeypatch, capsys)  # needs gradients
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and "without gradients" in errors[0] and "Traceback" not in err, err
    args = ["attack", str(black_box), "--attack", "square", "--n", "20", "--out", str(tmp_path / "square")]
    assert _cli(args, monkeypatch, capsys)[0] == 0  # score-based: runs on the black box
    assert json.loads((tmp_path / "square" / "attack.json").read_text())["n"] == 20
    args = ["robustness", str(black_box), "--n", "10", "--eps", "0.1", "--out", str(tmp_path / "robust")]
    code, err = _cli(args, monkeypatch, capsys)  # Square alone, said to be an upper bound; no curves, no ARA
    robust = json.loads((tmp_path / "robust" / "robustness.json").read_text())
    assert code == 0 and "upper bound" in err and robust["black_box"] and "curves" not in robust, err
    assert robust["autoattack"]["preset"] == "square" and [r["attack"] for r in robust["autoattack"]["rows"]] == [
        "square"
    ]
    assert not (tmp_path / "robust" / "curves.png").exists()
    assert torch.equal(_predictions(load_model(black_box).model, test.x[:200]), _predictions(from_onnx, test.x[:200]))


def test_import_model_bad_input_is_one_line(user, data_file, tmp_path, monkeypatch, capsys):
    root = user["root"]
    out = tmp_path / "model"
    cases = {
        "give your model": [],
        "tensor 'conv1.weight' has shape": ["--arch", "resnet18", "--weights", str(root / "resnet.safetensors")],
        "--weights, --mean": ["--weights", str(root / "small.pt")],
    }
    for needle, args in cases.items():
        code, err = _cli(["import-model", *args, "--data", str(data_file), "--out", str(out)], monkeypatch, capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (needle, err)
        assert not out.exists() and not list(tmp_path.glob(".model*")), needle  # nothing half-written
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = ["import-model", "--onnx", str(root / "small.onnx"), "--data", str(data_file), "--out", str(out)]
    code, err = _cli(args, monkeypatch, capsys)
    assert code == 2 and "--force" in err and (out / "keep.txt").read_text() == "mine"
    model = tmp_path / "imported"
    args[-1] = str(model)
    assert _cli(args, monkeypatch, capsys)[0] == 0
    document = json.loads((model / "config.json").read_text())
    for build, needle in (({}, "exactly one of arch, code, onnx"), ({"onnx": "../small.onnx"}, "the file inside")):
        (model / "config.json").write_text(json.dumps({**document, "build": build}))  # tampered with
        code, err = _cli(["evaluate", str(model), "--out", str(tmp_path / "eval")], monkeypatch, capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
