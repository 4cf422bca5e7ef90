"""Local spatial entropy and adversarial-input detectors on real Fashion-MNIST attacks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from skimage.filters.rank import entropy as skimage_entropy
from sklearn.metrics import roc_auc_score

from trusttango.detect import (
    EntropyDetector,
    FeatureSqueezingDetector,
    KernelDensityDetector,
    adversarial_pairs,
    detection_roc,
    evaluate_detector,
    full_resolution_layer,
    guided_response,
    load_detector,
    median_filter,
)
from trusttango.detect.local_entropy import local_entropy, max_entropy, plot_entropy, to_levels
from trusttango.errors import InputError
from trusttango.models import SavedModel, build_model, config_for, save_model
from trusttango.plotting import plot_roc
from trusttango.robust.attacks import FGSM


def test_entropy_matches_skimage_rank_entropy():
    """Interior pixels equal scikit-image's rank entropy (base 2) with a 3x3 footprint."""
    response = torch.rand(3, 2, 20, 24, generator=torch.Generator().manual_seed(0)) - 0.5
    for bins in (256, 16):
        ours = local_entropy(response, window=3, bins=bins).numpy()
        levels = to_levels(response, bins)[:, 0].numpy().astype(np.uint8)
        for img, lev in zip(ours, levels, strict=True):
            ref = skimage_entropy(lev, np.ones((3, 3), dtype=np.uint8))
            np.testing.assert_allclose(img[1:-1, 1:-1], ref[1:-1, 1:-1], atol=1e-5)


def test_entropy_bounds_zero_response_and_bad_input():
    flat = local_entropy(torch.zeros(2, 3, 16, 16))
    assert torch.isfinite(flat).all() and float(flat.abs().max()) == 0.0
    noisy = local_entropy(torch.rand(2, 1, 16, 16), window=5, bins=256)
    assert float(noisy.max()) <= max_entropy(5, 256) + 1e-5 and float(noisy.mean()) > 3.0
    with pytest.raises(InputError, match="window"):
        local_entropy(torch.rand(1, 1, 8, 8), window=4)
    with pytest.raises(InputError, match="bins"):
        local_entropy(torch.rand(1, 1, 8, 8), bins=1)
    with pytest.raises(InputError, match="response"):
        local_entropy(torch.rand(8, 8))


def test_median_filter_matches_scipy():
    from scipy.ndimage import median_filter as scipy_median

    x = torch.rand(2, 3, 9, 11)
    ref = scipy_median(x.numpy(), size=(1, 1, 3, 3), mode="mirror")
    np.testing.assert_allclose(median_filter(x, 3).numpy(), ref, atol=1e-6)


def _identity_response(model, x):
    return x


def test_detector_api_on_synthetic_maps(tmp_path, digits_model):
    """With the input itself as 'response': smooth maps (clean) vs speckled maps (attacked)."""
    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(60, 1, 16, 16, generator=gen), 5, 1, 2)
    speckled = smooth + 0.3 * torch.rand(60, 1, 16, 16, generator=gen)
    det = EntropyDetector(digits_model, bins=32, responder=_identity_response)
    with pytest.raises(InputError, match="before fit"):
        det.score(smooth)
    det.fit(smooth[:30], speckled[:30])
    result = evaluate_detector(det, smooth[30:], speckled[30:], "speckle")
    assert result.auc > 0.9 and result.recall > 0.8 and result.precision > 0.8
    assert det.predict(speckled[30:]).mean() > det.predict(smooth[30:]).mean()
    zeros = EntropyDetector(digits_model, responder=lambda model, x: torch.zeros_like(x)).statistics(smooth[:4])
    assert np.isfinite(zeros).all() and float(np.abs(zeros).max()) == 0.0  # all-zero response: entropy 0, no NaN
    other = build_model(config_for((1, 8, 8), 10, depth=2), seed=1)
    det.model = other
    with pytest.raises(InputError, match="different model"):
        det.score(smooth)


@pytest.fixture(scope="module")
def fmnist_attacked(fmnist_model, fmnist_small):
    """FGSM (eps 0.1) on 600 real test images: correctly classified clean inputs and their successful adversarials."""
    test = fmnist_small.test
    clean, adv = adversarial_pairs(fmnist_model, test.x[:600], test.y[:600], FGSM(fmnist_model, eps=0.1))
    assert len(clean) >= 250  # the attack really flips most predictions
    half = len(clean) // 2
    return clean[:half], adv[:half], clean[half:], adv[half:]


