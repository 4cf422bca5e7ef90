"""CLI: ``trusttango attack`` (robust accuracy and an examples PNG) and ``trusttango robustness``
(accuracy-vs-eps curves for L-inf and L2, and ARA)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from trusttango.cli._common import ATTACK_HELP, console, data_option, first, floats, load_model_and_data, model_argument
from trusttango.errors import require


def attack(
    model: Path = model_argument(),
    data: str = data_option(help="Dataset (built-in name, folder, .npz, IDX); its test split is attacked."),
    attack: str = typer.Option("pgd", help=ATTACK_HELP),
    eps: float = typer.Option(0.03, help="Perturbation budget (norm-bounded attacks), in input units."),
    norm: str = typer.Option("linf", help="linf | l2"),
    steps: int = typer.Option(10, help="Iterations."),
    restarts: int = typer.Option(5, help="Random restarts (PGD)."),
    n: int = typer.Option(500, help="Test examples to attack."),
    out: Path = typer.Option(Path("runs/attack"), help="Folder for attack.json and examples.png."),
    seed: int = typer.Option(0),
) -> None:
    """Attack a model on test data: clean vs robust accuracy, success rate, norms, an examples PNG."""
    import torch

    from trusttango.robust import ATTACKS, attack_report, make_attack, plot_examples

    require(attack in ATTACKS, f"--attack: expected one of {', '.join(ATTACKS)}, got {attack!r}")
    loaded = load_model_and_data(model, data, seed=seed)
    x, y = first(loaded.data, n)
    torch.manual_seed(seed)
    settings = {"eps": eps, "norm": norm, "steps": steps, "restarts": restarts}
    report = attack_report(make_attack(attack, loaded.model, **settings), x, y)
    summary = {"attack": attack, **settings, **report.to_dict()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "attack.json").write_text(json.dumps(summary, indent=2))
    order = report.successful_first()
    result = report.result
    plot_examples(
        x[order], result.x_adv[order], y[order], result.predictions[order], loaded.saved.class_names,
        out / "examples.png",
    )  # fmt: skip
    console.print(
        f"clean accuracy {report.clean_accuracy:.4f}, robust accuracy {report.robust_accuracy:.4f} "
        f"({attack}, eps {eps} {norm}); written {out / 'attack.json'} and {out / 'examples.png'}"
    )


def robustness(
    model: Path = model_argument(),
    data: str = data_option(help="Dataset (built-in name, folder, .npz, IDX); its test split is used."),
    n: int = typer.Option(200, help="Test examples."),
    linf: str = typer.Option("0,0.01,0.02,0.05,0.1", help="Comma-separated L-inf budgets."),
    l2: str = typer.Option("0,0.25,0.5,1,2", help="Comma-separated L2 budgets."),
    steps: int = typer.Option(10, help="PGD steps per budget."),
    restarts: int = typer.Option(5, help="PGD random restarts per budget."),
    ara_steps: int = typer.Option(100, help="Steps of the minimum-norm (DDN) attack for ARA."),
    out: Path = typer.Option(Path("runs/robustness"), help="Folder for robustness.json, curves.png, ara.png."),
    seed: int = typer.Option(0),
) -> None:
    """Accuracy-vs-eps curves (PGD, L-inf and L2) and the ARA score (Woods et al. 2019)."""
    import torch

    from trusttango.robust import MinNormL2, ara, plot_ara, plot_curves, robustness_curve

    budgets = {"linf": floats(linf, "--linf"), "l2": floats(l2, "--l2")}
    loaded = load_model_and_data(model, data, seed=seed)
    x, y = first(loaded.data, n)
    torch.manual_seed(seed)
    net = loaded.model
    curves = [
        robustness_curve(net, x, y, eps, norm=norm, steps=steps, restarts=restarts) for norm, eps in budgets.items()
    ]
    score = ara(net, x, y, MinNormL2(net, steps=ara_steps))
    out.mkdir(parents=True, exist_ok=True)
    doc = {"curves": [c.to_dict() for c in curves], "ara": score.to_dict()}
    (out / "robustness.json").write_text(json.dumps(doc, indent=2))
    plot_curves(curves, out / "curves.png")
    plot_ara({model.name: score}, out / "ara.png")
    for c in curves:
        points = zip(c.eps, c.accuracy, strict=True)
        console.print(f"{c.norm}: " + ", ".join(f"eps {e:g} acc {a:.3f}" for e, a in points))
    bracket = f"; {score.unbroken} unbroken, {score.ara_unbroken_at_zero:.5f} at 0" if score.unbroken else ""
    console.print(f"ARA {score.ara:.5f} (clean accuracy {score.clean_accuracy:.4f}{bracket}); written to {out}")


def register(app: typer.Typer) -> None:
    """Add ``attack`` and ``robustness`` to the CLI."""
    app.command()(attack)
    app.command()(robustness)
