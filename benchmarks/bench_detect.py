"""Entropy detection of adversarial inputs (Amirian et al. 2018) and the zoom-in classifier.

1. Detection on Fashion-MNIST with the default small CNN: detectors fitted on FGSM, and on
   FGSM + DeepFool (validation split), tested on FGSM, PGD, MI-FGSM, C&W and DeepFool (test split):
   AUC, precision, recall, FPR at 95 % recall; entropy detector vs feature squeezing vs
   kernel density + uncertainty on the same pairs; seed anchor AUC 0.990 (ImageNet/VGG19).
2. Ablation of the response layer, window, bins and FGSM eps (AUC on FGSM).
3. Entropy throughput (images/s) at 28x28 and 224x224, vs scikit-image's rank entropy.
4. Zoom-in vs the low-resolution model alone and a high-resolution single model.

Size: ``--n`` attacked test images (default 300), ``--train`` training images (6000),
``--zoom-train`` training canvases (6000). Run: ``python -m benchmarks.bench_detect [throughput]
[detection] [zoom] [--n N] [--train N] [--zoom-train N]``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from benchmarks.harness import make_parser, parse, write_table
from trusttango.data import Splits, load_builtin, stratified_indices
from trusttango.detect import (
    DETECTION_ATTACKS,
    EntropyDetector,
    FeatureSqueezingDetector,
    KernelDensityDetector,
    adversarial_pairs,
    detection_attack,
    evaluate_detector,
)
from trusttango.detect.local_entropy import local_entropy, to_levels
from trusttango.detect.zoom import place_on_canvas, train_zoom
from trusttango.evaluate import evaluate
from trusttango.models import build_model, config_for
from trusttango.train import TrainConfig, fit

EPS = 0.1
SEED_AUC = 0.990


def subset(ds, n):
    if n >= len(ds):
        return ds
    idx, _ = stratified_indices(ds.y.numpy(), (n / len(ds), 1 - n / len(ds)), 0)
    return ds.subset(idx)


FIT_ATTACKS = {  # fit protocol -> the "seen" attacks whose validation pairs fit the detectors
    "FGSM": ("fgsm",),
    "FGSM + DeepFool": ("fgsm", "deepfool"),  # one L-inf sign attack, one minimum-norm L2 attack
}


def detectors_for(model, ref) -> dict:
    both = dict(window=(3, 5), summary=True)
    return {
        "entropy, input map (seed layer)": EntropyDetector(model, layer=None),
        "entropy (mean), auto layer": EntropyDetector(model),
        "entropy (summary+logistic), auto layer": EntropyDetector(model, summary=True),
        "entropy (summary+logistic), all layers, windows 3+5": EntropyDetector(model, layer="all", **both),
        "entropy of activations (summary+logistic), all layers, windows 3+5": EntropyDetector(
            model, layer="all", signal="activation", **both
        ),
        "entropy of guided + activations (summary+logistic), all layers, windows 3+5": EntropyDetector(
            model, layer="all", signal="both", **both
        ),
        "entropy of the input image itself (summary+logistic), windows 3+5": EntropyDetector(
            model, layer=None, signal="activation", **both
        ),
        "feature squeezing": FeatureSqueezingDetector(model),
        "kernel density+uncertainty": KernelDensityDetector(model, ref.x, ref.y),
    }


def detection(splits: Splits, n: int) -> None:
    model = build_model(config_for(splits.train.input_shape, 10), seed=0)
    fit(model, splits.train, splits.val, TrainConfig(epochs=4, progress=False))
    model.eval()
    val, test = splits.val.subset(range(n)), splits.test.subset(range(n))
    ref = splits.train.subset(range(min(2000, len(splits.train))))
    seen_any = {a for seen in FIT_ATTACKS.values() for a in seen}
    val_pairs = {a: adversarial_pairs(model, val.x, val.y, detection_attack(a, model, EPS)) for a in sorted(seen_any)}
    test_pairs = {
        a: adversarial_pairs(model, test.x, test.y, detection_attack(a, model, EPS)) for a in DETECTION_ATTACKS
    }
    for protocol, seen in FIT_ATTACKS.items():
        fit_clean, fit_adv = (torch.cat(part) for part in zip(*(val_pairs[a] for a in seen), strict=True))
        detectors = detectors_for(model, ref)
        for det in detectors.values():
            det.fit(fit_clean, fit_adv)
        rows = []
        for attack, (clean, adv) in test_pairs.items():
            for name, det in detectors.items():
                r = evaluate_detector(det, clean, adv, attack)
                rows.append([attack, "seen" if attack in seen else "unseen", name, r.auc, r.auc / SEED_AUC,
                             r.precision, r.recall, r.fpr_at_95_recall, r.n_adversarial])  # fmt: skip
        clean = test_pairs["fgsm"][0]
        control = random_noise(clean, EPS)  # same L-inf budget, no adversarial direction
        for name, det in detectors.items():
            r = evaluate_detector(det, clean, control, "random sign noise")
            rows.append(["random ±eps noise", "control", name, r.auc, "", r.precision, r.recall, "", len(control)])
        for group in ("seen", "unseen"):
            for name in detectors:
                mean = float(np.mean([r[3] for r in rows if r[2] == name and r[1] == group]))
                rows.append([f"mean {group}", group, name, mean, mean / SEED_AUC, "", "", "", ""])
        layer = detectors["entropy (mean), auto layer"].layer
        every = ", ".join(detectors["entropy (summary+logistic), all layers, windows 3+5"].layer)
        write_table(
            f"Adversarial detection by feature-response entropy (Fashion-MNIST, fitted on {protocol})",
            ["attack", "seen", "detector", "AUC", "AUC / seed 0.990", "precision", "recall", "FPR@95%recall",
             "n adv"],
            rows,
            f"small CNN trained on {len(splits.train)} images, eps {EPS} (L-inf attacks), {n} val + {n} test images; "
            f"fitted on the validation pairs of {protocol} together; threshold: Youden's J on that validation ROC; "
            f"auto layer = {layer}; all layers = {every}; guided = the guided-backprop signal at the layer (the "
            "seed's response), activations = the layer's forward feature map; the input image row is a control for "
            "how much the data alone gives away.",
        )  # fmt: skip
    ablation(model, val, test)


def random_noise(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``x`` plus random signs times ``eps``, clipped to [0, 1]: a non-adversarial perturbation control."""
    signs = torch.sign(torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) - 0.5)
    return (x + eps * signs).clamp(0, 1)


