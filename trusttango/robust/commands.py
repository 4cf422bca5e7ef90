"""CLI: ``trusttango attack`` (robust accuracy + examples PNG) and ``trusttango robustness``
(accuracy-vs-eps curves for L-inf and L2, ARA)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)
ATTACK_NAMES = ("fgsm", "bim", "pgd", "mifgsm", "cw", "deepfool", "minnorm")


def _load(model: Path, data: str, n: int, seed: int):
    """The saved model and the first ``n`` test examples of ``data`` (checked compatible)."""
    from trusttango.cli import _check_compatible
    from trusttango.data import load_data
    from trusttango.errors import require
    from trusttango.models import load_model

    require(n >= 1, f"--n: expected >= 1, got {n}")
    saved = load_model(model)
    test = load_data(data, seed=seed).test
    _check_compatible(saved, test)
    return saved, test.x[:n], test.y[:n]


def make_attack(name: str, model, eps: float, norm: str, steps: int):
    """An attack by CLI name (``eps`` and ``norm`` apply to the budgeted ones)."""
    from trusttango import robust
    from trusttango.errors import require

    require(name in ATTACK_NAMES, f"--attack: expected one of {', '.join(ATTACK_NAMES)}, got {name!r}")
    if name == "fgsm":
        return robust.FGSM(model, eps=eps, norm=norm)
    budgeted = {"bim": robust.BIM, "pgd": robust.PGD, "mifgsm": robust.MIFGSM}
    if name in budgeted:
        return budgeted[name](model, eps=eps, norm=norm, steps=steps)
    minimum = {"cw": robust.CarliniWagnerL2, "deepfool": robust.DeepFool, "minnorm": robust.MinNormL2}
    return minimum[name](model, steps=steps)


def register(app: typer.Typer) -> None:
    @app.command()
    def attack(
        model: Path = typer.Argument(..., help="Model directory."),
        data: str = typer.Argument(..., help="Dataset (built-in name, folder, .npz, IDX); its test split is attacked."),
        attack: str = typer.Option("pgd", help=" | ".join(ATTACK_NAMES)),
        eps: float = typer.Option(0.03, help="Perturbation budget (budgeted attacks), in input units."),
        norm: str = typer.Option("linf", help="linf | l2"),
        steps: int = typer.Option(10, help="Iterations."),
        n: int = typer.Option(500, help="Test examples to attack."),
        out: Path = typer.Option(Path("runs/attack"), help="Folder for attack.json and examples.png."),
        seed: int = typer.Option(0),
    ) -> None:
        """Attack a model on test data: clean vs robust accuracy, success rate, norms, an examples PNG."""
        import torch

        from trusttango.robust import plot_examples

        saved, x, y = _load(model, data, n, seed)
        torch.manual_seed(seed)
        result = make_attack(attack, saved.model.eval(), eps, norm, steps).run(x, y)
        with torch.no_grad():
            clean = saved.model(x.to(result.x_adv.device)).argmax(1).cpu()
        pred, success = result.predictions.cpu(), result.success.cpu()
        summary = {
            "attack": attack, "eps": eps, "norm": norm, "steps": steps, "n": len(x),
            "clean_accuracy": float((clean == y).float().mean()),
            "robust_accuracy": float((pred == y).float().mean()),
            "success_rate": result.success_rate,
            "mean_linf": float(result.linf[success].mean()) if success.any() else 0.0,
            "mean_l2": float(result.l2[success].mean()) if success.any() else 0.0,
        }  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        (out / "attack.json").write_text(json.dumps(summary, indent=2))
        order = torch.argsort(success.int(), descending=True, stable=True)  # successful ones first
        plot_examples(
            x[order], result.x_adv.cpu()[order], y[order], pred[order], saved.class_names, out / "examples.png"
        )
        console.print(
            f"clean accuracy {summary['clean_accuracy']:.4f}, robust accuracy {summary['robust_accuracy']:.4f} "
            f"({attack}, eps {eps} {norm}); written {out / 'attack.json'} and {out / 'examples.png'}"
        )

    @app.command()
    def robustness(
        model: Path = typer.Argument(..., help="Model directory."),
        data: str = typer.Argument(..., help="Dataset (built-in name, folder, .npz, IDX); its test split is used."),
        n: int = typer.Option(200, help="Test examples."),
        linf: str = typer.Option("0,0.01,0.02,0.05,0.1", help="Comma-separated L-inf budgets."),
        l2: str = typer.Option("0,0.25,0.5,1,2", help="Comma-separated L2 budgets."),
        steps: int = typer.Option(10, help="PGD steps per budget."),
        ara_steps: int = typer.Option(100, help="Steps of the minimum-norm (DDN) attack for ARA."),
        out: Path = typer.Option(Path("runs/robustness"), help="Folder for robustness.json, curves.png, ara.png."),
        seed: int = typer.Option(0),
    ) -> None:
        """Accuracy-vs-eps curves (PGD, L-inf and L2) and the ARA score (Woods et al. 2019)."""
        import torch

        from trusttango.errors import InputError
        from trusttango.robust import MinNormL2, ara, plot_ara, plot_curves, robustness_curve

        saved, x, y = _load(model, data, n, seed)
        torch.manual_seed(seed)
        try:
            budgets = {"linf": [float(v) for v in linf.split(",")], "l2": [float(v) for v in l2.split(",")]}
        except ValueError:
            raise InputError(f"--linf/--l2: expected comma-separated numbers, got {linf!r} and {l2!r}") from None
        m = saved.model.eval()
        curves = [robustness_curve(m, x, y, eps, norm=norm, steps=steps) for norm, eps in budgets.items()]
        score = ara(m, x, y, MinNormL2(m, steps=ara_steps))
        out.mkdir(parents=True, exist_ok=True)
        doc = {"curves": [c.to_dict() for c in curves], "ara": score.to_dict()}
        (out / "robustness.json").write_text(json.dumps(doc, indent=2))
        plot_curves(curves, out / "curves.png")
        plot_ara({model.name: score}, out / "ara.png")
        for c in curves:
            points = zip(c.eps, c.accuracy, strict=True)
            console.print(f"{c.norm}: " + ", ".join(f"eps {e:g} acc {a:.3f}" for e, a in points))
        console.print(f"ARA {score.ara:.5f} (clean accuracy {score.clean_accuracy:.4f}); written to {out}")