def test_inner_layer_response_obeys_the_chain_rule(fmnist_model, fmnist_small):
    """The guided signal read at the first conv's output, pushed back through that (linear) conv and
    the input normalisation, is the input's guided-backprop map; ``auto`` picks the last 28x28 ReLU."""
    x = fmnist_small.test.x[:6]
    conv = fmnist_model.backbone[0]
    inner = guided_response(fmnist_model, x, "backbone.0")
    pushed = torch.nn.functional.conv_transpose2d(inner, conv.weight, padding=1) / fmnist_model.preprocess.std
    torch.testing.assert_close(pushed, guided_response(fmnist_model, x), rtol=1e-4, atol=1e-6)
    assert full_resolution_layer(fmnist_model, x) == "backbone.5"  # before the first max-pool
    assert full_resolution_layer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)), x) is None
    with pytest.raises(InputError, match="no module named"):
        EntropyDetector(fmnist_model, layer="backbone.99")


def test_entropy_detector_separates_real_attacks(fmnist_model, fmnist_attacked, tmp_path):
    """Default detector (mean entropy of the response at the last full-resolution ReLU, 256 bins)
    separates real FGSM inputs; the summary model does better still."""
    fit_clean, fit_adv, test_clean, test_adv = fmnist_attacked
    det = EntropyDetector(fmnist_model).fit(fit_clean, fit_adv)
    result = evaluate_detector(det, test_clean, test_adv, "fgsm")
    assert det.layer == "backbone.5" and result.auc > 0.93 and _separates(det, test_clean, test_adv), result
    seed_layer = EntropyDetector(fmnist_model, layer=None).fit(fit_clean, fit_adv)
    assert evaluate_detector(seed_layer, test_clean, test_adv).auc < result.auc - 0.2  # the input map: ~0.6
    assert 0 < result.recall <= 1 and 0 < result.precision <= 1
    both = torch.cat([test_clean[:3], test_adv[:3]])
    png = plot_entropy(both, det.responder(fmnist_model, both), det.entropy(both), tmp_path / "entropy.png")
    roc = plot_roc({"fgsm": detection_roc(det.score(test_clean), det.score(test_adv))}, tmp_path / "roc.png")
    assert png.stat().st_size > 5000 and roc.stat().st_size > 5000
    loaded = load_detector(det.save(tmp_path / "det"), fmnist_model)
    np.testing.assert_allclose(loaded.score(test_clean), det.score(test_clean), atol=1e-6)
    summary = EntropyDetector(fmnist_model, summary=True).fit(fit_clean, fit_adv)
    summary_result = evaluate_detector(summary, test_clean, test_adv, "fgsm")
    assert summary.coef.shape == (8,) and summary_result.auc > 0.96 and summary_result.fpr_at_95_recall < 0.2


def test_multi_layer_multi_scale_detector(fmnist_model, fmnist_attacked, tmp_path):
    """Every ReLU feature map x windows 3 and 5, summarised and combined by the logistic model,
    beats the default detector on FGSM."""
    fit_clean, fit_adv, test_clean, test_adv = fmnist_attacked
    det = EntropyDetector(fmnist_model, window=(3, 5), summary=True, layer="all").fit(fit_clean, fit_adv)
    relus = ["backbone.2", "backbone.5", "backbone.9", "backbone.12", "backbone.16", "backbone.19"]
    assert det.layer == relus and det.coef.shape == (len(relus) * 2 * 8,)
    assert len(det.entropies(test_clean[:2])) == 12 and det.entropy(test_clean[:2]).shape == (2, 28, 28)
    result = evaluate_detector(det, test_clean, test_adv, "fgsm")
    default = evaluate_detector(EntropyDetector(fmnist_model).fit(fit_clean, fit_adv), test_clean, test_adv)
    assert result.auc > 0.985 and result.auc > default.auc and result.fpr_at_95_recall < 0.1, (result, default)
    loaded = load_detector(det.save(tmp_path / "det"), fmnist_model)
    assert loaded.layer == relus and loaded.windows == (3, 5)
    np.testing.assert_allclose(loaded.score(test_adv), det.score(test_adv), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="window must be an odd"):
        EntropyDetector(fmnist_model, window=(3, 4))


