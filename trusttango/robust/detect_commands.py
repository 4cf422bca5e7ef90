"""``trusttango detect fit|score MODEL DATA``: the entropy detector of adversarial inputs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trusttango.errors import InputError, require

console = Console(stderr=True)
ATTACK_NAMES = ("fgsm", "pgd", "mifgsm", "cw", "deepfool")


def make_attack(name: str, model, eps: float):
    """One of :data:`ATTACK_NAMES` with budget ``eps`` (L-inf; the minimum-norm ones ignore it)."""
    from trusttango.robust.attacks import FGSM, MIFGSM, PGD, CarliniWagnerL2, DeepFool

    builders = {
        "fgsm": lambda: FGSM(model, eps=eps),
        "pgd": lambda: PGD(model, eps=eps),
        "mifgsm": lambda: MIFGSM(model, eps=eps),
        "cw": lambda: CarliniWagnerL2(model, steps=50, binary_steps=3),
        "deepfool": lambda: DeepFool(model),
    }
    require(name in builders, f"attack: expected one of {ATTACK_NAMES}, got {name!r}")
    return builders[name]()


def _items(text: str) -> list[str]:
    """The non-empty, stripped parts of a comma-separated option."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _load(model_dir: Path, data: str, split: str, n: int, seed: int):
    from trusttango.cli import _check_compatible
    from trusttango.data import load_data
    from trusttango.models import load_model

    require(n >= 4, f"--n must be >= 4, got {n}")
    saved = load_model(model_dir)
    ds = getattr(load_data(data, seed=seed), split)
    _check_compatible(saved, ds)
    require(saved.config.modality == "image", f"{model_dir}: the entropy detector needs an image model")
    return saved.model, ds.subset(range(min(n, len(ds))))


def _pairs(model, ds, attack: str, eps: float):
    from trusttango.robust.detector import adversarial_pairs

    clean, adv = adversarial_pairs(model, ds.x, ds.y, make_attack(attack, model, eps))
    require(len(clean) >= 2, f"attack {attack}: fewer than 2 successful adversarial examples; raise --eps or --n")
    return clean, adv


def register(app: typer.Typer) -> None:
    detect = typer.Typer(
        no_args_is_help=True, help="Detect adversarial inputs by the local entropy of feature responses."
    )
    app.add_typer(detect, name="detect")

    @detect.command("fit")
    def fit_cmd(
        model: Path = typer.Argument(..., help="Model directory."),
        data: str = typer.Argument(
            ..., help="Dataset (built-in name, folder, .npz, IDX); its validation split is used."
        ),
        out: Path = typer.Option(Path("runs/detect"), help="Folder for detector.json, roc.png, entropy.png."),
        attack: str = typer.Option(
            "fgsm", help=f"Attack(s) to fit on, comma-separated (e.g. fgsm,deepfool): {' | '.join(ATTACK_NAMES)}."
        ),
        eps: float = typer.Option(0.1, help="L-inf budget of the norm-bounded attacks."),
        n: int = typer.Option(500, help="Validation examples to attack."),
        window: str = typer.Option("3", help="Side of the entropy neighbourhood (odd); several: e.g. 3,5."),
        bins: int = typer.Option(256, help="Histogram bins over the 8-bit response levels."),
        summary: bool = typer.Option(False, help="Add entropy-image statistics and a logistic model."),
        layer: str = typer.Option(
            "auto",
            help="Response at: auto (last full-res ReLU), all (every ReLU feature map), input, "
            "or module names separated by commas.",
        ),
        signal: str = typer.Option(
            "guided", help="Response read at each layer: guided (backprop signal), activation, or both."
        ),
        seed: int = typer.Option(0),
    ) -> None:
        """Fit the entropy detector's threshold on clean vs attacked validation data."""
        import torch

        from trusttango.robust.detector import EntropyDetector, evaluate_detector, plot_roc
        from trusttango.robust.entropy import plot_entropy

        net, ds = _load(model, data, "val", n, seed)
        pairs = [_pairs(net, ds, name, eps) for name in _items(attack)]
        require(len(pairs) > 0, "--attack: names no attack")
        clean, adv = (torch.cat(part) for part in zip(*pairs, strict=True))
        names = _items(layer)
        chosen = None if layer == "input" else names if len(names) > 1 else layer
        try:
            sides = [int(side) for side in _items(window)]
        except ValueError:
            raise InputError(f"--window: expected odd integers separated by commas, got {window!r}") from None
        detector = EntropyDetector(net, sides, bins, summary, layer=chosen, signal=signal)
        detector.fit(clean, adv)
        detector.save(out / "detector.json")
        result = evaluate_detector(detector, clean, adv, attack)
        plot_roc({attack: (detector.score(clean), detector.score(adv))}, out / "roc.png", "fit (validation)")
        k = min(4, len(clean))
        both = torch.cat([clean[:k], adv[:k]])
        plot_entropy(both, detector.responder(net, both), detector.entropy(both), out / "entropy.png",
                     [f"clean {i}" for i in range(k)] + [f"{attack} {i}" for i in range(k)])  # fmt: skip
        (out / "fit.json").write_text(json.dumps(result.to_dict(), indent=2))
        console.print(f"fitted on {len(clean)} clean + {len(adv)} {attack}: AUC {result.auc:.3f}; written {out}")

    @detect.command("score")
    def score_cmd(
        model: Path = typer.Argument(..., help="Model directory."),
        data: str = typer.Argument(..., help="Dataset; its test split is attacked and scored."),
        detector_file: Path = typer.Option(Path("runs/detect/detector.json"), "--detector", help="From `detect fit`."),
        out: Path = typer.Option(Path("runs/detect"), help="Folder for scores.json and roc_test.png."),
        attacks: str = typer.Option(",".join(ATTACK_NAMES), help="Comma-separated attacks to test (transfer)."),
        eps: float = typer.Option(0.1, help="L-inf budget of the norm-bounded attacks."),
        n: int = typer.Option(500, help="Test examples to attack."),
        seed: int = typer.Option(0),
    ) -> None:
        """Precision, recall, AUC and FPR at 95 % recall per attack; ROC PNG."""
        from trusttango.models import load_model
        from trusttango.robust.detector import EntropyDetector, evaluate_detector, plot_roc

        names = _items(attacks)
        for a in names:
            require(a in ATTACK_NAMES, f"--attacks: expected names from {ATTACK_NAMES}, got {a!r}")
        detector = EntropyDetector.load(detector_file, load_model(model).model)
        net, ds = _load(model, data, "test", n, seed)
        detector.model = net
        results, curves = [], {}
        for a in names:
            clean, adv = _pairs(net, ds, a, eps)
            results.append(evaluate_detector(detector, clean, adv, a))
            curves[a] = (detector.score(clean), detector.score(adv))
        plot_roc(curves, out / "roc_test.png", "test (transfer)")
        (out / "scores.json").write_text(json.dumps([r.to_dict() for r in results], indent=2))
        table = Table("attack", "AUC", "precision", "recall", "FPR@95%recall", "n adv")
        for r in results:
            table.add_row(
                r.attack,
                f"{r.auc:.3f}",
                f"{r.precision:.3f}",
                f"{r.recall:.3f}",
                f"{r.fpr_at_95_recall:.3f}",
                str(r.n_adversarial),
            )
        Console().print(table)
        console.print(f"written {out / 'scores.json'} and {out / 'roc_test.png'}")