def ablation(model, val, test) -> None:
    """FGSM AUC of the mean-entropy detector per response layer, bins, window and attack strength eps."""
    rows = []
    for eps in (0.02, 0.05, 0.1, 0.2):
        fit_pair = adversarial_pairs(model, val.x, val.y, detection_attack("fgsm", model, eps))
        test_pair = adversarial_pairs(model, test.x, test.y, detection_attack("fgsm", model, eps))
        for layer, window, bins in ((None, 3, 256), ("auto", 3, 32), ("auto", 3, 256), ("auto", 5, 256)):
            if eps != EPS and (window, bins) != (3, 256):
                continue
            det = EntropyDetector(model, window=window, bins=bins, layer=layer).fit(*fit_pair)
            r = evaluate_detector(det, *test_pair, "fgsm")
            rows.append([eps, det.layer or "input", window, bins, r.auc, r.fpr_at_95_recall, r.n_adversarial])
    write_table(
        "Entropy detector ablation: response layer, window, bins, FGSM eps (mean entropy)",
        ["eps", "layer", "window", "bins", "AUC", "FPR@95%recall", "n adv"],
        rows,
        "fitted on FGSM at the same eps (validation), tested on FGSM (test split).",
    )


def throughput() -> None:
    from skimage.filters.rank import entropy as rank_entropy

    rows = []
    for side, n in ((28, 512), (224, 16)):
        r = torch.rand(n, 3, side, side)
        start = time.perf_counter()
        local_entropy(r)
        ours = n / (time.perf_counter() - start)
        levels = to_levels(r)[:, 0].numpy().astype(np.uint8)
        start = time.perf_counter()
        for img in levels:
            rank_entropy(img, np.ones((3, 3), dtype=np.uint8))
        anchor = n / (time.perf_counter() - start)
        rows.append([f"{side}x{side}", ours, anchor, ours / anchor])
    write_table(
        "Local spatial entropy throughput (3x3, 256 bins)",
        ["input", "ours img/s", "skimage rank img/s", "ratio"],
        rows,
        "skimage timed on pre-quantised uint8 maps (its input), ours from raw float responses.",
    )


def zoom(splits: Splits, n_zoom: int) -> None:
    n_train = min(n_zoom, len(splits.train))
    canvas = Splits(
        *(
            place_on_canvas(subset(ds, n), 84, noise=0.5, seed=i)
            for i, (ds, n) in enumerate(((splits.train, n_train), (splits.val, 1000), (splits.test, 2000)))
        )
    )
    tc = TrainConfig(epochs=4, batch_size=64, progress=False)
    start = time.perf_counter()
    model = train_zoom(canvas, tc, low_size=28, crop_size=28)
    zoom_s = time.perf_counter() - start
    high = build_model(config_for(canvas.train.input_shape, 10, input_size=84), seed=0)
    start = time.perf_counter()
    fit(high, canvas.train, canvas.val, tc)
    high_s = time.perf_counter() - start
    low = evaluate(model.global_model, canvas.test).accuracy
    rows = [
        ["low-res global (28 of 84)", low, 1.0, ""],
        ["zoom-in, fusion head", evaluate(model, canvas.test).accuracy, "", zoom_s],
        ["high-res single (84)", evaluate(high.eval(), canvas.test).accuracy, "", high_s],
    ]
    model.fusion = "average"
    rows.insert(2, ["zoom-in, average", evaluate(model, canvas.test).accuracy, "", ""])
    for row in rows[1:]:
        row[2] = row[1] / low
    write_table(
        "Zoom-in classifier: Fashion-MNIST items on an 84x84 noisy canvas",
        ["model", "test accuracy", "ratio to low-res", "train s"],
        rows,
        f"{n_train} training canvases, 4 epochs per stage; Grad-CAM attention, tau 0.7, 28x28 crops.",
    )


def main(parts: list[str], n: int = 300, n_train: int = 6000, n_zoom: int = 6000) -> None:
    """Run the named parts (``throughput``, ``detection``, ``zoom``; all by default)."""
    torch.manual_seed(0)
    fm = load_builtin("fashion-mnist", seed=0)
    splits = Splits(subset(fm.train, n_train), subset(fm.val, 1000), subset(fm.test, 2000))
    if "throughput" in parts:
        throughput()
    if "detection" in parts:
        detection(splits, n)
    if "zoom" in parts:
        zoom(splits, n_zoom)


PARTS = ("throughput", "detection", "zoom")


def parser():
    """The script's command line: its parts and sizes."""
    found = make_parser(__doc__, PARTS)
    found.add_argument("--n", type=int, default=300, help="attacked validation and test images each")
    found.add_argument("--train", type=int, default=6000, help="training images of the detected model")
    found.add_argument("--zoom-train", type=int, default=6000, help="training canvases of the zoom-in model")
    return found


if __name__ == "__main__":
    args = parse(parser())
    main(args.parts, args.n, args.train, args.zoom_train)