def test_activation_and_both_signals(fmnist_model, fmnist_attacked, tmp_path):
    """The forward feature maps as responses (``signal="activation"``), alone or beside the guided
    signal: one entropy image per layer, signal and window, and FGSM separated at least as well
    as by the guided signal on the same layers."""
    fit_clean, fit_adv, test_clean, test_adv = fmnist_attacked
    layers = ["backbone.2", "backbone.9"]
    dets = {
        signal: EntropyDetector(fmnist_model, summary=True, layer=layers, signal=signal).fit(fit_clean, fit_adv)
        for signal in ("guided", "activation", "both")
    }
    assert [len(d.entropies(test_clean[:2])) for d in dets.values()] == [2, 2, 4]
    auc = {s: evaluate_detector(d, test_clean, test_adv, "fgsm").auc for s, d in dets.items()}
    assert auc["activation"] > 0.98 and auc["both"] >= auc["guided"] - 0.005, auc
    image = EntropyDetector(fmnist_model, layer=None, signal="activation")
    torch.testing.assert_close(image.entropy(test_clean[:3]), local_entropy(test_clean[:3]))  # the input itself
    loaded = load_detector(dets["both"].save(tmp_path / "det"), fmnist_model)
    assert loaded.signal == "both"
    np.testing.assert_allclose(loaded.score(test_adv), dets["both"].score(test_adv), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="signal: expected one of"):
        EntropyDetector(fmnist_model, signal="gradient")


