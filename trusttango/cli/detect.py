"""CLI: ``trusttango detect fit|score MODEL --data DATA``, detectors of adversarial inputs
(:data:`trusttango.detect.DETECTORS`; the entropy detector by default)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trusttango.cli._common import (
    ATTACK_HELP,
    FORCE_OPTION,
    console,
    data_option,
    items,
    load_model_and_data,
    model_argument,
    raise_input,
)
from trusttango.errors import require
from trusttango.outputs import atomic_output, check_output

LAYER_HELP = (
    "Response at: auto (last full-res ReLU), all (every ReLU feature map), input, "
    "or module names separated by commas (a module called twice: name#0, name#1)."
)


def _load(model: Path, data: str, split: str, n: int, seed: int):
    """The model and the first ``n`` examples of the ``split`` of ``data`` (an image model, n >= 4)."""
    require(n >= 4, f"--n must be >= 4, got {n}")
    loaded = load_model_and_data(model, data, split, seed)
    require(loaded.data.modality == "image", f"{model}: the entropy detector needs an image model and images")
    ds = loaded.data.subset(range(min(n, len(loaded.data))))
    return loaded.model, ds


def _attacks(text: str, option: str) -> list[str]:
    from trusttango.robust import ATTACKS

    names = items(text, option)
    for name in names:
        require(name in ATTACKS, f"{option}: expected names from {', '.join(ATTACKS)}, got {name!r}")
    return names


def _windows(text: str) -> list[int]:
    try:
        return [int(side) for side in items(text, "--window")]
    except ValueError:
        raise_input(f"--window: expected odd integers separated by commas, got {text!r}")


def _detector(method: str, net, model: Path, data: str, n: int, seed: int, options: dict):
    """The unfitted detector ``method`` of :data:`~trusttango.detect.DETECTORS` on ``net`` with
    ``options[method]`` (the density detector's reference: the first ``n`` training examples)."""
    from trusttango.detect import DETECTORS

    require(method in DETECTORS, f"--method: expected one of {', '.join(DETECTORS)}, got {method!r}")
    if method == "density":
        _, reference = _load(model, data, "train", n, seed)
        return DETECTORS[method](net, reference.x, reference.y)
    return DETECTORS[method](net, **options.get(method, {}))


def fit_cmd(
    model: Path = model_argument(),
    data: str = data_option(help="Dataset (built-in name, folder, .npz, IDX); its validation split is used."),
    out: Path = typer.Option(Path("runs/detect"), help="Folder for detector.json, fit.json and the PNGs."),
    force: bool = FORCE_OPTION,
    method: str = typer.Option("entropy", help="Detector: entropy | squeezing | density."),
    attack: str = typer.Option(
        "fgsm", help=f"Attack(s) to fit on, comma-separated (e.g. fgsm,deepfool): {ATTACK_HELP}."
    ),
    eps: float = typer.Option(0.1, help="L-inf budget of the norm-bounded attacks."),
    n: int = typer.Option(500, help="Validation examples to attack."),
    window: str = typer.Option("3", help="Side of the entropy neighbourhood (odd); several: e.g. 3,5."),
    bins: int = typer.Option(256, help="Histogram bins over the 8-bit response levels."),
    bits: int = typer.Option(4, help="Squeezing: bit depth of the bit-depth squeezer (Xu et al. 2018: 1 for MNIST)."),
    median: int = typer.Option(3, help="Squeezing: side of the median filter (Xu et al. 2018: 2 for MNIST)."),
    summary: bool = typer.Option(False, "--summary", help="Add entropy-image statistics and a logistic model."),
    layer: str = typer.Option("auto", help=LAYER_HELP),
    signal: str = typer.Option(
        "guided", help="Response read at each layer: guided (backprop signal), activation, or both."
    ),
    seed: int = typer.Option(0),
) -> None:
    """Fit a detector on clean vs attacked validation data (each option applies to the method it names)."""
    from trusttango.detect import attack_pairs, detection_roc, evaluate_detector, plot_detector_examples
    from trusttango.plotting import plot_roc

    names, sides = _attacks(attack, "--attack"), _windows(window)
    layers = items(layer)
    chosen = None if layer == "input" else layers if len(layers) > 1 else layer
    check_output(out, force, [model, data])
    net, ds = _load(model, data, "val", n, seed)
    options = {
        "entropy": {"window": sides, "bins": bins, "summary": summary, "layer": chosen, "signal": signal},
        "squeezing": {"bits": bits, "median": median},
    }
    detector = _detector(method, net, model, data, n, seed, options)
    clean, adv = attack_pairs(net, ds.x, ds.y, names, eps)
    detector.fit(clean, adv)
    result = evaluate_detector(detector, clean, adv, attack)
    with atomic_output(out) as staging:
        detector.save(staging)
        curve = detection_roc(detector.score(clean), detector.score(adv))
        plot_roc({attack: curve}, staging / "roc.png", "fit (validation)")
        if method == "entropy":
            plot_detector_examples(detector, clean, adv, staging / "entropy.png", attack)
        (staging / "fit.json").write_text(json.dumps(result.to_dict(), indent=2))
    console.print(f"fitted on {len(clean)} clean + {len(adv)} {attack}: AUC {result.auc:.3f}; written {out}")


def score_cmd(
    model: Path = model_argument(),
    data: str = data_option(help="Dataset; its test split is attacked and scored."),
    detector: Path = typer.Option(Path("runs/detect"), "--detector", help="The folder `detect fit --out` wrote."),
    out: Path = typer.Option(
        Path("runs/detect-score"), help="Folder for scores.json and roc_test.png (not the detector's own)."
    ),
    force: bool = FORCE_OPTION,
    attacks: str = typer.Option("fgsm,pgd,mifgsm,cw,deepfool", help="Comma-separated attacks to test (transfer)."),
    eps: float = typer.Option(0.1, help="L-inf budget of the norm-bounded attacks."),
    n: int = typer.Option(500, help="Test examples to attack."),
    seed: int = typer.Option(0),
) -> None:
    """Precision, recall, AUC and FPR at 95 % recall per attack; ROC PNG."""
    from trusttango.detect import load_detector, score_attacks
    from trusttango.plotting import plot_roc

    names = _attacks(attacks, "--attacks")
    check_output(out, force, [model, data, detector])
    net, ds = _load(model, data, "test", n, seed)
    fitted = load_detector(detector, net)
    results, curves = score_attacks(fitted, ds.x, ds.y, names, eps)
    with atomic_output(out) as staging:
        plot_roc(curves, staging / "roc_test.png", "test (transfer)")
        (staging / "scores.json").write_text(json.dumps([r.to_dict() for r in results], indent=2))
    table = Table("attack", "AUC", "precision", "recall", "FPR@95%recall", "n adv")
    for r in results:
        figures = (r.auc, r.precision, r.recall, r.fpr_at_95_recall)
        table.add_row(r.attack, *(f"{v:.3f}" for v in figures), str(r.n_adversarial))
    Console().print(table)
    console.print(f"written {out / 'scores.json'} and {out / 'roc_test.png'}")


def register(app: typer.Typer) -> None:
    """Add the ``detect fit`` and ``detect score`` group to the CLI."""
    detect = typer.Typer(
        no_args_is_help=True, help="Detect adversarial inputs (entropy of feature responses, squeezing, density)."
    )
    detect.command("fit")(fit_cmd)
    detect.command("score")(score_cmd)
    app.add_typer(detect, name="detect")