def test_resnet18_shared_relu_gives_one_response_per_call():
    """torchvision's ResNet-18 blocks call one ReLU module twice: ``layer="all"`` reads each call
    as its own response map (``layer1.0.relu#0``, ``#1``) and the detector fits and scores."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    gen = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.avg_pool2d(torch.rand(6, 3, 32, 32, generator=gen), 3, 1, 1)
    noisy = (clean + 0.2 * torch.rand(6, 3, 32, 32, generator=gen)).clamp(0, 1)
    det = EntropyDetector(model, layer="all", bins=32).fit(clean, noisy)
    blocks = [f"layer{i}.{j}.relu" for i in range(1, 5) for j in range(2)]
    assert det.layer == ["relu", *[f"{b}#{call}" for b in blocks for call in (0, 1)]]
    maps = det.entropies(clean[:2])
    assert len(maps) == 1 + 2 * len(blocks) == 17
    assert maps[0].shape == (2, 16, 16) and maps[1].shape == maps[2].shape == (2, 8, 8)
    scores = det.score(torch.cat([clean, noisy]))
    assert scores.shape == (12,) and np.isfinite(scores).all()
    assert not model.training  # the model's eval flag is left as it was
    with pytest.raises(InputError, match="called 2 times"):
        EntropyDetector(model, layer="layer1.0.relu").entropies(clean[:2])
    with pytest.raises(InputError, match="no module named"):
        EntropyDetector(model, layer="layer9.relu#0")


def _separates(det, clean: torch.Tensor, adversarial: torch.Tensor) -> bool:
    """Adversarial inputs score higher than clean ones, significantly (one-sided Mann-Whitney U, p < 0.01)."""
    from scipy.stats import mannwhitneyu

    return mannwhitneyu(det.score(adversarial), det.score(clean), alternative="greater").pvalue < 0.01


def test_baselines_on_the_same_data(fmnist_model, fmnist_small, fmnist_attacked):
    fit_clean, fit_adv, test_clean, test_adv = fmnist_attacked
    squeeze = FeatureSqueezingDetector(fmnist_model).fit(fit_clean, fit_adv)
    ref = fmnist_small.train.subset(range(600))
    density = KernelDensityDetector(fmnist_model, ref.x, ref.y, mc_samples=5).fit(fit_clean, fit_adv)
    for det in (squeeze, density):
        result = evaluate_detector(det, test_clean, test_adv, "fgsm")
        assert result.auc > 0.6, (det.name, result)
    raw = squeeze.statistics(torch.cat([test_clean, test_adv]))[:, 0]
    labels = np.r_[np.zeros(len(test_clean)), np.ones(len(test_adv))]
    assert roc_auc_score(labels, raw) > 0.6  # squeezing distance grows under attack, without any fitting


def test_cli_detect_bad_input_exit_code(tmp_path, digits_model):
    cfg = digits_model.config
    model_dir = save_model(SavedModel(digits_model, cfg, [str(i) for i in range(10)]), tmp_path / "m")
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "trusttango.cli",
            "detect",
            "score",
            str(model_dir),
            "--data",
            "digits",
            "--detector",
            str(tmp_path / "none.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "not a detector folder" in missing.stderr


def test_cli_detect_fit_and_score(tmp_path, digits_model):
    from typer.testing import CliRunner

    from trusttango.cli import app

    model_dir = save_model(SavedModel(digits_model, digits_model.config, [str(i) for i in range(10)]), tmp_path / "m")
    out = tmp_path / "det"
    fitted = CliRunner().invoke(
        app, ["detect", "fit", str(model_dir), "--data", "digits", "--out", str(out), "--n", "120", "--bins", "32"]
    )
    assert fitted.exit_code == 0, fitted.output
    assert (out / "detector.json").exists() and (out / "roc.png").exists() and (out / "entropy.png").exists()
    scored = CliRunner().invoke(
        app,
        [
            "detect",
            "score",
            str(model_dir),
            "--data",
            "digits",
            "--detector",
            str(out),
            "--out",
            str(tmp_path / "scores"),
            "--n",
            "80",
            "--attacks",
            "fgsm,deepfool",
        ],
    )
    assert scored.exit_code == 0, scored.output
    assert (tmp_path / "scores" / "scores.json").exists() and (tmp_path / "scores" / "roc_test.png").exists()
    into_detector = CliRunner().invoke(
        app, ["detect", "score", str(model_dir), "--detector", str(out), "--out", str(out)]
    )
    assert isinstance(into_detector.exception, InputError) and "is (or holds) the input" in str(into_detector.exception)
    # every detector of the registry through the same commands; squeezing with Xu et al.'s MNIST
    # squeezers (1 bit, 2x2 median): its defaults (4 bits, 3x3) do not separate on 8x8 digits
    for method, options in (("squeezing", ["--bits", "1", "--median", "2"]), ("density", [])):
        folder = tmp_path / method
        args = ["detect", "fit", str(model_dir), "--data", "digits", "--n", "120", "--method", method, *options]
        assert CliRunner().invoke(app, [*args, "--out", str(folder)]).exit_code == 0
        score = ["detect", "score", str(model_dir), "--data", "digits", "--detector", str(folder), "--n", "60"]
        run = CliRunner().invoke(app, [*score, "--out", str(tmp_path / f"{method}-scores"), "--attacks", "fgsm"])
        assert run.exit_code == 0, run.output
        saved = json.loads((folder / "detector.json").read_text())
        assert saved["detector"] == method
        if method == "squeezing":  # the options reached the detector and its file
            assert (saved["settings"]["bits"], saved["settings"]["median"]) == (1, 2)
        assert json.loads((tmp_path / f"{method}-scores" / "scores.json").read_text())[0]["auc"] > 0.5
    unknown = CliRunner().invoke(app, ["detect", "fit", str(model_dir), "--data", "digits", "--method", "magic"])
    assert isinstance(unknown.exception, InputError) and "--method" in str(unknown.exception)


def test_cli_detect_fit_layer_option(tmp_path, digits_model):
    """``--layer`` takes module names separated by commas (one response each) and refuses unknown ones."""
    import json

    from typer.testing import CliRunner

    from trusttango.cli import app

    model_dir = save_model(SavedModel(digits_model, digits_model.config, [str(i) for i in range(10)]), tmp_path / "m")
    fit_args = ["detect", "fit", str(model_dir), "--data", "digits", "--n", "120", "--layer"]
    two = CliRunner().invoke(app, [*fit_args, "backbone.2, backbone.5", "--out", str(tmp_path / "two")])
    assert two.exit_code == 0, two.output
    document = json.loads((tmp_path / "two" / "detector.json").read_text())
    assert document["settings"]["layer"] == ["backbone.2", "backbone.5"] and len(document["fit"]["coef"]) == 2
    mixed = CliRunner().invoke(
        app, [*fit_args, "backbone.2", "--signal", "both", "--attack", "fgsm,deepfool", "--out", str(tmp_path / "mix")]
    )
    assert mixed.exit_code == 0, mixed.output
    document = json.loads((tmp_path / "mix" / "detector.json").read_text())
    assert document["settings"]["signal"] == "both" and len(document["fit"]["coef"]) == 2  # guided + activation
    n_fgsm = json.loads((tmp_path / "two" / "fit.json").read_text())["n_adversarial"]
    assert json.loads((tmp_path / "mix" / "fit.json").read_text())["n_adversarial"] > n_fgsm  # both attacks' pairs
    cli = [sys.executable, "-m", "trusttango.cli", *fit_args, "backbone.99", "--out", str(tmp_path / "bad")]
    unknown = subprocess.run(cli, capture_output=True, text=True)
    assert unknown.returncode == 2 and "no module named 'backbone.99'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert not (tmp_path / "bad" / "detector.json").exists()
